//! `/repositories/{repository}/images` and `/repositories/{repository}/tags`:
//! the images (manifests) of a repository, listed, inspected, tagged into
//! another repository, untagged and deleted, through the registry domain.
//!
//! Rights are those of `/v2/` on the repository: listing and inspecting
//! need `pull`, tagging `pull` on the source and `push` on the target,
//! untagging and deleting `delete`. The repository is one path segment, its
//! slashes percent-encoded (`team-a%2Fapi`).

use std::collections::BTreeMap;

use axum::response::Response;
use berth_oci::{Digest, ParsedManifest, Reference, RepoName};
use berth_registry::{Image, ImageCursor, TagCursor, TagQuery, TagSort, TaggedFilter};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::cursor;
use super::error::{ErrorBody, ManagementError};
use super::types::{ReferenceParam, RepositoryParam, TagParam};
use super::{no_content, ok, Context};

/// Images listed per page unless the caller asks for fewer or more.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most images one page lists.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Which images to list, by whether a tag points at them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tagged {
    /// Only images a tag points at.
    #[default]
    True,
    /// Only images no tag points at (an index's children, superseded pushes).
    False,
    /// Every image.
    Any,
}

/// The query of an image listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImageListQuery {
    /// Which images: tagged ones (the default), untagged ones, or any.
    #[param(value_type = Option<Tagged>)]
    pub tagged: Option<Tagged>,
    /// At most this many images (1 to 1000; 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Where to continue: the `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated image listing request.
#[derive(Debug)]
pub struct ImageListing {
    pub filter: TaggedFilter,
    pub limit: usize,
    pub after: Option<ImageCursor>,
}

/// What an opaque cursor holds: the repository it pages, and the last
/// image of the previous page.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorBody {
    r: String,
    t: i64,
    d: String,
}

fn encode_cursor(repository: &RepoName, image: &Image) -> String {
    let body = CursorBody {
        r: repository.as_str().to_string(),
        t: image.summary.pushed_at,
        d: image.summary.digest.to_string(),
    };
    cursor::encode(&body)
}

fn decode_cursor(repository: &RepoName, text: &str) -> Result<ImageCursor, ManagementError> {
    let body: CursorBody = cursor::decode(text)?;
    if body.r != repository.as_str() {
        return Err(cursor::refused());
    }
    Ok(ImageCursor {
        pushed_at: body.t,
        digest: Digest::parse(&body.d).map_err(|_| cursor::refused())?,
    })
}

impl ImageListing {
    /// Validates the query of a listing of `repository`.
    pub fn parse(
        repository: &RepoName,
        query: Option<&str>,
    ) -> Result<ImageListing, ManagementError> {
        let query: ImageListQuery = super::parse_query(query)?;
        let limit = super::page_limit(query.limit, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let filter = match query.tagged.unwrap_or_default() {
            Tagged::True => TaggedFilter::Tagged,
            Tagged::False => TaggedFilter::Untagged,
            Tagged::Any => TaggedFilter::Any,
        };
        let after = query
            .cursor
            .as_deref()
            .map(|cursor| decode_cursor(repository, cursor))
            .transpose()?;
        Ok(ImageListing {
            filter,
            limit,
            after,
        })
    }
}

/// A platform: of an image (from its configuration) or of an index's child.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformView {
    pub os: String,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The child manifest of an index for this platform.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// An image in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageSummaryView {
    pub repository: String,
    pub digest: String,
    /// The tags pointing at it, in byte order.
    pub tags: Vec<String>,
    pub media_type: String,
    /// The artifact type of an artifact (a signature, an SBOM), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifest this one refers to, for a referrer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Its platform (an image), or its children's (an index).
    pub platforms: Vec<PlatformView>,
    /// When the image was built, as its configuration says (absent for an
    /// index and for artifacts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was first pushed to this repository.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub pushed_at: OffsetDateTime,
    /// Bytes of its config and distinct layers (an index: of all its
    /// children's, each blob once).
    pub size: u64,
    /// Bytes of the manifest itself.
    pub manifest_size: u64,
    /// How often it was pulled (fetched by GET) from this repository. Nodes
    /// add their counts every few seconds, so a pull shows up after that.
    pub pull_count: u64,
    /// When it was last pulled; absent when never.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_pulled: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImageList {
    /// Newest push first.
    pub images: Vec<ImageSummaryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A blob an image references.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlobView {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
}

/// A manifest an index lists.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChildView {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformView>,
}

