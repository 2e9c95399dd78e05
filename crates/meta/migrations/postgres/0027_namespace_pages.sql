-- Pages of the namespaces a user may see (issue 12): the public ones and
-- those the user is a member of, each read as an index range in name order
-- and cut at the page size, however many private namespaces lie between.
CREATE INDEX namespaces_by_visibility ON namespaces (visibility, name);

-- A user's memberships in namespace order; it replaces the index on the
-- user alone, which it covers.
CREATE INDEX namespace_members_by_user_namespace ON namespace_members (user_name, namespace);
DROP INDEX namespace_members_by_user;
