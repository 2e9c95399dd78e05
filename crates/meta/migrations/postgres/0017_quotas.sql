-- Quotas (issue 15): the same tables as migrations/sqlite/0017_quotas.sql
-- (see there for what each is for), kept by the same triggers, written once
-- as a function here.
--
-- PostgreSQL runs writers concurrently, so the function takes the
-- namespace's usage row (`FOR UPDATE`) before it touches a digest's count:
-- every transaction that changes a namespace's usage takes that one row
-- first, after its digest advisory locks (`lock_digests`), so two of them
-- never wait on each other's count rows in a cycle, and the quota check
-- (which locks the same row before the insert) sees every committed
-- change.
CREATE TABLE namespace_quotas (
    namespace TEXT COLLATE "C" PRIMARY KEY REFERENCES namespaces (name) ON DELETE CASCADE,
    storage_bytes BIGINT NOT NULL DEFAULT 0,
    storage_limit BIGINT,
    traffic_limit BIGINT
);

CREATE TABLE namespace_blob_refs (
    namespace TEXT COLLATE "C" NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    digest TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    refs BIGINT NOT NULL,
    PRIMARY KEY (namespace, digest)
);

CREATE TABLE namespace_traffic (
    namespace TEXT COLLATE "C" NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    month BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
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
) AS refs GROUP BY namespace, digest;

UPDATE namespace_quotas SET storage_bytes = COALESCE(
    (SELECT SUM(nb.size) FROM namespace_blob_refs nb
      WHERE nb.namespace = namespace_quotas.namespace), 0);

CREATE FUNCTION berth_quota_namespace_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO namespace_quotas (namespace) VALUES (NEW.name);
    RETURN NULL;
END $$;

CREATE TRIGGER quota_namespace_created AFTER INSERT ON namespaces
    FOR EACH ROW EXECUTE FUNCTION berth_quota_namespace_created();

-- Adds (`delta` 1) or removes (-1) one row holding `digest` in the
-- namespace of `repository`; the bytes move when the count leaves or
-- reaches zero.
CREATE FUNCTION berth_quota_adjust(repository BIGINT, held TEXT, held_size BIGINT, delta INTEGER)
RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    ns TEXT;
    remaining BIGINT;
    freed BIGINT;
BEGIN
    SELECT namespace INTO ns FROM repositories WHERE id = repository;
    PERFORM 1 FROM namespace_quotas WHERE namespace = ns FOR UPDATE;
    IF delta > 0 THEN
        INSERT INTO namespace_blob_refs AS nb (namespace, digest, size, refs)
        VALUES (ns, held, held_size, 1)
        ON CONFLICT (namespace, digest) DO UPDATE SET refs = nb.refs + 1
        RETURNING nb.refs INTO remaining;
        IF remaining = 1 THEN
            UPDATE namespace_quotas SET storage_bytes = storage_bytes + held_size
             WHERE namespace = ns;
        END IF;
    ELSE
        UPDATE namespace_blob_refs SET refs = refs - 1
         WHERE namespace = ns AND digest = held
        RETURNING refs, size INTO remaining, freed;
        IF remaining IS NOT NULL AND remaining <= 0 THEN
            DELETE FROM namespace_blob_refs WHERE namespace = ns AND digest = held;
            UPDATE namespace_quotas SET storage_bytes = storage_bytes - freed
             WHERE namespace = ns;
        END IF;
    END IF;
END $$;

CREATE FUNCTION berth_quota_link() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM berth_quota_adjust(NEW.repository_id, NEW.digest,
            (SELECT size FROM blobs WHERE digest = NEW.digest), 1);
    ELSE
        PERFORM berth_quota_adjust(OLD.repository_id, OLD.digest, 0, -1);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION berth_quota_reference() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM berth_quota_adjust(NEW.repository_id, NEW.blob_digest,
            (SELECT size FROM blobs WHERE digest = NEW.blob_digest), 1);
    ELSE
        PERFORM berth_quota_adjust(OLD.repository_id, OLD.blob_digest, 0, -1);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION berth_quota_manifest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM berth_quota_adjust(NEW.repository_id, NEW.digest, NEW.size, 1);
    ELSE
        PERFORM berth_quota_adjust(OLD.repository_id, OLD.digest, 0, -1);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER quota_link AFTER INSERT OR DELETE ON repository_blobs
    FOR EACH ROW EXECUTE FUNCTION berth_quota_link();
CREATE TRIGGER quota_reference AFTER INSERT OR DELETE ON manifest_blobs
    FOR EACH ROW EXECUTE FUNCTION berth_quota_reference();
CREATE TRIGGER quota_manifest AFTER INSERT OR DELETE ON manifests
    FOR EACH ROW EXECUTE FUNCTION berth_quota_manifest();
