//! `/repositories`: the repositories the caller may pull from, in one
//! namespace or across all they may see, with their tag and image counts,
//! size, last push and pulls; searched by substring, sorted, paged.

use std::collections::HashMap;

use axum::response::Response;
use berth_auth::NamespaceFacts;
use berth_oci::RepoName;
use berth_registry::{RepositoryCursor, RepositoryQuery, RepositorySort, RepositorySummary};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::error::{ErrorBody, ManagementError};
use super::types::Name;
use super::{ok, Context};

/// Repositories listed per page unless the caller asks otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most repositories one page lists.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The longest search text.
pub const MAX_SEARCH_LEN: usize = 255;

/// How to order a repository listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// By name (the default).
    #[default]
    Name,
    /// Most recently pushed first.
    LastPush,
    /// Largest first.
    Size,
    /// Most pulled first.
    Pulls,
}

impl Sort {
    fn domain(self) -> RepositorySort {
        match self {
            Sort::Name => RepositorySort::Name,
            Sort::LastPush => RepositorySort::LastPush,
            Sort::Size => RepositorySort::Size,
            Sort::Pulls => RepositorySort::Pulls,
        }
    }
}

/// The query of a repository listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RepositoryListQuery {
    /// Only this namespace's repositories.
    #[param(value_type = Option<Name>)]
    pub namespace: Option<Name>,
    /// Only names containing this text.
    #[param(max_length = 255)]
    pub q: Option<String>,
    /// The order: `name` (the default), `last_push`, `size` or `pulls`.
    #[param(value_type = Option<Sort>)]
    pub sort: Option<Sort>,
    /// At most this many repositories (1 to 1000; 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Where to continue: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated repository listing request.
#[derive(Debug)]
pub struct RepositoryListing {
    pub namespace: Option<Name>,
    pub contains: Option<String>,
    pub sort: Sort,
    pub limit: usize,
    pub after: Option<RepositoryCursor>,
}

/// What an opaque cursor holds: the listing it pages (so that a cursor
/// from another listing is refused) and its last repository.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorBody {
    ns: Option<String>,
    q: Option<String>,
    s: Sort,
    k: i64,
    n: String,
}

impl RepositoryListing {
    /// Validates the query string of a listing.
    pub fn parse(query: Option<&str>) -> Result<RepositoryListing, ManagementError> {
        let query: RepositoryListQuery = super::parse_query(query)?;
        let limit = super::page_limit(query.limit, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        if query.q.as_ref().is_some_and(|q| q.len() > MAX_SEARCH_LEN) {
            return Err(ManagementError::invalid_request(format!(
                "query parameter q: longer than {MAX_SEARCH_LEN} bytes"
            )));
        }
        let sort = query.sort.unwrap_or_default();
        let contains = query.q.filter(|q| !q.is_empty());
        let after = match &query.cursor {
            None => None,
            Some(cursor) => {
                let refuse = super::cursor::refused;
                let body: CursorBody = super::cursor::decode(cursor)?;
                let same = body.ns.as_deref() == query.namespace.as_ref().map(Name::as_str)
                    && body.q == contains
                    && body.s == sort;
                if !same {
                    return Err(refuse());
                }
                Some(RepositoryCursor {
                    key: body.k,
                    name: RepoName::parse(&body.n).map_err(|_| refuse())?,
                })
            }
        };
        Ok(RepositoryListing {
            namespace: query.namespace,
            contains,
            sort,
            limit,
            after,
        })
    }
}

/// A repository in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryView {
    pub name: String,
    pub namespace: String,
    pub tags: u64,
    /// Manifests stored: images, indexes and their children, artifacts.
    pub images: u64,
    /// Bytes of the blobs it holds, each once.
    pub size: u64,
    /// When a manifest was last pushed or a tag moved; absent when never.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_push: Option<OffsetDateTime>,
    /// How often its images were pulled (counted every few seconds).
    pub pull_count: u64,
    /// When one of its images was last pulled; absent when never.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_pull: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RepositoryList {
    pub repositories: Vec<RepositoryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// List repositories.
///
/// Those the caller may pull from: in `namespace`, or across every
/// namespace they may see. A registry token shows what its claim reaches
/// (`registry:catalog:*` reaches everything the policy shows).
#[utoipa::path(
    get,
    path = "/api/v1/repositories",
    tag = "repositories",
    operation_id = "list_repositories",
    params(RepositoryListQuery),
    responses(
        (status = 200, description = "A page of repositories", body = RepositoryList),
        (status = 400, description = "A malformed query: an unknown parameter, a limit out of range, a cursor of another listing", body = ErrorBody),
    )
)]
pub async fn list(
    ctx: &Context<'_>,
    listing: RepositoryListing,
) -> Result<Response, ManagementError> {
    Ok(ok(page(ctx, listing).await?))
}

