-- Namespaces become the home of repositories, as in
-- migrations/sqlite/0007_namespaces.sql (which explains why); here the
-- column can be NOT NULL once every existing repository has its namespace.

ALTER TABLE repositories ADD COLUMN namespace TEXT COLLATE "C" REFERENCES namespaces (name);

INSERT INTO namespaces (name, visibility, created_at)
SELECT split_part(name, '/', 1), 'private', MIN(created_at) FROM repositories
GROUP BY split_part(name, '/', 1)
ON CONFLICT (name) DO NOTHING;

UPDATE repositories SET namespace = split_part(name, '/', 1);

ALTER TABLE repositories ALTER COLUMN namespace SET NOT NULL;

CREATE INDEX repositories_by_namespace ON repositories (namespace, name);
