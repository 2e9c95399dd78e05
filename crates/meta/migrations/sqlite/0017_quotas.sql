-- Quotas (issue 15): storage per namespace, kept incrementally, and pull
-- traffic per namespace and calendar month.
--
-- `namespace_quotas` holds one row per namespace: the bytes it holds now
-- (`storage_bytes`) and its own limits (NULL: the registry-wide default of
-- the server's configuration applies, itself unlimited when unset).
--
-- `namespace_blob_refs` counts, per namespace and digest, the rows that hold
-- that content in the namespace: links (`repository_blobs`), manifest
-- references (`manifest_blobs`) and stored manifests (`manifests`, keyed by
-- the manifest's digest). A digest's bytes count in `storage_bytes` exactly
-- while its count is above zero, so a blob held by several repositories of a
-- namespace, or linked and referenced at once, counts once. Trashed
-- manifests keep their rows (migration 0014), so they count until the
-- trash expires them.
--
-- Both are maintained by the triggers below, in the statement (and so the
-- transaction) that adds or removes the row, whichever code path does it:
-- a link, an unlink, a manifest stored or deleted, garbage collection,
-- trash expiry, a repository's deletion. The quota check itself is in Rust
-- (`sql/quotas.rs`), before the insert that would add the bytes.
CREATE TABLE namespace_quotas (
    namespace TEXT PRIMARY KEY REFERENCES namespaces (name) ON DELETE CASCADE,
    storage_bytes INTEGER NOT NULL DEFAULT 0,
    storage_limit INTEGER,
    traffic_limit INTEGER
);

CREATE TABLE namespace_blob_refs (
    namespace TEXT NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    refs INTEGER NOT NULL,
    PRIMARY KEY (namespace, digest)
);

-- Bytes of blobs served per namespace and calendar month (`month`: the
-- Unix time of the month's first second, UTC). Nodes add to it in batches.
CREATE TABLE namespace_traffic (
    namespace TEXT NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    month INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (namespace, month)
);

INSERT INTO namespace_quotas (namespace) SELECT name FROM namespaces;

INSERT INTO namespace_blob_refs (namespace, digest, size, refs)
SELECT namespace, digest, MAX(size), COUNT(*) FROM (
    SELECT r.namespace AS namespace, rb.digest AS digest, b.size AS size
      FROM repository_blobs rb
      JOIN repositories r ON r.id = rb.repository_id
      JOIN blobs b ON b.digest = rb.digest
    UNION ALL
    SELECT r.namespace, mb.blob_digest, b.size
      FROM manifest_blobs mb
      JOIN repositories r ON r.id = mb.repository_id
      JOIN blobs b ON b.digest = mb.blob_digest
    UNION ALL
    SELECT r.namespace, m.digest, m.size
      FROM manifests m
      JOIN repositories r ON r.id = m.repository_id
) WHERE true GROUP BY namespace, digest;

UPDATE namespace_quotas SET storage_bytes = COALESCE(
    (SELECT SUM(nb.size) FROM namespace_blob_refs nb
      WHERE nb.namespace = namespace_quotas.namespace), 0);

CREATE TRIGGER quota_namespace_created AFTER INSERT ON namespaces BEGIN
    INSERT INTO namespace_quotas (namespace) VALUES (NEW.name);
END;

-- SQLite runs one write transaction at a time, so each trigger may read
-- the count before it changes it. The bytes move when a digest's count
-- goes from zero to one (before the insert of its row) or from one to zero.

CREATE TRIGGER quota_link_added AFTER INSERT ON repository_blobs BEGIN
    UPDATE namespace_quotas
       SET storage_bytes = storage_bytes + (SELECT size FROM blobs WHERE digest = NEW.digest)
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = NEW.repository_id)
       AND NOT EXISTS (SELECT 1 FROM namespace_blob_refs nb
             WHERE nb.namespace = namespace_quotas.namespace AND nb.digest = NEW.digest);
    INSERT INTO namespace_blob_refs (namespace, digest, size, refs)
    SELECT r.namespace, NEW.digest, b.size, 1 FROM repositories r, blobs b
     WHERE r.id = NEW.repository_id AND b.digest = NEW.digest
    ON CONFLICT (namespace, digest) DO UPDATE SET refs = refs + 1;
END;

CREATE TRIGGER quota_link_removed AFTER DELETE ON repository_blobs BEGIN
    UPDATE namespace_blob_refs SET refs = refs - 1
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id)
       AND digest = OLD.digest;
    UPDATE namespace_quotas
       SET storage_bytes = storage_bytes - (SELECT nb.size FROM namespace_blob_refs nb
             WHERE nb.namespace = namespace_quotas.namespace AND nb.digest = OLD.digest)
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id)
       AND EXISTS (SELECT 1 FROM namespace_blob_refs nb
             WHERE nb.namespace = namespace_quotas.namespace AND nb.digest = OLD.digest
               AND nb.refs <= 0);
    DELETE FROM namespace_blob_refs
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id)
       AND digest = OLD.digest AND refs <= 0;