/// A manifest whose subject is the image.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReferrerView {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub annotations: Option<serde_json::Value>,
}

/// How a container of the image runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunConfigView {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// A step of the image's build.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub empty_layer: bool,
}

/// Everything about one image.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageDetailsView {
    #[serde(flatten)]
    pub summary: ImageSummaryView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The image's run configuration (absent for an index and artifacts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfigView>,
    pub history: Vec<HistoryView>,
    /// The config blob (absent for an index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_blob: Option<BlobView>,
    /// The layers, in order.
    pub layers: Vec<BlobView>,
    /// The manifests of an index, in its order.
    pub children: Vec<ChildView>,
    /// Manifests referring to this one, by artifact type (signatures,
    /// SBOMs, attestations; `""` for those without one).
    pub referrers: BTreeMap<String, Vec<ReferrerView>>,
    /// The manifest as pushed.
    #[schema(value_type = Object)]
    pub manifest: serde_json::Value,
}

/// Where to tag an image from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// The repository holding the image.
    #[schema(value_type = RepositoryParam)]
    pub source_repository: RepositoryParam,
    /// Its tag or digest there.
    #[schema(value_type = ReferenceParam)]
    pub source_reference: ReferenceParam,
}

/// A tag, pointed.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagResult {
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

/// An image, deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedImage {
    pub repository: String,
    pub digest: String,
}

fn pushed_at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn summary_view(repository: &RepoName, image: &Image) -> ImageSummaryView {
    let facts = &image.facts;
    let platforms = if facts.platforms.is_empty() {
        match (&facts.os, &facts.architecture) {
            (Some(os), Some(architecture)) => vec![PlatformView {
                os: os.clone(),
                architecture: architecture.clone(),
                variant: facts.variant.clone(),
                digest: None,
            }],
            _ => Vec::new(),
        }
    } else {
        facts
            .platforms
            .iter()
            .map(|p| PlatformView {
                os: p.os.clone(),
                architecture: p.architecture.clone(),
                variant: p.variant.clone(),
                digest: Some(p.digest.clone()),
            })
            .collect()
    };
    let summary = &image.summary;
    ImageSummaryView {
        repository: repository.as_str().to_string(),
        digest: summary.digest.to_string(),
        tags: summary
            .tags
            .iter()
            .map(|t| t.as_str().to_string())
            .collect(),
        media_type: summary.media_type.clone(),
        // The referrers API defaults an artifact type to the config's media
        // type; an ordinary image's is not an artifact type worth showing.
        artifact_type: summary
            .artifact_type
            .clone()
            .filter(|t| !berth_registry::images::is_image_config_type(t)),
        subject: summary.subject.as_ref().map(Digest::to_string),
        platforms,
        created: facts.created.clone(),
        pushed_at: pushed_at(summary.pushed_at),
        size: summary.size,
        manifest_size: summary.manifest_size,
        pull_count: summary.pulls,
        last_pulled: summary.last_pulled_at.map(pushed_at),
    }
}

/// List a repository's images.
///
/// Newest push first, a page at a time. Needs `pull` on the repository.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{repository}/images",
    tag = "images",
    operation_id = "list_images",
    params(
        ("repository" = RepositoryParam, Path, description = "The repository, its slashes percent-encoded"),
        ImageListQuery,
    ),
    responses((status = 200, description = "A page of images", body = ImageList))
)]
pub async fn list(
    ctx: &Context<'_>,
    repository: &RepoName,
    listing: ImageListing,
) -> Result<Response, ManagementError> {
    Ok(ok(page(ctx.registry, repository, listing).await?))
}

/// The page of `repository`'s images `listing` asks for (the web console
/// shows the same page).
pub async fn page(
    registry: &berth_registry::Registry,
    repository: &RepoName,
    listing: ImageListing,
) -> Result<ImageList, ManagementError> {
    let images = registry
        .list_images(
            repository,
            listing.filter,
            listing.after.as_ref(),
            listing.limit,
        )
        .await?;
    let next_cursor = (images.len() == listing.limit)
        .then(|| images.last().map(|last| encode_cursor(repository, last)))
        .flatten();
    Ok(ImageList {
        images: images.iter().map(|i| summary_view(repository, i)).collect(),
        next_cursor,
    })
}

