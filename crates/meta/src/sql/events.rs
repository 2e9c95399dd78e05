//! The event stream in SQL: events inserted with the change they describe
//! (see [`append`], called by [`Tx::commit`]), read in order, and the
//! consumers' positions and leases. `crate::events` explains the ordering
//! argument; this file implements it.

use std::net::IpAddr;

use berth_oci::{RepoName, Tag};

use super::db::{database, query, Dialect, Row, Tx};
use super::{limit_to_i64, parse_digest, parse_repository, parse_tag, SqlMetaStore};
use crate::events::{
    Actor, ActorKind, ConsumerRow, Event, EventCursor, EventKind, EventPage, EventStore,
    EventSubscription,
};
use crate::{Change, MetaError, Timestamp};

/// An event as a write records it; the change's time and actor are added
/// when it is inserted.
#[derive(Clone, Debug)]
pub(crate) struct NewEvent {
    kind: EventKind,
    namespace: Option<String>,
    repository: Option<String>,
    digest: Option<String>,
    tag: Option<String>,
    detail: serde_json::Value,
}

impl NewEvent {
    /// An event about nothing in particular (a user, a token), with
    /// `detail` (a JSON object).
    pub(crate) fn new(kind: EventKind, detail: serde_json::Value) -> NewEvent {
        NewEvent {
            kind,
            namespace: None,
            repository: None,
            digest: None,
            tag: None,
            detail,
        }
    }

    /// An event about a namespace.
    pub(crate) fn namespace(kind: EventKind, namespace: &str, detail: serde_json::Value) -> Self {
        NewEvent {
            namespace: Some(namespace.to_string()),
            ..NewEvent::new(kind, detail)
        }
    }

    /// An event about a repository (in its namespace).
    pub(crate) fn repository(kind: EventKind, repository: &RepoName) -> NewEvent {
        NewEvent {
            namespace: Some(repository.namespace().to_string()),
            repository: Some(repository.as_str().to_string()),
            ..NewEvent::new(kind, serde_json::json!({}))
        }
    }

    /// The same event about `digest`.
    pub(crate) fn digest(mut self, digest: &str) -> NewEvent {
        self.digest = Some(digest.to_string());
        self
    }

    /// The same event about `tag`.
    pub(crate) fn tag(mut self, tag: &Tag) -> NewEvent {
        self.tag = Some(tag.as_str().to_string());
        self
    }

    /// The same event with `detail`.
    pub(crate) fn detail(mut self, detail: serde_json::Value) -> NewEvent {
        self.detail = detail;
        self
    }
}

/// Rows inserted per statement, so that a change with many events (a
/// repository deletion step) stays within both databases' limits on
/// statement parameters.
const EVENTS_PER_STATEMENT: usize = 200;

/// The PostgreSQL channel on which committing transactions name the
/// repositories they changed (see [`notice_payload`]).
pub(crate) const NOTIFY_CHANNEL: &str = "berth_events";

/// The first character of a fence's and of an acknowledgement's payload
/// ([`EventStore::send_fence`], [`EventStore::send_ack`]); repository names
/// cannot start with either, so no change notice is mistaken for one.
#[cfg(feature = "postgres")]
const FENCE_PREFIX: &str = "#";
#[cfg(feature = "postgres")]
const ACK_PREFIX: &str = "!";

/// Above this many bytes a notice says "anything" instead of naming every
/// repository (PostgreSQL refuses payloads of 8000 bytes or more).
const NOTICE_LIMIT: usize = 7000;

/// The notice for `events`: the repositories they change, one per line, or
/// `*` when there are too many to name; `None` when they change no
/// repository (users, tokens, namespaces: nothing a node caches).
fn notice_payload(events: &[NewEvent]) -> Option<String> {
    // A pull changes nothing a node caches; naming its repository would
    // only empty the other nodes' caches of what is being pulled.
    let mut repositories: Vec<&str> = events
        .iter()
        .filter(|e| e.kind != EventKind::ImagePulled)
        .filter_map(|e| e.repository.as_deref())
        .collect();
    repositories.sort_unstable();
    repositories.dedup();
    if repositories.is_empty() {
        return None;
    }
    let payload = repositories.join("\n");
    Some(if payload.len() > NOTICE_LIMIT {
        "*".to_string()
    } else {
        payload
    })
}

