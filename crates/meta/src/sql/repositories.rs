//! [`RepositoryStore`] in SQL.

use berth_oci::RepoName;

use super::db::{database, query};
use super::{limit_to_i64, parse_repository, SqlMetaStore};
use crate::{MetaError, RepositoryStore};

#[async_trait::async_trait]
impl<B: 'static> RepositoryStore for SqlMetaStore<B> {
    async fn list_repositories(
        &self,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, MetaError> {
        // Every name is longer than "", so the first page starts after "".
        // `$1 IS NULL OR name > $1` would make SQLite scan from the first
        // name on every page; a plain range is an index seek on both. Names
        // compare in byte order: SQLite's default collation is BINARY, and
        // PostgreSQL's column is `COLLATE "C"`.
        let rows = query("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
            .bind(after.map_or("", RepoName::as_str))
            .bind(limit_to_i64(limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing repositories"))?;
        rows.iter()
            .map(|row| parse_repository(&row.first::<String>()?))
            .collect()
    }
}