/// The page of repositories `listing` asks for, of those the caller may
/// pull from (the web console shows the same page).
pub async fn page(
    ctx: &Context<'_>,
    listing: RepositoryListing,
) -> Result<RepositoryList, ManagementError> {
    if ctx.caller.sees_every_repository() {
        // Every row is the caller's (a repository's namespace exists while
        // it does), so the page is the rows alone: one statement.
        let namespaces = listing
            .namespace
            .as_ref()
            .map(|namespace| vec![namespace.as_str().to_string()]);
        let (rows, next_cursor) = summaries(ctx.registry, &listing, namespaces).await?;
        return Ok(RepositoryList {
            repositories: rows.into_iter().map(view).collect(),
            next_cursor,
        });
    }
    // The policy's facts of the namespaces the listing may show, read once
    // (a fixed number of reads however many namespaces there are).
    let mut facts_of: HashMap<String, NamespaceFacts> = HashMap::new();
    let namespaces = match &listing.namespace {
        // The authorization step checked the caller may see it.
        Some(namespace) => {
            facts_of.insert(
                namespace.as_str().to_string(),
                facts(ctx, namespace.as_str()).await?,
            );
            Some(vec![namespace.as_str().to_string()])
        }
        None => {
            let all = ctx
                .auth
                .store
                .namespaces_with_facts(ctx.caller.user_name())
                .await?;
            let count = all.len();
            let mut visible = Vec::new();
            for (record, facts) in all {
                if ctx.caller.may_see_namespace(facts, &record.name) {
                    visible.push(record.name.clone());
                }
                facts_of.insert(record.name, facts);
            }
            // When the caller sees every namespace, no filter: the page is
            // then one index range in the listing's order.
            (visible.len() < count).then_some(visible)
        }
    };
    let (rows, next_cursor) = summaries(ctx.registry, &listing, namespaces).await?;
    let mut repositories = Vec::with_capacity(rows.len());
    for row in rows {
        let namespace = row.name.namespace().to_string();
        let facts = match facts_of.get(&namespace) {
            Some(facts) => *facts,
            // Created after the namespaces were read.
            None => facts(ctx, &namespace).await?,
        };
        if !ctx
            .caller
            .may_pull_repository(&ctx.auth.policy, facts, &row.name)
        {
            continue;
        }
        repositories.push(view(row));
    }
    Ok(RepositoryList {
        repositories,
        next_cursor,
    })
}

/// The rows of `namespaces` (`None`: every namespace) that `listing` asks
/// for, unfiltered, and the cursor of the next page. Callers keep the rows
/// the caller may see; with access control off, all of them.
pub async fn summaries(
    registry: &berth_registry::Registry,
    listing: &RepositoryListing,
    namespaces: Option<Vec<String>>,
) -> Result<(Vec<RepositorySummary>, Option<String>), ManagementError> {
    let query = RepositoryQuery {
        namespaces,
        contains: listing.contains.clone(),
        sort: listing.sort.domain(),
        after: listing.after.clone(),
        limit: listing.limit,
    };
    let rows = registry.repository_summaries(&query).await?;
    // The page is cut by what was read, so a page the filter thins still
    // continues where the database left off.
    let next_cursor = (rows.len() == listing.limit)
        .then(|| rows.last())
        .flatten()
        .map(|last| {
            let body = CursorBody {
                ns: listing.namespace.as_ref().map(|n| n.as_str().to_string()),
                q: listing.contains.clone(),
                s: listing.sort,
                k: last.sort_key(listing.sort.domain()),
                n: last.name.as_str().to_string(),
            };
            super::cursor::encode(&body)
        });
    Ok((rows, next_cursor))
}

/// A repository's row as the API and the console show it.
pub fn view(row: RepositorySummary) -> RepositoryView {
    RepositoryView {
        namespace: row.name.namespace().to_string(),
        name: row.name.as_str().to_string(),
        tags: row.tags,
        images: row.images,
        size: row.size,
        last_push: row
            .last_push
            .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok()),
        pull_count: row.pulls,
        last_pull: row
            .last_pull
            .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok()),
    }
}

async fn facts(ctx: &Context<'_>, namespace: &str) -> Result<NamespaceFacts, ManagementError> {
    Ok(ctx
        .auth
        .store
        .namespace_facts(namespace, ctx.caller.user_name())
        .await?)
}