#[cfg(feature = "postgres")]
fn parse_notice(payload: &str) -> crate::Notice {
    use crate::Notice;
    if payload == "*" {
        return Notice::Anything;
    }
    if let Some(token) = payload.strip_prefix(FENCE_PREFIX) {
        return Notice::Fence(token.to_string());
    }
    if let Some(token) = payload.strip_prefix(ACK_PREFIX) {
        return Notice::Ack(token.to_string());
    }
    let repositories: Result<Vec<RepoName>, _> = payload.lines().map(RepoName::parse).collect();
    match repositories {
        Ok(repositories) => Notice::Changed(repositories),
        Err(_) => Notice::Anything,
    }
}

/// Inserts `events` of `change` in `tx`; [`Tx::commit`] calls it last, so the
/// events commit with the change. On PostgreSQL each row also records the
/// transaction's id, which the transaction must have had before (it wrote
/// the change first): `pg_current_xact_id_if_assigned()` is NULL otherwise,
/// and the column's `NOT NULL` refuses the insert (see `crate::events`).
/// PostgreSQL also queues the notice naming the changed repositories in the
/// same statement; it is delivered to listeners when, and only if, the
/// transaction commits.
pub(crate) async fn append(
    tx: &mut Tx,
    change: &Change,
    events: &[NewEvent],
) -> Result<(), sqlx::Error> {
    let xid = match tx.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => ", pg_current_xact_id_if_assigned()",
    };
    let xid_column = if xid.is_empty() { "" } else { ", xid" };
    let address = change.actor.address.map(|a| a.to_string());
    let notice = match tx.dialect() {
        Dialect::Sqlite => None,
        Dialect::Postgres => notice_payload(events),
    };
    let chunks = events.chunks(EVENTS_PER_STATEMENT).count();
    for (index, chunk) in events.chunks(EVENTS_PER_STATEMENT).enumerate() {
        // The change's time and actor are the first four parameters, shared
        // by every row; each row adds six of its own.
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = 5 + 6 * i;
                format!(
                    "($1, $2, $3, $4, ${}, ${}, ${}, ${}, ${}, ${}{xid})",
                    p,
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5
                )
            })
            .collect();
        let insert = format!(
            "INSERT INTO events (at, actor_kind, actor_name, actor_address, kind, namespace, \
             repository, digest, tag, detail{xid_column}) VALUES {}",
            rows.join(", ")
        );
        // The notice rides on the last insert: a data-modifying `WITH` runs
        // whether or not the outer statement reads it.
        let notify = notice.as_ref().filter(|_| index + 1 == chunks);
        let sql = match notify {
            Some(_) => format!(
                "WITH inserted AS ({insert}) SELECT pg_notify('{NOTIFY_CHANNEL}', ${})",
                5 + 6 * chunk.len()
            ),
            None => insert,
        };
        let mut statement = query(&sql)
            .bind(change.at)
            .bind(change.actor.kind.as_str())
            .bind(change.actor.name.as_deref())
            .bind(address.as_deref());
        for event in chunk {
            statement = statement
                .bind(event.kind.as_str())
                .bind(event.namespace.as_deref())
                .bind(event.repository.as_deref())
                .bind(event.digest.as_deref())
                .bind(event.tag.as_deref())
                .bind(event.detail.to_string());
        }
        if let Some(notice) = notify {
            statement = statement.bind(notice.as_str());
        }
        statement.execute(&mut *tx).await?;
    }
    Ok(())
}

const EVENT_COLUMNS: &str = "position, at, kind, namespace, repository, digest, tag, \
     actor_kind, actor_name, actor_address, detail";

fn corrupt(what: &str, text: &str) -> MetaError {
    MetaError::Corrupt(format!("event {what} {text:?}"))
}

