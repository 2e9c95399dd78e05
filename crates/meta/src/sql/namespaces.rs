//! [`NamespaceStore`] in SQL.

use super::db::{database, query, write_error, Row};
use super::users::require_one;
use super::SqlMetaStore;
use crate::namespaces::{NamespaceRow, NamespaceStore};
use crate::MetaError;

fn namespace_from_row(row: &Row) -> Result<NamespaceRow, MetaError> {
    Ok(NamespaceRow {
        name: row.get("name")?,
        visibility: row.get("visibility")?,
        created_at: row.get("created_at")?,
    })
}

#[async_trait::async_trait]
impl<B: 'static> NamespaceStore for SqlMetaStore<B> {
    async fn create_namespace(
        &self,
        namespace: &NamespaceRow,
        owner: Option<&str>,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_write().await?;
        query("INSERT INTO namespaces (name, visibility, created_at) VALUES ($1, $2, $3)")
            .bind(&namespace.name)
            .bind(&namespace.visibility)
            .bind(namespace.created_at)
            .execute(&mut tx)
            .await
            .map_err(write_error("creating a namespace"))?;
        if let Some(owner) = owner {
            query(
                "INSERT INTO namespace_members (namespace, user_name, role) \
                 VALUES ($1, $2, 'owner')",
            )
            .bind(&namespace.name)
            .bind(owner)
            .execute(&mut tx)
            .await
            .map_err(write_error("adding a namespace owner"))?;
        }
        tx.commit()
            .await
            .map_err(write_error("committing a namespace"))
    }

    async fn get_namespace(&self, name: &str) -> Result<Option<NamespaceRow>, MetaError> {
        query("SELECT name, visibility, created_at FROM namespaces WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a namespace"))?
            .as_ref()
            .map(namespace_from_row)
            .transpose()
    }

    async fn set_visibility(&self, name: &str, visibility: &str) -> Result<(), MetaError> {
        let updated = query("UPDATE namespaces SET visibility = $1 WHERE name = $2")
            .bind(visibility)
            .bind(name)
            .execute(self.db.writer())
            .await
            .map_err(write_error("setting visibility"))?;
        require_one(updated)
    }

    async fn list_namespaces(&self) -> Result<Vec<NamespaceRow>, MetaError> {
        query("SELECT name, visibility, created_at FROM namespaces ORDER BY name")
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing namespaces"))?
            .iter()
            .map(namespace_from_row)
            .collect()
    }
}
