-- Namespaces become the home of repositories: every repository belongs to
-- the namespace named by the first component of its name, and a namespace
-- cannot be deleted while it holds a repository (the foreign key).
--
-- Until now a namespace existed only when access control created one, and
-- repositories pushed with access control off (or before it was turned on)
-- had none. Each such namespace is created here, private (the default that
-- publishes nothing by accident) and without members, as of its oldest
-- repository; existing namespaces keep their visibility and members.
--
-- (`WHERE true` tells SQLite's parser that `ON CONFLICT` belongs to the
-- insert.) SQLite cannot add a NOT NULL column that references another table to a
-- table with rows, so the column is nullable here; every write that creates
-- a repository sets it (PostgreSQL's schema declares it NOT NULL).

ALTER TABLE repositories ADD COLUMN namespace TEXT REFERENCES namespaces (name);

INSERT INTO namespaces (name, visibility, created_at)
SELECT namespace, 'private', MIN(created_at) FROM (
    SELECT CASE WHEN instr(name, '/') > 0 THEN substr(name, 1, instr(name, '/') - 1)
           ELSE name END AS namespace,
           created_at
    FROM repositories
) WHERE true GROUP BY namespace
ON CONFLICT (name) DO NOTHING;

UPDATE repositories SET namespace =
    CASE WHEN instr(name, '/') > 0 THEN substr(name, 1, instr(name, '/') - 1) ELSE name END;

-- Listing and counting a namespace's repositories, and the foreign key's
-- check when a namespace is deleted.
CREATE INDEX repositories_by_namespace ON repositories (namespace, name);
