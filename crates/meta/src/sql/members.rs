//! [`MemberStore`] in SQL.

use super::db::{database, query, write_error, Row, Tx};
use super::events::NewEvent;
use super::SqlMetaStore;
use crate::auth::{MemberRow, MemberStore};
use crate::{Change, EventKind, MetaError};

/// Refuses, within `tx` and before the change, a change that takes the
/// owner role from `user` (demoting or removing them) when they are the
/// only owner of `namespace`. The owners' rows are locked (`FOR UPDATE` on
/// PostgreSQL; SQLite's write transactions are serial), so two owners
/// demoting each other at once cannot both succeed.
async fn keep_an_owner(tx: &mut Tx, namespace: &str, user: &str) -> Result<(), MetaError> {
    let sql = format!(
        "SELECT user_name FROM namespace_members WHERE namespace = $1 AND role = 'owner'{}",
        tx.dialect().for_update()
    );
    let owners: Vec<String> = query(&sql)
        .bind(namespace)
        .fetch_all(&mut *tx)
        .await
        .map_err(database("reading a namespace's owners"))?
        .iter()
        .map(|row| row.first())
        .collect::<Result<_, _>>()?;
    if owners.len() == 1 && owners[0] == user {
        return Err(MetaError::LastOwner);
    }
    Ok(())
}

fn member_from_row(row: &Row) -> Result<MemberRow, MetaError> {
    Ok(MemberRow {
        namespace: row.get("namespace")?,
        user: row.get("user_name")?,
        role: row.get("role")?,
    })
}

#[async_trait::async_trait]
impl<B: 'static> MemberStore for SqlMetaStore<B> {
    async fn set_member(
        &self,
        change: &Change,
        namespace: &str,
        user: &str,
        role: &str,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        if role != "owner" {
            keep_an_owner(&mut tx, namespace, user).await?;
        }
        // The previous role, for the event (locked on PostgreSQL, so that
        // concurrent changes take turns and each says what it replaced).
        let sql = format!(
            "SELECT role FROM namespace_members WHERE namespace = $1 AND user_name = $2{}",
            tx.dialect().for_update()
        );
        let previous: Option<String> = query(&sql)
            .bind(namespace)
            .bind(user)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("reading a member's role"))?
            .map(|row| row.first())
            .transpose()?;
        if previous.as_deref() == Some(role) {
            return Ok(());
        }
        query(
            "INSERT INTO namespace_members (namespace, user_name, role) VALUES ($1, $2, $3) \
             ON CONFLICT (namespace, user_name) DO UPDATE SET role = excluded.role",
        )
        .bind(namespace)
        .bind(user)
        .bind(role)
        .execute(&mut tx)
        .await
        .map_err(write_error("setting a member"))?;
        tx.record(NewEvent::namespace(
            EventKind::MemberSet,
            namespace,
            serde_json::json!({ "user": user, "role": role, "previous": previous }),
        ))?;
        tx.commit().await.map_err(database("committing a member"))
    }

    async fn remove_member(
        &self,
        change: &Change,
        namespace: &str,
        user: &str,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        keep_an_owner(&mut tx, namespace, user).await?;
        let role: String = query(
            "DELETE FROM namespace_members WHERE namespace = $1 AND user_name = $2 RETURNING role",
        )
        .bind(namespace)
        .bind(user)
        .fetch_optional(&mut tx)
        .await
        .map_err(write_error("removing a member"))?
        .ok_or(MetaError::NotFound)?
        .first()?;
        tx.record(NewEvent::namespace(
            EventKind::MemberRemoved,
            namespace,
            serde_json::json!({ "user": user, "role": role }),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing a member's removal"))
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
        rows.iter().map(member_from_row).collect()
    }

    async fn memberships_of(&self, user: &str) -> Result<Vec<MemberRow>, MetaError> {
        let rows = query(
            "SELECT namespace, user_name, role FROM namespace_members WHERE user_name = $1 \
             ORDER BY namespace",
        )
        .bind(user)
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing a user's memberships"))?;
        rows.iter().map(member_from_row).collect()
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