/// How a tag listing is sorted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TagSortParam {
    /// By name, ascending (byte order).
    #[default]
    Name,
    /// The tag pushed or moved most recently first.
    Newest,
    /// The tag pushed or moved longest ago first.
    Oldest,
    /// The largest image first.
    Size,
}

impl TagSortParam {
    fn domain(self) -> TagSort {
        match self {
            TagSortParam::Name => TagSort::Name,
            TagSortParam::Newest => TagSort::Newest,
            TagSortParam::Oldest => TagSort::Oldest,
            TagSortParam::Size => TagSort::Size,
        }
    }
}

/// The query of a tag listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TagListQuery {
    /// Only tags whose name contains this text (at most 128 bytes).
    #[param(max_length = 128)]
    pub q: Option<String>,
    /// The order: `name` (the default), `newest`, `oldest` or `size`.
    #[param(value_type = Option<TagSortParam>)]
    pub sort: Option<TagSortParam>,
    /// At most this many tags (1 to 1000; 100 by default).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// Where to continue: the `next_cursor` of the previous page (of the
    /// same sort).
    pub cursor: Option<String>,
}

/// The longest search text: a tag's longest name.
pub const MAX_TAG_SEARCH: usize = 128;

/// A validated tag listing request.
#[derive(Debug)]
pub struct TagListing {
    pub sort: TagSortParam,
    pub query: TagQuery,
}

/// What a tag listing's opaque cursor holds: the repository and sort it
/// pages, and the last tag of the previous page.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagCursorBody {
    r: String,
    s: TagSortParam,
    k: i64,
    d: String,
    n: String,
}

impl TagListing {
    /// Validates the query of a tag listing of `repository`.
    pub fn parse(
        repository: &RepoName,
        query: Option<&str>,
    ) -> Result<TagListing, ManagementError> {
        let query: TagListQuery = super::parse_query(query)?;
        let limit = super::page_limit(query.limit, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let contains = query
            .q
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty());
        if contains.as_ref().is_some_and(|q| q.len() > MAX_TAG_SEARCH) {
            return Err(ManagementError::invalid_request(format!(
                "query parameter q: at most {MAX_TAG_SEARCH} bytes, a tag's longest name"
            )));
        }
        let sort = query.sort.unwrap_or_default();
        let after = match query.cursor.as_deref() {
            None => None,
            Some(text) => {
                let body: TagCursorBody = cursor::decode(text)?;
                if body.r != repository.as_str() || body.s != sort {
                    return Err(cursor::refused());
                }
                Some(TagCursor {
                    key: body.k,
                    digest: Digest::parse(&body.d).map_err(|_| cursor::refused())?,
                    name: berth_oci::Tag::parse(&body.n).map_err(|_| cursor::refused())?,
                })
            }
        };
        Ok(TagListing {
            sort,
            query: TagQuery {
                contains,
                sort: sort.domain(),
                after,
                limit,
            },
        })
    }
}

/// A tag and the image it names.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagRowView {
    pub tag: String,
    /// When the tag was pushed or last moved.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub tag_pushed_at: OffsetDateTime,
    /// The image (its `tags` are empty: this listing is of tags).
    pub image: ImageSummaryView,
}

/// A page of tags.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagList {
    pub tags: Vec<TagRowView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// List a repository's tags.
///
/// With the images they name, searched by part of a name and sorted by
/// name, newest or oldest push of the tag, or image size, a page at a time
/// by keyset (a page costs the same however many tags there are). Needs
/// `pull` on the repository.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{repository}/tags",
    tag = "images",
    operation_id = "list_tags",
    params(
        ("repository" = RepositoryParam, Path, description = "The repository, its slashes percent-encoded"),
        TagListQuery,
    ),
    responses((status = 200, description = "A page of tags", body = TagList))
)]
pub async fn list_tags(
    ctx: &Context<'_>,
    repository: &RepoName,
    listing: TagListing,
) -> Result<Response, ManagementError> {
    Ok(ok(tag_page(ctx.registry, repository, listing).await?))
}

