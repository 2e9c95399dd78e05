//! [`ImageStore`] in SQL.

use berth_oci::{Digest, RepoName, Tag};

use super::db::{database, query, Row};
use super::{limit_to_i64, parse_digest, parse_repository, parse_size, parse_tag, SqlMetaStore};
use crate::{
    ImageCursor, ImageStore, ImageSummary, MetaError, RepositoryQuery, RepositorySort,
    RepositorySummary, TagQuery, TagSort, TaggedFilter, TaggedImage,
};

/// The columns [`summary_from_row`] reads, from table alias `m`.
macro_rules! image_columns {
    () => {
        "m.digest, m.media_type, m.artifact_type, m.subject, m.size, m.total_size, \
         m.created_at, m.facts, m.pull_count, m.last_pulled_at"
    };
}

fn summary_from_row(row: &Row) -> Result<ImageSummary, MetaError> {
    let subject: Option<String> = row.get("subject")?;
    let total: Option<i64> = row.get("total_size")?;
    Ok(ImageSummary {
        digest: parse_digest(&row.get::<String>("digest")?)?,
        media_type: row.get("media_type")?,
        artifact_type: row.get("artifact_type")?,
        subject: subject.as_deref().map(parse_digest).transpose()?,
        tags: Vec::new(),
        // Every manifest stored since migration 0009 has its size; the
        // migration gave the older ones theirs.
        size: parse_size(total.unwrap_or(0))?,
        manifest_size: parse_size(row.get("size")?)?,
        pushed_at: row.get("created_at")?,
        facts: row.get("facts")?,
        pulls: parse_size(row.get("pull_count")?)?,
        last_pulled_at: row.get("last_pulled_at")?,
    })
}

impl<B> SqlMetaStore<B> {
    async fn repository_id_for_read(
        &self,
        repository: &RepoName,
    ) -> Result<Option<i64>, MetaError> {
        query("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("looking up a repository"))?
            .map(|row| row.first())
            .transpose()
    }

    /// The column `tag_names` of a query over manifests `m`: the tags of
    /// each, space-separated (a tag holds no space), read through
    /// `tags_by_manifest` in the same statement as the manifests, so a page
    /// of images is one statement rather than one and another for its tags.
    fn tag_names_column(&self) -> String {
        format!(
            "(SELECT {} FROM tags t \
             WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest) AS tag_names",
            self.db.dialect().space_joined("t.name")
        )
    }
}

/// The tags of a row with a [`SqlMetaStore::tag_names_column`], in byte
/// order, as the contract says, whatever the database's collation.
fn tags_from_row(row: &Row) -> Result<Vec<Tag>, MetaError> {
    let names: Option<String> = row.get("tag_names")?;
    let mut tags = names
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|name| !name.is_empty())
        .map(parse_tag)
        .collect::<Result<Vec<_>, _>>()?;
    tags.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
    Ok(tags)
}

/// An image summary with its tags, from a row with [`image_columns`] and a
/// [`SqlMetaStore::tag_names_column`].
fn tagged_summary_from_row(row: &Row) -> Result<ImageSummary, MetaError> {
    let mut summary = summary_from_row(row)?;
    summary.tags = tags_from_row(row)?;
    Ok(summary)
}

