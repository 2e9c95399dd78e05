//! The trash: images deleted by any path (the OCI API, this API, the CLI)
//! wait there, restorable, for `trash_retention`. Listing shows the
//! entries of the namespaces the caller may see; restoring needs `delete`
//! on the repository, the right that put the image there.

use axum::response::Response;
use berth_oci::{Digest, Reference, RepoName};
use berth_registry::{RestoredImage, TrashCursor, TrashEntry};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::error::{ErrorBody, ManagementError};
use super::types::{Name, ReferenceParam, RepositoryParam};
use super::{ok, Context};

/// Entries listed per page unless the caller asks for fewer or more.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most entries one page lists.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The query of a trash listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrashQuery {
    /// Only the entries of this namespace.
    #[param(value_type = Option<Name>)]
    pub namespace: Option<Name>,
    /// At most this many entries (1 to 1000; 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Where to continue: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated trash listing request.
#[derive(Debug)]
pub struct TrashListing {
    pub namespace: Option<Name>,
    pub limit: usize,
    pub after: Option<TrashCursor>,
}

/// What an opaque cursor holds: the last entry of the previous page.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorBody {
    t: i64,
    r: String,
    d: String,
}

fn encode_cursor(entry: &TrashEntry) -> String {
    let body = CursorBody {
        t: entry.trashed_at,
        r: entry.repository.as_str().to_string(),
        d: entry.digest.to_string(),
    };
    super::cursor::encode(&body)
}

fn decode_cursor(cursor: &str) -> Result<TrashCursor, ManagementError> {
    let refuse = super::cursor::refused;
    let body: CursorBody = super::cursor::decode(cursor)?;
    Ok(TrashCursor {
        trashed_at: body.t,
        repository: RepoName::parse(&body.r).map_err(|_| refuse())?,
        digest: Digest::parse(&body.d).map_err(|_| refuse())?,
    })
}