END;

CREATE TRIGGER quota_reference_added AFTER INSERT ON manifest_blobs BEGIN
    UPDATE namespace_quotas
       SET storage_bytes = storage_bytes + (SELECT size FROM blobs WHERE digest = NEW.blob_digest)
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = NEW.repository_id)
       AND NOT EXISTS (SELECT 1 FROM namespace_blob_refs nb
             WHERE nb.namespace = namespace_quotas.namespace AND nb.digest = NEW.blob_digest);
    INSERT INTO namespace_blob_refs (namespace, digest, size, refs)
    SELECT r.namespace, NEW.blob_digest, b.size, 1 FROM repositories r, blobs b
     WHERE r.id = NEW.repository_id AND b.digest = NEW.blob_digest
    ON CONFLICT (namespace, digest) DO UPDATE SET refs = refs + 1;
END;

CREATE TRIGGER quota_reference_removed AFTER DELETE ON manifest_blobs BEGIN
    UPDATE namespace_blob_refs SET refs = refs - 1
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id)
       AND digest = OLD.blob_digest;
    UPDATE namespace_quotas
       SET storage_bytes = storage_bytes - (SELECT nb.size FROM namespace_blob_refs nb
             WHERE nb.namespace = namespace_quotas.namespace AND nb.digest = OLD.blob_digest)
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id)
       AND EXISTS (SELECT 1 FROM namespace_blob_refs nb
             WHERE nb.namespace = namespace_quotas.namespace AND nb.digest = OLD.blob_digest
               AND nb.refs <= 0);
    DELETE FROM namespace_blob_refs
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id)
       AND digest = OLD.blob_digest AND refs <= 0;
END;

CREATE TRIGGER quota_manifest_added AFTER INSERT ON manifests BEGIN
    UPDATE namespace_quotas SET storage_bytes = storage_bytes + NEW.size
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = NEW.repository_id)
       AND NOT EXISTS (SELECT 1 FROM namespace_blob_refs nb
             WHERE nb.namespace = namespace_quotas.namespace AND nb.digest = NEW.digest);
    INSERT INTO namespace_blob_refs (namespace, digest, size, refs)
    SELECT r.namespace, NEW.digest, NEW.size, 1 FROM repositories r
     WHERE r.id = NEW.repository_id
    ON CONFLICT (namespace, digest) DO UPDATE SET refs = refs + 1;
END;

CREATE TRIGGER quota_manifest_removed AFTER DELETE ON manifests BEGIN
    UPDATE namespace_blob_refs SET refs = refs - 1
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id)
       AND digest = OLD.digest;
    UPDATE namespace_quotas
       SET storage_bytes = storage_bytes - (SELECT nb.size FROM namespace_blob_refs nb
             WHERE nb.namespace = namespace_quotas.namespace AND nb.digest = OLD.digest)
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id)
       AND EXISTS (SELECT 1 FROM namespace_blob_refs nb
             WHERE nb.namespace = namespace_quotas.namespace AND nb.digest = OLD.digest
               AND nb.refs <= 0);
    DELETE FROM namespace_blob_refs
     WHERE namespace = (SELECT namespace FROM repositories WHERE id = OLD.repository_id)
       AND digest = OLD.digest AND refs <= 0;
END;
