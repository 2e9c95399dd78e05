//! [`PullStatsStore`] in SQL.

use std::collections::{BTreeMap, BTreeSet};

use super::db::{database, query};
use super::events::{append, NewEvent};
use super::SqlMetaStore;
use crate::{Actor, Change, EventKind, MetaError, PullCount, PullStatsStore, Timestamp};

/// The `SET` clause that adds pulls to an image's or a repository's
/// counters: `$1` pulls, the latest at `$2` (kept if an earlier flush saw a
/// later one). A macro, so that each statement stays one literal.
macro_rules! add_pulls {
    () => {
        "pull_count = pull_count + $1, \
         last_pulled_at = CASE WHEN last_pulled_at IS NULL OR last_pulled_at < $2 \
             THEN $2 ELSE last_pulled_at END"
    };
}

/// A count as the databases store it (a signed 64-bit integer); more pulls
/// than that are not counted further.
fn stored(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl<B: 'static> PullStatsStore for SqlMetaStore<B> {
    async fn record_pulls(&self, pulls: &[PullCount], events: bool) -> Result<(), MetaError> {
        if pulls.is_empty() {
            return Ok(());
        }
        // Summed per image and per repository first, in sorted maps, so
        // rows are updated once each and always in the same order.
        let mut images: BTreeMap<(&str, &str), (u64, Timestamp)> = BTreeMap::new();
        let mut repositories: BTreeMap<&str, (u64, Timestamp)> = BTreeMap::new();
        for pull in pulls {
            for entry in [
                images
                    .entry((pull.repository.as_str(), pull.digest.as_str()))
                    .or_insert((0, Timestamp::MIN)),
                repositories
                    .entry(pull.repository.as_str())
                    .or_insert((0, Timestamp::MIN)),
            ] {
                entry.0 = entry.0.saturating_add(pull.pulls);
                entry.1 = entry.1.max(pull.last_pulled_at);
            }
        }
        let mut days: BTreeMap<(&str, Timestamp), u64> = BTreeMap::new();
        for pull in pulls {
            let day = days
                .entry((
                    pull.repository.namespace(),
                    crate::day_start(pull.last_pulled_at),
                ))
                .or_default();
            *day = day.saturating_add(pull.pulls);
        }
        let mut tx = self.db.begin_write().await?;
        // The daily rows first, sorted, as `record_traffic` takes them, so
        // that two batches never lock them in opposite orders.
        for ((namespace, day), count) in &days {
            super::usage::add_daily(&mut tx, namespace, *day, stored(*count), 0).await?;
        }
        // The images before their repositories: a push or a deletion locks
        // a manifest's row before its repository's (the triggers on tags and
        // manifests update the repository), and taking them the other way
        // round deadlocked a push on PostgreSQL.
        let mut existing = BTreeSet::new();
        for ((repository, digest), (count, last)) in &images {
            let updated = query(concat!(
                "UPDATE manifests SET ",
                add_pulls!(),
                " WHERE repository_id = (SELECT id FROM repositories WHERE name = $3) \
                   AND digest = $4",
            ))
            .bind(stored(*count))
            .bind(*last)
            .bind(*repository)
            .bind(*digest)
            .execute(&mut tx)
            .await
            .map_err(database("recording an image's pulls"))?;
            if updated > 0 {
                existing.insert((*repository, *digest));
            }
        }
        for (repository, (count, last)) in &repositories {
            query(concat!(
                "UPDATE repositories SET ",
                add_pulls!(),
                " WHERE name = $3"
            ))
            .bind(stored(*count))
            .bind(*last)
            .bind(*repository)
            .execute(&mut tx)
            .await
            .map_err(database("recording a repository's pulls"))?;
        }
        if events {
            // One insert per puller: an event's actor is its change's.
            let mut by_actor: BTreeMap<(&str, Option<&str>), (&Actor, Timestamp, Vec<NewEvent>)> =
                BTreeMap::new();
            for pull in pulls {
                let key = (pull.repository.as_str(), pull.digest.as_str());
                if !existing.contains(&key) {
                    continue;
                }
                let entry = by_actor
                    .entry((pull.actor.kind.as_str(), pull.actor.name.as_deref()))
                    .or_insert((&pull.actor, Timestamp::MIN, Vec::new()));
                entry.1 = entry.1.max(pull.last_pulled_at);
                let mut detail = serde_json::json!({ "count": stored(pull.pulls) });
                if let Some(warning) = &pull.warning {
                    detail["warning"] = serde_json::json!(warning);
                }
                entry.2.push(
                    NewEvent::repository(EventKind::ImagePulled, &pull.repository)
                        .digest(pull.digest.as_str())
                        .detail(detail),
                );
            }
            for (actor, at, events) in by_actor.into_values() {
                append(&mut tx, &Change::new(actor.clone(), at), &events)
                    .await
                    .map_err(database("recording pull events"))?;
            }
        }
        tx.commit()
            .await
            .map_err(database("committing pull statistics"))
    }
}
