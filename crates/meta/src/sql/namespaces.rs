//! [`NamespaceStore`] in SQL.

use super::db::{database, query, write_error, Row};
use super::events::NewEvent;
use super::{limit_to_i64, parse_size, SqlMetaStore};
use crate::namespaces::{
    Namespace, NamespaceEntry, NamespaceReach, NamespaceStore, NamespaceUsage, Visibility,
};
use crate::{Change, EventKind, MetaError};

fn namespace_from_row(row: &Row) -> Result<Namespace, MetaError> {
    let visibility: String = row.get("visibility")?;
    Ok(Namespace {
        name: row.get("name")?,
        visibility: Visibility::parse(&visibility)
            .ok_or_else(|| MetaError::Corrupt(format!("visibility {visibility:?}")))?,
        created_at: row.get("created_at")?,
    })
}

fn count(row: &Row, column: &str) -> Result<u64, MetaError> {
    parse_size(row.get(column)?)
}

#[async_trait::async_trait]
impl<B: 'static> NamespaceStore for SqlMetaStore<B> {
    async fn create_namespace(
        &self,
        change: &Change,
        namespace: &Namespace,
        owner: Option<&str>,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        query("INSERT INTO namespaces (name, visibility, created_at) VALUES ($1, $2, $3)")
            .bind(&namespace.name)
            .bind(namespace.visibility.as_str())
            .bind(namespace.created_at)
            .execute(&mut tx)
            .await
            .map_err(write_error("creating a namespace"))?;
        tx.record(NewEvent::namespace(
            EventKind::NamespaceCreated,
            &namespace.name,
            serde_json::json!({ "visibility": namespace.visibility.as_str() }),
        ))?;
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
            tx.record(NewEvent::namespace(
                EventKind::MemberSet,
                &namespace.name,
                serde_json::json!({ "user": owner, "role": "owner", "previous": null }),
            ))?;
        }
        tx.commit()
            .await
            .map_err(write_error("committing a namespace"))
    }

    async fn get_namespace(&self, name: &str) -> Result<Option<Namespace>, MetaError> {
        query("SELECT name, visibility, created_at FROM namespaces WHERE name = $1")
            .bind(name)
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("reading a namespace"))?
            .as_ref()
            .map(namespace_from_row)
            .transpose()
    }

    async fn list_namespaces(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Namespace>, MetaError> {
        // As for repositories: names are never empty, so "" starts the
        // first page and every page is an index seek.
        query(
            "SELECT name, visibility, created_at FROM namespaces WHERE name > $1 \
             ORDER BY name LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit_to_i64(limit))
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing namespaces"))?
        .iter()
        .map(namespace_from_row)
        .collect()
    }

    async fn namespace_with_role(
        &self,
        name: &str,
        user: Option<&str>,
    ) -> Result<Option<NamespaceEntry>, MetaError> {
        // User names are never empty, so "" is a member of nothing.
        query(
            "SELECT n.name, n.visibility, n.created_at, m.role FROM namespaces n \
             LEFT JOIN namespace_members m ON m.namespace = n.name AND m.user_name = $2 \
             WHERE n.name = $1",
        )
        .bind(name)
        .bind(user.unwrap_or(""))
        .fetch_optional(self.db.reader())
        .await
        .map_err(database("reading a namespace with a member's role"))?
        .as_ref()
        .map(|row| {
            Ok(NamespaceEntry {
                namespace: namespace_from_row(row)?,
                role: row.get("role")?,
            })
        })
        .transpose()
    }

    async fn namespace_page(
        &self,
        reach: NamespaceReach<'_>,
        user: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<NamespaceEntry>, MetaError> {
        // User names are never empty, so "" is a member of nothing; names
        // are never empty either, so "" starts the first page.
        let sql = match reach {
            NamespaceReach::All => {
                "SELECT n.name, n.visibility, n.created_at, m.role FROM namespaces n \
                 LEFT JOIN namespace_members m ON m.namespace = n.name AND m.user_name = $1 \
                 WHERE n.name > $2 ORDER BY n.name LIMIT $3"
            }
            // Two index ranges, each cut at the page size before they are
            // merged (public namespaces by `namespaces_by_visibility`, the
            // user's by `namespace_members_by_user`, migration 0027), so a
            // page reads at most twice its size however many private
            // namespaces lie between. The inner SELECTs are wrapped so
            // that SQLite accepts their ORDER BY and LIMIT in a UNION.
            NamespaceReach::PublicOrMemberOf(_) => {
                "SELECT n.name, n.visibility, n.created_at, m.role FROM ( \
                   SELECT name FROM (SELECT namespace AS name FROM namespace_members \
                     WHERE user_name = $4 AND namespace > $2 ORDER BY namespace LIMIT $3) mine \
                   UNION \
                   SELECT name FROM (SELECT name FROM namespaces \
                     WHERE visibility = 'public' AND name > $2 ORDER BY name LIMIT $3) open_ns \
                 ) v JOIN namespaces n ON n.name = v.name \
                 LEFT JOIN namespace_members m ON m.namespace = n.name AND m.user_name = $1 \
                 ORDER BY n.name LIMIT $3"
            }
        };
        let member = match reach {
            NamespaceReach::All => "",
            NamespaceReach::PublicOrMemberOf(member) => member.unwrap_or(""),
        };
        let mut statement = query(sql)
            .bind(user.unwrap_or(""))
            .bind(after.unwrap_or(""))
            .bind(limit_to_i64(limit));
        if matches!(reach, NamespaceReach::PublicOrMemberOf(_)) {
            statement = statement.bind(member);
        }
        statement
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing a page of namespaces"))?
            .iter()
            .map(|row| {
                Ok(NamespaceEntry {
                    namespace: namespace_from_row(row)?,
                    role: row.get("role")?,
                })
            })
            .collect()
    }

    async fn set_visibility(
        &self,
        change: &Change,
        name: &str,
        visibility: Visibility,
    ) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        // The previous value, for the event; locked on PostgreSQL so that
        // two changes take turns and each event says what it replaced.
        let sql = format!(
            "SELECT visibility FROM namespaces WHERE name = $1{}",
            tx.dialect().for_update()
        );
        let previous: String = query(&sql)
            .bind(name)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("looking up a namespace"))?
            .ok_or(MetaError::NotFound)?
            .first()?;
        if previous == visibility.as_str() {
            return Ok(());
        }
        query("UPDATE namespaces SET visibility = $1 WHERE name = $2")
            .bind(visibility.as_str())
            .bind(name)
            .execute(&mut tx)
            .await
            .map_err(write_error("setting visibility"))?;
        tx.record(NewEvent::namespace(
            EventKind::NamespaceUpdated,
            name,
            serde_json::json!({ "visibility": visibility.as_str(), "previous": previous }),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing a visibility change"))
    }

    async fn delete_namespace(&self, change: &Change, name: &str) -> Result<(), MetaError> {
        let mut tx = self.db.begin_change(change).await?;
        // Locked first on PostgreSQL: a repository being created in the
        // namespace holds its row (the foreign key's lock), so this waits for
        // that push and the check below sees its repository.
        let sql = format!(
            "SELECT 1 FROM namespaces WHERE name = $1{}",
            tx.dialect().for_update()
        );
        let exists = query(&sql)
            .bind(name)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("looking up a namespace"))?;
        if exists.is_none() {
            return Err(MetaError::NotFound);
        }
        let holds = query("SELECT 1 FROM repositories WHERE namespace = $1 LIMIT 1")
            .bind(name)
            .fetch_optional(&mut tx)
            .await
            .map_err(database("looking for a namespace's repositories"))?;
        if holds.is_some() {
            return Err(MetaError::NamespaceNotEmpty);
        }
        // Memberships go with it (`ON DELETE CASCADE`).
        query("DELETE FROM namespaces WHERE name = $1")
            .bind(name)
            .execute(&mut tx)
            .await
            .map_err(|error| match write_error("deleting a namespace")(error) {
                // A repository created since the check (PostgreSQL).
                MetaError::NotFound => MetaError::NamespaceNotEmpty,
                other => other,
            })?;
        tx.record(NewEvent::namespace(
            EventKind::NamespaceDeleted,
            name,
            serde_json::json!({}),
        ))?;
        tx.commit()
            .await
            .map_err(database("committing a namespace deletion"))
    }

    async fn namespace_usage(&self, name: &str) -> Result<Option<NamespaceUsage>, MetaError> {
        Ok(self
            .namespaces_usage(&[name])
            .await?
            .into_iter()
            .next()
            .map(|(_, usage)| usage))
    }

    async fn namespaces_usage(
        &self,
        names: &[&str],
    ) -> Result<Vec<(String, NamespaceUsage)>, MetaError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // One statement, so every count comes from one snapshot; the counts
        // add up the namespace's repositories' (kept by migration 0020's
        // triggers and the pull statistics), so this reads each of its
        // repositories once, not its images. The bytes are the quota's
        // figure, kept by migration 0017's triggers (each blob and manifest
        // once however many repositories hold it), so the namespace pages
        // and the quota never disagree.
        let sql = format!(
            "SELECT n.name AS name, COUNT(r.id) AS repositories, \
               CAST(COALESCE(SUM(r.image_count), 0) AS BIGINT) AS images, \
               CAST(COALESCE(SUM(r.tag_count), 0) AS BIGINT) AS tags, \
               CAST(COALESCE(SUM(r.pull_count), 0) AS BIGINT) AS pulls, \
               COALESCE((SELECT q.storage_bytes FROM namespace_quotas q \
                  WHERE q.namespace = n.name), 0) AS storage_bytes \
             FROM namespaces n LEFT JOIN repositories r ON r.namespace = n.name \
             WHERE n.name IN (SELECT l.value FROM {list}) \
             GROUP BY n.name ORDER BY n.name",
            list = self.db.dialect().list(1)
        );
        query(&sql)
            .bind(names.to_vec())
            .fetch_all(self.db.reader())
            .await
            .map_err(database("counting namespaces' contents"))?
            .iter()
            .map(|row| {
                Ok((
                    row.get("name")?,
                    NamespaceUsage {
                        repositories: count(row, "repositories")?,
                        images: count(row, "images")?,
                        tags: count(row, "tags")?,
                        storage_bytes: count(row, "storage_bytes")?,
                        pulls: count(row, "pulls")?,
                    },
                ))
            })
            .collect()
    }
}
