//! The audit trail: who (user, robot, anonymous, the registry itself, with
//! the client's address) did what, on which resource, when, with what
//! outcome. Administrators only: the trail spans every namespace and shows
//! addresses.

use axum::response::Response;
use berth_registry::{AuditQuery, AuditRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ErrorBody, ManagementError};
use super::types::Name;
use super::{ok, Context};

/// Records one page holds by default, and at most.
const DEFAULT_PAGE_SIZE: u64 = 100;
const MAX_PAGE_SIZE: u64 = 1000;

/// The query of the audit trail.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditListQuery {
    /// Only records at or after this time, in seconds since the epoch.
    #[param(minimum = 0)]
    pub since: Option<i64>,
    /// Only those of the user, robot or job of this name.
    #[param(max_length = 255)]
    pub actor: Option<String>,
    /// Only those in this namespace.
    #[param(value_type = Option<Name>)]
    pub namespace: Option<Name>,
    /// Only this action (an event kind: `tag.deleted`).
    #[param(max_length = 64)]
    pub action: Option<String>,
    /// At most this many records (1 to 1000; 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Only records older than the record of this id: the `next_before`
    /// of the previous page.
    #[param(minimum = 1)]
    pub before: Option<i64>,
}

/// A validated audit query.
#[derive(Debug)]
pub struct AuditListing(pub AuditQuery);

impl AuditListing {
    pub fn parse(query: Option<&str>) -> Result<AuditListing, ManagementError> {
        let query: AuditListQuery = super::parse_query(query)?;
        let limit = query.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(ManagementError::invalid_request(format!(
                "query parameter limit: {limit} is not between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        for (name, value, max) in [("actor", &query.actor, 255), ("action", &query.action, 64)] {
            if value.as_ref().is_some_and(|v| v.len() > max) {
                return Err(ManagementError::invalid_request(format!(
                    "query parameter {name}: longer than {max} bytes"
                )));
            }
        }
        if query.since.is_some_and(|since| since < 0) || query.before.is_some_and(|b| b < 1) {
            return Err(ManagementError::invalid_request(
                "query parameters since and before: not negative",
            ));
        }
        Ok(AuditListing(AuditQuery {
            since: query.since,
            actor: query.actor.filter(|a| !a.is_empty()),
            namespace: query.namespace.map(|n| n.to_string()),
            action: query.action.filter(|a| !a.is_empty()),
            before_id: query.before,
            limit: limit as usize,
        }))
    }
}

/// Who did it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActor {
    /// `user`, `robot`, `anonymous` or `system`.
    pub kind: String,
    pub name: Option<String>,
    /// The client's address, when the change came over the network.
    pub address: Option<String>,
}

/// One record of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecordView {
    pub id: i64,
    /// Seconds since the epoch.
    pub at: i64,
    pub actor: AuditActor,
    /// What was done: an event kind (`tag.deleted`, `member.set`).
    pub action: String,
    pub namespace: Option<String>,
    /// `REPO:TAG`, `REPO@DIGEST`, a repository, a user, a token, a namespace.
    pub resource: Option<String>,
    /// `ok`: the change committed.
    pub outcome: String,
    /// Small facts about the change (previous values, sizes).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// The event's position in the stream.
    pub event: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    pub records: Vec<AuditRecordView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

fn view(record: AuditRecord) -> AuditRecordView {
    let r = record.record;
    AuditRecordView {
        id: record.id,
        at: r.at,
        actor: AuditActor {
            kind: r.actor_kind,
            name: r.actor_name,
            address: r.actor_address,
        },
        action: r.action,
        namespace: r.namespace,
        resource: r.resource,
        outcome: r.outcome,
        detail: r.detail,
        event: r.event_position,
    }
}

/// Read the audit trail.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    operation_id = "list_audit",
    params(AuditListQuery),
    responses(
        (status = 200, description = "A page of records, newest first", body = AuditList),
        (status = 400, description = "A malformed query", body = ErrorBody),
    )
)]
pub async fn list(ctx: &Context<'_>, listing: AuditListing) -> Result<Response, ManagementError> {
    let records = ctx.registry.audit(&listing.0).await?;
    let next_before = (records.len() == listing.0.limit)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    Ok(ok(AuditList {
        records: records.into_iter().map(view).collect(),
        next_before,
    }))
}