/// A page of the tags of `repository`, searched and sorted as `listing`
/// says (the web console's repository page lists tags with it).
pub async fn tag_page(
    registry: &berth_registry::Registry,
    repository: &RepoName,
    listing: TagListing,
) -> Result<TagList, ManagementError> {
    let rows = registry
        .list_tagged_images(repository, &listing.query)
        .await?;
    let next_cursor = (rows.len() == listing.query.limit)
        .then(|| rows.last())
        .flatten()
        .map(|(tag, updated_at, image)| {
            let cursor = berth_meta_cursor(tag, *updated_at, image, listing.query.sort);
            let body = TagCursorBody {
                r: repository.as_str().to_string(),
                s: listing.sort,
                k: cursor.key,
                d: cursor.digest.to_string(),
                n: cursor.name.as_str().to_string(),
            };
            super::cursor::encode(&body)
        });
    Ok(TagList {
        tags: rows
            .iter()
            .map(|(tag, updated_at, image)| TagRowView {
                tag: tag.as_str().to_string(),
                tag_pushed_at: pushed_at(*updated_at),
                image: summary_view(repository, image),
            })
            .collect(),
        next_cursor,
    })
}

/// The cursor after a row, as the metadata store defines it.
fn berth_meta_cursor(
    tag: &berth_oci::Tag,
    updated_at: i64,
    image: &Image,
    sort: TagSort,
) -> TagCursor {
    berth_registry::TaggedImage {
        tag: tag.clone(),
        updated_at,
        image: image.summary.clone(),
    }
    .cursor(sort)
}

/// Inspect an image.
///
/// By tag or digest: its configuration, history, layers, an index's
/// children, its referrers by artifact type, and the manifest itself.
/// Needs `pull` on the repository.
#[utoipa::path(
    get,
    path = "/api/v1/repositories/{repository}/images/{reference}",
    tag = "images",
    operation_id = "get_image",
    params(
        ("repository" = RepositoryParam, Path, description = "The repository, its slashes percent-encoded"),
        ("reference" = ReferenceParam, Path, description = "A tag or a digest"),
    ),
    responses((status = 200, description = "The image", body = ImageDetailsView))
)]
pub async fn get(
    ctx: &Context<'_>,
    repository: &RepoName,
    reference: &Reference,
) -> Result<Response, ManagementError> {
    Ok(ok(details(ctx.registry, repository, reference).await?))
}

/// Everything about one image, as the API and the web console show it.
pub async fn details(
    registry: &berth_registry::Registry,
    repository: &RepoName,
    reference: &Reference,
) -> Result<ImageDetailsView, ManagementError> {
    let details = registry.inspect_image(repository, reference).await?;
    let record = &details.record;
    let parsed = ParsedManifest::parse(&record.payload, Some(&record.media_type))
        .map_err(|e| ManagementError::internal(&format!("stored manifest does not parse: {e}")))?;
    let manifest: serde_json::Value = serde_json::from_slice(&record.payload)
        .map_err(|e| ManagementError::internal(&format!("stored manifest is not JSON: {e}")))?;
    let blob = |d: &berth_oci::manifest::Descriptor| BlobView {
        digest: d.digest.to_string(),
        media_type: d.media_type.clone(),
        size: d.size,
    };
    let children = parsed
        .manifests
        .iter()
        .map(|child| {
            let platform = child.platform.as_ref().map(|p| {
                let text = |key: &str| p.get(key).and_then(|v| v.as_str()).map(str::to_string);
                PlatformView {
                    os: text("os").unwrap_or_default(),
                    architecture: text("architecture").unwrap_or_default(),
                    variant: text("variant"),
                    digest: None,
                }
            });
            ChildView {
                digest: child.digest.to_string(),
                media_type: child.media_type.clone(),
                size: child.size,
                platform,
            }
        })
        .collect();
    let mut referrers: BTreeMap<String, Vec<ReferrerView>> = BTreeMap::new();
    for referrer in &details.referrers {
        referrers
            .entry(referrer.artifact_type.clone().unwrap_or_default())
            .or_default()
            .push(ReferrerView {
                digest: referrer.digest.to_string(),
                media_type: referrer.media_type.clone(),
                size: referrer.size,
                annotations: referrer
                    .annotations
                    .as_deref()
                    .and_then(|text| serde_json::from_str(text).ok()),
            });
    }
    let facts = &details.image.facts;
    Ok(ImageDetailsView {
        summary: summary_view(repository, &details.image),
        os: facts.os.clone(),
        architecture: facts.architecture.clone(),
        variant: facts.variant.clone(),
        config: facts.config.as_ref().map(|c| RunConfigView {
            env: c.env.clone(),
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            working_dir: c.working_dir.clone(),
            user: c.user.clone(),
            exposed_ports: c.exposed_ports.clone(),
            volumes: c.volumes.clone(),
            labels: c.labels.clone(),
        }),
        history: facts
            .history
            .iter()
            .map(|h| HistoryView {
                created: h.created.clone(),
                created_by: h.created_by.clone(),
                comment: h.comment.clone(),
                empty_layer: h.empty_layer,
            })
            .collect(),
        config_blob: parsed.config.as_ref().map(blob),
        layers: parsed.layers.iter().map(blob).collect(),
        children,
        referrers,
        manifest,
    })
}

