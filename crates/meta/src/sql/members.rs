//! [`MemberStore`] in SQL.

use super::db::{database, query, write_error};
use super::users::require_one;
use super::SqlMetaStore;
use crate::auth::{MemberRow, MemberStore};
use crate::MetaError;

#[async_trait::async_trait]
impl<B: 'static> MemberStore for SqlMetaStore<B> {
    async fn set_member(&self, namespace: &str, user: &str, role: &str) -> Result<(), MetaError> {
        query(
            "INSERT INTO namespace_members (namespace, user_name, role) VALUES ($1, $2, $3) \
             ON CONFLICT (namespace, user_name) DO UPDATE SET role = excluded.role",
        )
        .bind(namespace)
        .bind(user)
        .bind(role)
        .execute(self.db.writer())
        .await
        .map_err(write_error("setting a member"))?;
        Ok(())
    }

    async fn remove_member(&self, namespace: &str, user: &str) -> Result<(), MetaError> {
        let deleted =
            query("DELETE FROM namespace_members WHERE namespace = $1 AND user_name = $2")
                .bind(namespace)
                .bind(user)
                .execute(self.db.writer())
                .await
                .map_err(write_error("removing a member"))?;
        require_one(deleted)
    }

    async fn list_members(&self, namespace: &str) -> Result<Vec<MemberRow>, MetaError> {
        let rows = query(
            "SELECT namespace, user_name, role FROM namespace_members WHERE namespace = $1 \
             ORDER BY user_name",
        )
        .bind(namespace)
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing members"))?;
        rows.iter()
            .map(|row| {
                Ok(MemberRow {
                    namespace: row.get("namespace")?,
                    user: row.get("user_name")?,
                    role: row.get("role")?,
                })
            })
            .collect()
    }

    async fn member_role(&self, namespace: &str, user: &str) -> Result<Option<String>, MetaError> {
        query("SELECT role FROM namespace_members WHERE namespace = $1 AND user_name = $2")
            .bind(namespace)
            .bind(user)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a member's role"))?
            .map(|row| row.first())
            .transpose()
    }
}