impl TrashListing {
    pub fn parse(query: Option<&str>) -> Result<TrashListing, ManagementError> {
        let query: TrashQuery = super::parse_query(query)?;
        let limit = super::page_limit(query.limit, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
        Ok(TrashListing {
            namespace: query.namespace,
            limit,
            after,
        })
    }
}

/// The digest a restore names: a tag names nothing in the trash.
pub fn restore_digest(reference: &ReferenceParam) -> Result<Digest, ManagementError> {
    match &reference.0 {
        Reference::Digest(digest) => Ok(digest.clone()),
        Reference::Tag(_) => Err(ManagementError::invalid_request(
            "path parameter digest: a trashed image is named by its digest \
             (`berth trash list` shows it)",
        )),
    }
}

fn time_of(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A deleted image waiting in the trash.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrashEntryView {
    pub repository: String,
    pub digest: String,
    /// The tags it had (with its referrers'), given back on restore where free.
    pub tags: Vec<String>,
    /// Referrers (signatures, SBOMs) deleted with it.
    pub referrers: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub deleted_at: OffsetDateTime,
    /// Who deleted it.
    pub deleted_by: String,
    /// When the trash deletes it for good (at the first expiry pass after).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrashList {
    /// Oldest deletion first.
    pub entries: Vec<TrashEntryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A tag a restore did not give back.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagConflictView {
    pub tag: String,
    /// The image the tag names now; absent when the image it named is not
    /// restored with this entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
}

/// What a restore brought back.
#[derive(Debug, Serialize, ToSchema)]
pub struct RestoredImageView {
    pub repository: String,
    pub digest: String,
    /// Referrers restored with it.
    pub referrers: Vec<String>,
    /// Children of a restored index that were deleted after it, restored
    /// with it.
    pub children: Vec<String>,
    /// Tags given back.
    pub tags: Vec<String>,
    /// Tags not given back, because another image has the name now.
    pub conflicts: Vec<TagConflictView>,
}

/// The API's view of a trash entry (the console shows the same).
pub fn entry_view(registry: &berth_registry::Registry, entry: TrashEntry) -> TrashEntryView {
    TrashEntryView {
        repository: entry.repository.as_str().to_string(),
        digest: entry.digest.to_string(),
        tags: entry.tags.iter().map(ToString::to_string).collect(),
        referrers: entry.referrers.iter().map(ToString::to_string).collect(),
        deleted_at: time_of(entry.trashed_at),
        deleted_by: entry.trashed_by,
        expires_at: time_of(registry.trash_expires_at(entry.trashed_at)),
    }
}

/// List the trash.
///
/// Deleted images waiting to expire, oldest deletion first, a page at a
/// time: of one namespace (which the caller must see), or of every
/// namespace the caller may see.
#[utoipa::path(
    get,
    path = "/api/v1/trash",
    tag = "lifecycle",
    operation_id = "list_trash",
    params(TrashQuery),
    responses(
        (status = 200, description = "A page of the trash", body = TrashList),
        (status = 400, description = "A malformed query: an unknown parameter, a limit out of range, a cursor of another listing", body = ErrorBody),
    )
)]
pub async fn list(ctx: &Context<'_>, listing: TrashListing) -> Result<Response, ManagementError> {
    let namespace = listing.namespace.as_ref().map(|n| n.as_str());
    let (page, next_cursor) = read_page(ctx.registry, namespace, &listing).await?;
    let mut entries = Vec::with_capacity(page.len());
    let mut seen: Vec<(String, bool)> = Vec::new();
    for entry in page {
        // A restricted listing was authorized for its namespace; otherwise
        // each namespace on the page is checked once.
        let visible = if namespace.is_some() {
            true
        } else {
            let name = entry.repository.namespace().to_string();
            match seen.iter().find(|(n, _)| *n == name) {
                Some((_, visible)) => *visible,
                None => {
                    let facts = ctx
                        .auth
                        .store
                        .namespace_facts(&name, ctx.caller.user_name())
                        .await?;
                    let visible = ctx.caller.may_see_namespace(facts, &name);
                    seen.push((name, visible));
                    visible
                }
            }
        };
        if visible {
            entries.push(entry_view(ctx.registry, entry));
        }
    }
    Ok(ok(TrashList {
        entries,
        next_cursor,
    }))
}

/// A page of the trash of `namespace` (or of every namespace), unfiltered,
/// with the cursor of the next page: the caller decides who sees what.
pub async fn read_page(
    registry: &berth_registry::Registry,
    namespace: Option<&str>,
    listing: &TrashListing,
) -> Result<(Vec<TrashEntry>, Option<String>), ManagementError> {
    let page = registry
        .trash(namespace, listing.after.as_ref(), listing.limit)
        .await?;
    let next_cursor = (page.len() == listing.limit)
        .then(|| page.last().map(encode_cursor))
        .flatten();
    Ok((page, next_cursor))
}

/// Restore a deleted image.
///
/// Brings the image back from the trash with the referrers deleted with
/// it, and gives back each tag it had whose name is still free; the others
/// are listed as conflicts. Needs `delete` on the repository.
#[utoipa::path(
    post,
    path = "/api/v1/repositories/{repository}/images/{digest}/restore",
    tag = "lifecycle",
    operation_id = "restore_image",
    params(
        ("repository" = RepositoryParam, Path, description = "The repository, its slashes percent-encoded"),
        ("digest" = ReferenceParam, Path, description = "The digest of the deleted image"),
    ),
    responses(
        (status = 200, description = "The image is back", body = RestoredImageView),
        (status = 404, description = "The image is not in the trash", body = ErrorBody),
    )
)]
pub async fn restore(
    ctx: &Context<'_>,
    repository: &RepoName,
    digest: &Digest,
) -> Result<Response, ManagementError> {
    Ok(ok(restore_image(
        ctx.registry,
        &ctx.actor,
        repository,
        digest,
    )
    .await?))
}

/// Restores an image from the trash as `actor` (the API's handler and the
/// web console's button both come here).
pub async fn restore_image(
    registry: &berth_registry::Registry,
    actor: &berth_auth::Actor,
    repository: &RepoName,
    digest: &Digest,
) -> Result<RestoredImageView, ManagementError> {
    let RestoredImage {
        manifests,
        children,
        tags,
        conflicts,
    } = registry.restore_image(actor, repository, digest).await?;
    Ok(RestoredImageView {
        repository: repository.as_str().to_string(),
        digest: digest.to_string(),
        referrers: manifests.iter().skip(1).map(ToString::to_string).collect(),
        children: children.iter().map(ToString::to_string).collect(),
        tags: tags.iter().map(ToString::to_string).collect(),
        conflicts: conflicts
            .into_iter()
            .map(|conflict| TagConflictView {
                tag: conflict.tag.to_string(),
                current: conflict.current.map(|d| d.to_string()),
            })
            .collect(),
    })
}