/// Delete an image.
///
/// By digest, or by a tag naming it: the image and every tag pointing at
/// it, as the OCI API's delete by digest. Needs `delete` on the repository.
#[utoipa::path(
    delete,
    path = "/api/v1/repositories/{repository}/images/{reference}",
    tag = "images",
    operation_id = "delete_image",
    params(
        ("repository" = RepositoryParam, Path, description = "The repository, its slashes percent-encoded"),
        ("reference" = ReferenceParam, Path, description = "A digest, or a tag naming the image"),
    ),
    responses(
        (status = 200, description = "The image was deleted", body = DeletedImage),
        (status = 409, description = "An index of the repository lists the image", body = ErrorBody),
    )
)]
pub async fn delete(
    ctx: &Context<'_>,
    repository: &RepoName,
    reference: &Reference,
) -> Result<Response, ManagementError> {
    let digest = ctx
        .registry
        .delete_image(&ctx.actor, repository, reference)
        .await?;
    Ok(ok(DeletedImage {
        repository: repository.as_str().to_string(),
        digest: digest.to_string(),
    }))
}

/// Tag an image.
///
/// Points the tag at an image of the same or another repository, in the
/// same or another namespace, server-side: its blobs are mounted and its
/// manifest (an index with its children) stored in this repository, no
/// bytes through the client. Needs `pull` on the source and `push` here.
#[utoipa::path(
    put,
    path = "/api/v1/repositories/{repository}/tags/{tag}",
    tag = "images",
    operation_id = "tag_image",
    params(
        ("repository" = RepositoryParam, Path, description = "The repository to tag in, its slashes percent-encoded"),
        ("tag" = TagParam, Path, description = "The tag"),
    ),
    request_body = TagRequest,
    responses((status = 200, description = "The tag points at the image", body = TagResult))
)]
pub async fn tag(
    ctx: &Context<'_>,
    repository: &RepoName,
    tag: &TagParam,
    request: TagRequest,
) -> Result<Response, ManagementError> {
    let digest = ctx
        .registry
        .tag_image(
            &ctx.actor,
            &request.source_repository.0,
            &request.source_reference.0,
            repository,
            &tag.0,
        )
        .await?;
    Ok(ok(TagResult {
        repository: repository.as_str().to_string(),
        tag: tag.0.as_str().to_string(),
        digest: digest.to_string(),
    }))
}

/// Remove a tag.
///
/// The image stays (under its digest and other tags). Needs `delete` on
/// the repository.
#[utoipa::path(
    delete,
    path = "/api/v1/repositories/{repository}/tags/{tag}",
    tag = "images",
    operation_id = "untag_image",
    params(
        ("repository" = RepositoryParam, Path, description = "The repository, its slashes percent-encoded"),
        ("tag" = TagParam, Path, description = "The tag"),
    ),
    responses((status = 204, description = "The tag was removed"))
)]
pub async fn untag(
    ctx: &Context<'_>,
    repository: &RepoName,
    tag: &TagParam,
) -> Result<Response, ManagementError> {
    ctx.registry
        .untag_image(&ctx.actor, repository, &tag.0)
        .await?;
    Ok(no_content())
}