#[async_trait::async_trait]
impl<B: 'static> ImageStore for SqlMetaStore<B> {
    async fn list_images(
        &self,
        repository: &RepoName,
        filter: TaggedFilter,
        after: Option<&ImageCursor>,
        limit: usize,
    ) -> Result<Option<Vec<ImageSummary>>, MetaError> {
        let tagged = "EXISTS (SELECT 1 FROM tags t \
                      WHERE t.repository_id = m.repository_id AND t.manifest_digest = m.digest)";
        let filter = match filter {
            TaggedFilter::Any => String::new(),
            TaggedFilter::Tagged => format!(" AND {tagged}"),
            TaggedFilter::Untagged => format!(" AND NOT {tagged}"),
        };
        // A keyset page: the row-value comparison is one range of
        // `manifests_by_push`, however deep the page. The repository is
        // looked up by name in the same statement (its primary-key index),
        // and so are the tags: one statement for the page.
        let (after_clause, limit_param) = match after {
            Some(_) => (" AND (m.created_at, m.digest) < ($2, $3)", "$4"),
            None => ("", "$2"),
        };
        let sql = format!(
            "SELECT {}, {} FROM manifests m \
             WHERE m.repository_id = (SELECT id FROM repositories WHERE name = $1) \
             AND m.trashed_at IS NULL{after_clause}{filter} \
             ORDER BY m.created_at DESC, m.digest DESC LIMIT {limit_param}",
            image_columns!(),
            self.tag_names_column()
        );
        let mut statement = query(&sql).bind(repository.as_str());
        if let Some(cursor) = after {
            statement = statement
                .bind(cursor.pushed_at)
                .bind(cursor.digest.as_str());
        }
        let rows = statement
            .bind(limit_to_i64(limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing images"))?;
        // An empty page may be a repository that does not exist.
        if rows.is_empty() && self.repository_id_for_read(repository).await?.is_none() {
            return Ok(None);
        }
        rows.iter()
            .map(tagged_summary_from_row)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    async fn list_tagged_images(
        &self,
        repository: &RepoName,
        request: &TagQuery,
    ) -> Result<Option<Vec<TaggedImage>>, MetaError> {
        let Some(repository_id) = self.repository_id_for_read(repository).await? else {
            return Ok(None);
        };
        let mut next = 2;
        let mut param = || {
            let n = next;
            next += 1;
            n
        };
        let contains = request
            .contains
            .as_ref()
            .map(|_| format!(" AND t.name LIKE ${} ESCAPE '!'", param()))
            .unwrap_or_default();
        // Each sort walks one index in order from the cursor: the primary
        // key (repository_id, name), `tags_by_update` (repository_id,
        // updated_at, name) or `manifests_by_size` (repository_id,
        // total_size, digest) joined to the tags of each manifest; the
        // row-value comparison starts the range, so a deep page costs what
        // the first one does. `CROSS JOIN` makes SQLite keep the ordered
        // table outside (with the statistics of a large repository it would
        // otherwise read every row and sort them: 70 ms instead of under
        // one for a first page of 100,000 tags); PostgreSQL reads it as the
        // inner join it is and plans it by cost.
        let (from, after, order) = match request.sort {
            TagSort::Name => (
                "tags t CROSS JOIN manifests m \
                 WHERE t.repository_id = $1 \
                 AND m.repository_id = t.repository_id AND m.digest = t.manifest_digest",
                request
                    .after
                    .as_ref()
                    .map(|_| format!(" AND t.name > ${}", param())),
                "t.name",
            ),
            TagSort::Newest | TagSort::Oldest => {
                let newest = request.sort == TagSort::Newest;
                (
                    "tags t CROSS JOIN manifests m \
                     WHERE t.repository_id = $1 \
                     AND m.repository_id = t.repository_id AND m.digest = t.manifest_digest",
                    request.after.as_ref().map(|_| {
                        let (key, name) = (param(), param());
                        let op = if newest { "<" } else { ">" };
                        format!(" AND (t.updated_at, t.name) {op} (${key}, ${name})")
                    }),
                    if newest {
                        "t.updated_at DESC, t.name DESC"
                    } else {
                        "t.updated_at, t.name"
                    },
                )
            }
            TagSort::Size => (
                "manifests m CROSS JOIN tags t \
                 WHERE m.repository_id = $1 AND m.trashed_at IS NULL \
                 AND t.repository_id = m.repository_id AND t.manifest_digest = m.digest",
                request.after.as_ref().map(|_| {
                    let (size, digest, name) = (param(), param(), param());
                    format!(" AND (m.total_size, m.digest, t.name) < (${size}, ${digest}, ${name})")
                }),
                "m.total_size DESC, m.digest DESC, t.name DESC",
            ),
        };
        let sql = format!(
            "SELECT t.name AS tag_name, t.updated_at AS tag_updated_at, {} FROM {from}{contains}{} \
             ORDER BY {order} LIMIT ${}",
            image_columns!(),
            after.unwrap_or_default(),
            param()
        );
        let mut statement = query(&sql).bind(repository_id);
        if let Some(contains) = &request.contains {
            let escaped = contains
                .replace('!', "!!")
                .replace('%', "!%")
                .replace('_', "!_");
            statement = statement.bind(format!("%{escaped}%"));
        }
        if let Some(cursor) = &request.after {
            statement = match request.sort {
                TagSort::Name => statement.bind(cursor.name.as_str()),
                TagSort::Newest | TagSort::Oldest => {
                    statement.bind(cursor.key).bind(cursor.name.as_str())
                }
                TagSort::Size => statement
                    .bind(cursor.key)
                    .bind(cursor.digest.as_str())
                    .bind(cursor.name.as_str()),
            };
        }
        let rows = statement
            .bind(limit_to_i64(request.limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing tags"))?;
        rows.iter()
            .map(|row| {
                Ok(TaggedImage {
                    tag: parse_tag(&row.get::<String>("tag_name")?)?,
                    updated_at: row.get("tag_updated_at")?,
                    image: summary_from_row(row)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    async fn image(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ImageSummary>, MetaError> {
        let sql = format!(
            "SELECT {}, {} FROM manifests m \
             WHERE m.repository_id = (SELECT id FROM repositories WHERE name = $1) \
             AND m.digest = $2 AND m.trashed_at IS NULL",
            image_columns!(),
            self.tag_names_column()
        );
        let row = query(&sql)
            .bind(repository.as_str())
            .bind(digest.as_str())
            .fetch_optional(self.db.reader())
            .await
            .map_err(database("fetching an image"))?;
        row.as_ref().map(tagged_summary_from_row).transpose()
    }

    async fn list_repository_summaries(
        &self,
        request: &RepositoryQuery,
    ) -> Result<Vec<RepositorySummary>, MetaError> {
        // Every figure is a column of `repositories` (size, counts and last
        // push kept by migration 0020's triggers, pulls by the statistics
        // flush), and each sort key has an index on (key, name), so a page
        // reads its rows in order and nothing else.
        let mut conditions: Vec<String> = Vec::new();
        let mut next = 1;
        let mut param = || {
            let n = next;
            next += 1;
            n
        };
        if request.namespaces.is_some() {
            conditions.push(format!(
                "r.namespace IN (SELECT l.value FROM {})",
                self.db.dialect().list(param())
            ));
        }
        if request.contains.is_some() {
            conditions.push(format!("r.name LIKE ${} ESCAPE '!'", param()));
        }
        // The sort key's column.
        let key = match request.sort {
            RepositorySort::Name => None,
            RepositorySort::LastPush => Some("r.last_push_at"),
            RepositorySort::Size => Some("r.size_bytes"),
            RepositorySort::Pulls => Some("r.pull_count"),
        };
        let order = match key {
            None => "r.name".to_string(),
            Some(key) => format!("{key} DESC, r.name DESC"),
        };
        if request.after.is_some() {
            conditions.push(match key {
                None => format!("r.name > ${}", param()),
                Some(key) => {
                    let (k, n) = (param(), param());
                    format!("({key}, r.name) < (${k}, ${n})")
                }
            });
        }
        let limit = param();
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT r.name, r.pull_count AS pulls, r.last_pulled_at AS last_pull, \
                 r.size_bytes AS size, r.last_push_at AS last_push, \
                 r.tag_count AS tags, r.image_count AS images \
             FROM repositories r{filter} ORDER BY {order} LIMIT ${limit}"
        );
        let mut statement = query(&sql);
        if let Some(namespaces) = &request.namespaces {
            statement = statement.bind(namespaces.iter().map(String::as_str).collect::<Vec<_>>());
        }
        if let Some(contains) = &request.contains {
            let escaped = contains
                .replace('!', "!!")
                .replace('%', "!%")
                .replace('_', "!_");
            statement = statement.bind(format!("%{escaped}%"));
        }
        if let Some(cursor) = &request.after {
            if key.is_some() {
                statement = statement.bind(cursor.key);
            }
            statement = statement.bind(cursor.name.as_str());
        }
        let rows = statement
            .bind(limit_to_i64(request.limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("listing repositories"))?;
        rows.iter()
            .map(|row| {
                let last_push: i64 = row.get("last_push")?;
                Ok(RepositorySummary {
                    name: parse_repository(&row.get::<String>("name")?)?,
                    tags: parse_size(row.get("tags")?)?,
                    images: parse_size(row.get("images")?)?,
                    size: parse_size(row.get("size")?)?,
                    last_push: (last_push > 0).then_some(last_push),
                    pulls: parse_size(row.get("pulls")?)?,
                    last_pull: row.get("last_pull")?,
                })
            })
            .collect()
    }

    async fn set_image_facts(
        &self,
        repository: &RepoName,
        digest: &Digest,
        facts: &str,
    ) -> Result<bool, MetaError> {
        let updated = query(
            "UPDATE manifests SET facts = $3 \
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1) \
               AND digest = $2 AND facts IS NULL",
        )
        .bind(repository.as_str())
        .bind(digest.as_str())
        .bind(facts)
        .execute(self.db.writer())
        .await
        .map_err(database("storing an image's facts"))?;
        Ok(updated > 0)
    }
}
