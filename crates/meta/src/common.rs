//! What both SQL backends share: error mapping, conversions between the
//! database's signed integers and text and `berth_oci` types, and the embedded
//! migrations as a source sqlx's migrator understands.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use berth_oci::{Digest, RepoName, Tag};
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType};

use crate::auth::AuthMetaError;
use crate::{MetaError, SizeMismatch};

/// Maps a sqlx error to `MetaError`, saying what was being done: a
/// condition outside the request (see [`is_unavailability`]) becomes
/// `Unavailable`, anything else `Database`.
pub(crate) fn database(context: &'static str) -> impl FnOnce(sqlx::Error) -> MetaError {
    move |error| {
        if is_unavailability(&error) {
            MetaError::Unavailable(format!("{context}: {error}"))
        } else {
            MetaError::Database(format!("{context}: {error}"))
        }
    }
}

/// Whether an error says the database cannot serve now, rather than that
/// the request or the data is wrong: no connection (refused, reset, none
/// free in time), SQLite's lock held by another process, a full or
/// read-only disk, a PostgreSQL server shutting down, out of resources, or
/// cancelling a statement that ran too long, or a transaction that lost a
/// deadlock or serialization conflict. Each may clear up on its own, and
/// the client is told to retry (`503`).
pub(crate) fn is_unavailability(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                use sqlx::error::DatabaseError as _;
                // Primary result codes (the low byte of extended ones):
                // BUSY, LOCKED, READONLY, IOERR, FULL.
                let code = sqlite.code().and_then(|code| code.parse::<i32>().ok());
                return code.is_some_and(|code| matches!(code & 0xff, 5 | 6 | 8 | 10 | 13));
            }
            #[cfg(feature = "postgres")]
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                // SQLSTATE classes 08 (connection), 53 (insufficient
                // resources, disk full among them), 57 (operator
                // intervention: shutdown, statement timeout), 58 (system
                // error); and the retryable conflicts 40001, 40P01, 55P03.
                let code = pg.code();
                return ["08", "53", "57", "58"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || matches!(code, "40001" | "40P01" | "55P03");
            }
            false
        }
        _ => false,
    }
}

/// Maps a write error: unique violations become `AlreadyExists`, foreign-key
/// violations `NotFound` (the row named a user or namespace that is absent).
pub(crate) fn write_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> AuthMetaError {
    move |error| {
        if let Some(db) = error.as_database_error() {
            if db.is_unique_violation() {
                return AuthMetaError::AlreadyExists;
            }
            if db.is_foreign_key_violation() {
                return AuthMetaError::NotFound;
            }
        }
        AuthMetaError::Meta(database(context)(error))
    }
}

pub(crate) fn read_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> AuthMetaError {
    move |error| AuthMetaError::Meta(database(context)(error))
}

/// `NotFound` when an update touched no row.
pub(crate) fn require_one(rows: u64) -> Result<(), AuthMetaError> {
    if rows == 0 {
        Err(AuthMetaError::NotFound)
    } else {
        Ok(())
    }
}

/// The declared sizes that differ from the stored ones (`(digest, size)`
/// rows read from `blobs`), in declaration order. Digests without a row are
/// skipped: the link check before this one reports them.
pub(crate) fn size_mismatches(
    declared: &[(Digest, u64)],
    stored: &[(String, i64)],
) -> Result<Vec<SizeMismatch>, MetaError> {
    let mut mismatches = Vec::new();
    for (digest, size) in declared {
        let Some((_, found)) = stored.iter().find(|(d, _)| d == digest.as_str()) else {
            continue;
        };
        let found = parse_size(*found)?;
        if found != *size {
            mismatches.push(SizeMismatch {
                digest: digest.clone(),
                declared: *size,
                stored: found,
            });
        }
    }
    Ok(mismatches)
}

/// Converts a count or size for storage; SQL integers are signed.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64, MetaError> {
    i64::try_from(value).map_err(|_| MetaError::Database(format!("{what} {value} is too large")))
}

/// Converts a page limit; anything beyond `i64::MAX` means "no limit".
pub(crate) fn limit_to_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(crate) fn parse_digest(text: &str) -> Result<Digest, MetaError> {
    Digest::parse(text).map_err(|error| MetaError::Corrupt(format!("digest {text:?}: {error}")))
}

pub(crate) fn parse_repository(text: &str) -> Result<RepoName, MetaError> {
    RepoName::parse(text)
        .map_err(|error| MetaError::Corrupt(format!("repository name {text:?}: {error}")))
}

pub(crate) fn parse_tag(text: &str) -> Result<Tag, MetaError> {
    Tag::parse(text).map_err(|error| MetaError::Corrupt(format!("tag {text:?}: {error}")))
}

pub(crate) fn parse_size(size: i64) -> Result<u64, MetaError> {
    u64::try_from(size).map_err(|_| MetaError::Corrupt(format!("negative size {size}")))
}

/// Embedded migrations, (version, description, SQL) in order, as a source
/// sqlx's migrator understands.
///
/// They are embedded with `include_str!` rather than `sqlx::migrate!` because
/// that macro needs sqlx's `macros` feature (a proc-macro crate that compiles
/// its own copy of SQLite), which nothing else in the workspace needs. The
/// layout (`NNNN_name.sql`) and the `_sqlx_migrations` bookkeeping table are
/// the same, so switching to the macro later changes nothing on disk.
///
/// An applied migration's text must never change: the migrator stores its
/// checksum and refuses to start on a database whose history differs.
#[derive(Debug)]
pub(crate) struct EmbeddedMigrations(pub(crate) &'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}
