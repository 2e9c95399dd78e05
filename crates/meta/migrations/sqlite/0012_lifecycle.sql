-- Image lifecycle (issue 15).
--
-- Immutable-tag rules: a tag of a repository in `namespace` (every
-- repository, or only `repository` when it is not empty) whose name matches
-- `pattern` (a `berth_oci::TagPattern`) may be created but never moved to
-- another manifest nor deleted. The empty string stands for "the whole
-- namespace" so that the natural key can be the primary key. A rule goes
-- with its namespace.
CREATE TABLE immutable_rules (
    namespace TEXT NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    repository TEXT NOT NULL,
    pattern TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, repository, pattern)
);