fn event_from_row(row: &Row) -> Result<Event, MetaError> {
    let kind: String = row.get("kind")?;
    let actor_kind: String = row.get("actor_kind")?;
    let address: Option<String> = row.get("actor_address")?;
    let repository: Option<String> = row.get("repository")?;
    let digest: Option<String> = row.get("digest")?;
    let tag: Option<String> = row.get("tag")?;
    let detail: String = row.get("detail")?;
    Ok(Event {
        position: row.get("position")?,
        at: row.get("at")?,
        kind: EventKind::parse(&kind).ok_or_else(|| corrupt("kind", &kind))?,
        namespace: row.get("namespace")?,
        repository: repository.as_deref().map(parse_repository).transpose()?,
        digest: digest.as_deref().map(parse_digest).transpose()?,
        tag: tag.as_deref().map(parse_tag).transpose()?,
        actor: Actor {
            kind: ActorKind::parse(&actor_kind).ok_or_else(|| corrupt("actor", &actor_kind))?,
            name: row.get("actor_name")?,
            address: address
                .map(|a| a.parse::<IpAddr>().map_err(|_| corrupt("address", &a)))
                .transpose()?,
        },
        detail: serde_json::from_str(&detail).map_err(|_| corrupt("detail", &detail))?,
    })
}

/// Splits the events read after `cursor` into the gap-free prefix and what
/// lies beyond a gap that may still fill, given the read's snapshot horizon
/// (`xmin`, `xmax`; `None` on SQLite, whose positions commit in order).
fn order(cursor: &EventCursor, read: Vec<Event>, horizon: Option<(u64, u64)>) -> EventPage {
    let Some((xmin, xmax)) = horizon else {
        let next = EventCursor::after(read.last().map_or(cursor.position, |e| e.position));
        return EventPage {
            events: read,
            next,
            pending: Vec::new(),
        };
    };
    // Missing positions up to `permanent` will never appear: every
    // transaction that could still have held one has ended.
    let permanent = match cursor.gap {
        Some((seen, waited_for)) if xmin >= waited_for => seen,
        _ => cursor.position,
    };
    let seen = read.last().map(|e| e.position);
    let mut last = cursor.position;
    let mut events = Vec::new();
    let mut pending = Vec::new();
    for event in read {
        if pending.is_empty() && (event.position == last + 1 || event.position - 1 <= permanent) {
            last = event.position;
            events.push(event);
        } else {
            pending.push(event);
        }
    }
    let gap = match (pending.is_empty(), cursor.gap) {
        (true, _) => None,
        // Still waiting for the transactions of an earlier sighting.
        (false, Some((seen_before, waited_for))) if xmin < waited_for => {
            Some((seen_before, waited_for))
        }
        (false, _) => seen.map(|seen| (seen, xmax)),
    };
    EventPage {
        events,
        next: EventCursor {
            position: last,
            gap,
        },
        pending,
    }
}

fn consumer_from_row(row: &Row) -> Result<ConsumerRow, MetaError> {
    Ok(ConsumerRow {
        name: row.get("name")?,
        position: row.get("position")?,
        holder: row.get("holder")?,
        lease_expires: row.get("lease_expires")?,
        updated_at: row.get("updated_at")?,
    })
}

#[async_trait::async_trait]
impl<B: 'static> EventStore for SqlMetaStore<B> {
    async fn read_events(
        &self,
        cursor: &EventCursor,
        limit: usize,
    ) -> Result<EventPage, MetaError> {
        let (sql, horizon) = match self.db.dialect() {
            Dialect::Sqlite => (
                format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 \
                     ORDER BY position LIMIT $2"
                ),
                false,
            ),
            // The snapshot's horizon comes from the same statement, so it
            // describes exactly the snapshot the events were read in; the
            // left join yields it even when there is no event.
            Dialect::Postgres => (
                format!(
                    "SELECT CAST(CAST(pg_snapshot_xmin(s.snapshot) AS TEXT) AS BIGINT) AS xmin, \
                     CAST(CAST(pg_snapshot_xmax(s.snapshot) AS TEXT) AS BIGINT) AS xmax, e.* \
                     FROM (SELECT pg_current_snapshot() AS snapshot) s \
                     LEFT JOIN LATERAL (SELECT {EVENT_COLUMNS} FROM events \
                         WHERE position > $1 ORDER BY position LIMIT $2) e ON TRUE \
                     ORDER BY e.position"
                ),
                true,
            ),
        };
        let rows = query(&sql)
            .bind(cursor.position)
            .bind(limit_to_i64(limit))
            .fetch_all(self.db.reader())
            .await
            .map_err(database("reading events"))?;
        let mut read = Vec::with_capacity(rows.len());
        let mut snapshot = None;
        for row in &rows {
            if horizon {
                let xmin: i64 = row.get("xmin")?;
                let xmax: i64 = row.get("xmax")?;
                snapshot = Some((xmin as u64, xmax as u64));
                if row.get::<Option<i64>>("position")?.is_none() {
                    continue;
                }
            }
            read.push(event_from_row(row)?);
        }
        Ok(order(cursor, read, snapshot))
    }

    async fn last_event_position(&self) -> Result<i64, MetaError> {
        query("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(self.db.reader())
            .await
            .map_err(database("finding the last event"))?
            .first()
    }

    async fn settled_position(&self) -> Result<i64, MetaError> {
        let dialect = self.db.dialect();
        if dialect == Dialect::Sqlite {
            return self.last_event_position().await;
        }
        let row = query(
            "SELECT COALESCE(MAX(position), 0) AS last, \
             CAST(CAST(pg_snapshot_xmax(pg_current_snapshot()) AS TEXT) AS BIGINT) AS xmax \
             FROM events",
        )
        .fetch_one(self.db.reader())
        .await
        .map_err(database("finding the last event"))?;
        let last: i64 = row.get("last")?;
        let xmax: i64 = row.get("xmax")?;
        // Every position up to `last` was taken by a transaction whose id is
        // below `xmax` (see `crate::events`); once they have all ended, no
        // position up to `last` can appear any more.
        for _ in 0..SETTLE_ATTEMPTS {
            let xmin: i64 = query(
                "SELECT CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)",
            )
            .fetch_one(self.db.reader())
            .await
            .map_err(database("reading the transaction horizon"))?
            .first()?;
            if xmin >= xmax {
                return Ok(last);
            }
            tokio::time::sleep(SETTLE_INTERVAL).await;
        }
        Err(MetaError::Database(
            "transactions running for over a minute keep the event stream from settling".into(),
        ))
    }

    async fn subscribe(&self) -> Result<Option<Box<dyn EventSubscription>>, MetaError> {
        match &self.db {
            super::db::Db::Sqlite { .. } => Ok(None),
            #[cfg(feature = "postgres")]
            super::db::Db::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool)
                    .await
                    .map_err(database("connecting to listen for events"))?;
                listener
                    .listen(NOTIFY_CHANNEL)
                    .await
                    .map_err(database("listening for events"))?;
                Ok(Some(Box::new(PgSubscription { listener })))
            }
        }
    }

    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    async fn send_fence(&self, token: &str) -> Result<usize, MetaError> {
        match &self.db {
            super::db::Db::Sqlite { .. } => Ok(0),
            #[cfg(feature = "postgres")]
            super::db::Db::Postgres(pool) => {
                // The subscribers are the sessions whose last statement was
                // the `LISTEN` (a listening connection runs nothing else),
                // counted in the statement that sends the fence; the
                // sender's own is one of them.
                let listening: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_stat_activity, (SELECT pg_notify($1, $2)) AS sent \
                     WHERE datname = current_database() AND query LIKE $3",
                )
                .bind(NOTIFY_CHANNEL)
                .bind(format!("{FENCE_PREFIX}{token}"))
                .bind(format!("LISTEN %{NOTIFY_CHANNEL}%"))
                .fetch_one(pool)
                .await
                .map_err(database("sending a fence"))?;
                Ok(usize::try_from(listening).unwrap_or(0).saturating_sub(1))
            }
        }
    }

    #[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
    async fn send_ack(&self, token: &str) -> Result<(), MetaError> {
        match &self.db {
            super::db::Db::Sqlite { .. } => Ok(()),
            #[cfg(feature = "postgres")]
            super::db::Db::Postgres(pool) => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(NOTIFY_CHANNEL)
                    .bind(format!("{ACK_PREFIX}{token}"))
                    .execute(pool)
                    .await
                    .map_err(database("acknowledging a fence"))?;
                Ok(())
            }
        }
    }

    async fn first_event_since(&self, at: Timestamp) -> Result<Option<i64>, MetaError> {
        query("SELECT MIN(position) FROM events WHERE at >= $1")
            .bind(at)
            .fetch_one(self.db.reader())
            .await
            .map_err(database("finding events by time"))?
            .first()
    }

    async fn delete_events_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<u64, MetaError> {
        query(
            "DELETE FROM events WHERE position IN ( \
                 SELECT position FROM events WHERE at < $1 ORDER BY position LIMIT $2)",
        )
        .bind(before)
        .bind(limit_to_i64(limit))
        .execute(self.db.writer())
        .await
        .map_err(database("deleting old events"))
    }

    async fn acquire_consumer(
        &self,
        name: &str,
        holder: &str,
        start: i64,
        now: Timestamp,
        lease_secs: i64,
    ) -> Result<Option<i64>, MetaError> {
        // As for job leases: one statement decides and writes, and
        // `RETURNING` yields a row only when the lease was taken.
        let taken = query(
            "INSERT INTO event_consumers (name, position, holder, lease_expires, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE \
             SET holder = excluded.holder, lease_expires = excluded.lease_expires \
             WHERE event_consumers.holder IS NULL OR event_consumers.holder = excluded.holder \
                OR event_consumers.lease_expires <= $5 \
             RETURNING position",
        )
        .bind(name)
        .bind(start)
        .bind(holder)
        .bind(now.saturating_add(lease_secs))
        .bind(now)
        .fetch_optional(self.db.writer())
        .await
        .map_err(database("taking a consumer's lease"))?;
        taken.map(|row| row.first()).transpose()
    }

    async fn advance_consumer(
        &self,
        name: &str,
        holder: &str,
        position: i64,
        now: Timestamp,
    ) -> Result<(), MetaError> {
        let updated = query(
            "UPDATE event_consumers \
             SET position = CASE WHEN position > $3 THEN position ELSE $3 END, updated_at = $4 \
             WHERE name = $1 AND holder = $2",
        )
        .bind(name)
        .bind(holder)
        .bind(position)
        .bind(now)
        .execute(self.db.writer())
        .await
        .map_err(database("advancing a consumer"))?;
        if updated == 0 {
            return Err(MetaError::LeaseLost);
        }
        Ok(())
    }

    async fn release_consumer(&self, name: &str, holder: &str) -> Result<(), MetaError> {
        query(
            "UPDATE event_consumers SET holder = NULL, lease_expires = NULL \
             WHERE name = $1 AND holder = $2",
        )
        .bind(name)
        .bind(holder)
        .execute(self.db.writer())
        .await
        .map_err(database("releasing a consumer's lease"))?;
        Ok(())
    }

    async fn list_consumers(&self) -> Result<Vec<ConsumerRow>, MetaError> {
        query(
            "SELECT name, position, holder, lease_expires, updated_at FROM event_consumers \
             ORDER BY name",
        )
        .fetch_all(self.db.reader())
        .await
        .map_err(database("listing consumers"))?
        .iter()
        .map(consumer_from_row)
        .collect()
    }
}

/// How often, and how many times, [`EventStore::settled_position`] looks
/// whether the transactions it waits for have ended: a minute in all.
const SETTLE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);
const SETTLE_ATTEMPTS: usize = 6000;

/// A PostgreSQL `LISTEN` on [`NOTIFY_CHANNEL`], on a connection of its own.
#[cfg(feature = "postgres")]
struct PgSubscription {
    listener: sqlx::postgres::PgListener,
}

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl EventSubscription for PgSubscription {
    async fn next(&mut self) -> Result<crate::Notice, MetaError> {
        // `try_recv` says when the connection was lost (and re-established,
        // listening again): notices sent meanwhile are gone.
        match self
            .listener
            .try_recv()
            .await
            .map_err(database("waiting for events"))?
        {
            Some(notification) => Ok(parse_notice(notification.payload())),
            None => Ok(crate::Notice::Anything),
        }
    }
}
