//! The distribution API under `/v2/`: one dispatcher that parses the path
//! into an [`Endpoint`] and calls the handler for its method.
//!
//! **Architecture Invariant:** handlers translate between HTTP and the
//! registry's domain types and nothing else: no storage, SQL or policy here.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use berth_oci::range::{parse_content_range, parse_range_header};
use berth_oci::{ByteRange, Digest, ErrorCode, RangeRequest, Reference, RepoName, Tag, UploadId};
use berth_registry::advisor::PullVerdict;
use berth_registry::{ByteStream, Freshness};
use futures::TryStreamExt;

use crate::access::{self, Caller, MountDenied};
use crate::endpoint::Endpoint;
use crate::error::{upload_range, ApiError};
use crate::AppState;

/// The label of the endpoint a response answered, read by the metrics layer.
#[derive(Clone, Copy)]
pub struct EndpointLabel(pub &'static str);

/// Default page size of `_catalog` when the client sets none: a full catalog
/// of a large registry in one answer would be slow and unbounded.
const DEFAULT_CATALOG_PAGE: usize = 1000;
/// Largest page a client may ask for, so one request stays bounded.
const MAX_PAGE: usize = 10_000;

type ApiResult = Result<Response, ApiError>;

/// `GET /v2/`: the API version check every client starts with.
pub async fn base(method: Method) -> Response {
    let mut response = match method {
        Method::GET | Method::HEAD => {
            (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response()
        }
        _ => ApiError::unsupported_method().into_response(),
    };
    response.extensions_mut().insert(EndpointLabel("base"));
    response
}

/// `/v2/` with access control: the same answer as [`base`] once the caller
/// has presented valid credentials.
pub async fn base_checked(State(state): State<AppState>, request: Request) -> Response {
    if let Some(auth) = &state.auth {
        let (mut parts, _body) = request.into_parts();
        if let Err(e) = access::authorize_request(auth, &Endpoint::Base, &mut parts).await {
            return labelled(e.into_response(), "base");
        }
        return base(parts.method).await;
    }
    base(request.method().clone()).await
}

/// Everything under `/v2/` except the base.
pub async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let rest = request
        .uri()
        .path()
        .strip_prefix("/v2/")
        .unwrap_or("")
        .to_string();
    let endpoint = match Endpoint::parse(&rest) {
        Ok(endpoint) => endpoint,
        Err(e) => return labelled(e.into_response(), "invalid"),
    };
    let label = endpoint.label();
    let (mut parts, body) = request.into_parts();
    let endpoint = match through_root_mirror(&state, endpoint, &mut parts).await {
        Ok(endpoint) => endpoint,
        Err(e) => return labelled(e.into_response(), label),
    };
    // The one authorization step: nothing below runs for a refused request.
    if let Some(auth) = &state.auth {
        if let Err(e) = access::authorize_request(auth, &endpoint, &mut parts).await {
            return labelled(e.into_response(), label);
        }
    }
    let result = handle(&state, endpoint, &parts, body).await;
    if let Err(refused) = &result {
        if let Some(refusal) = refused.quota_refusal() {
            state
                .registry
                .note_quota_refusal(&access::actor(&parts), refusal);
        }
    }
    labelled(result.unwrap_or_else(IntoResponse::into_response), label)
}

/// A pull of a name outside every namespace goes to the upstream answering
/// at the root, when one does (docker's `registry-mirrors` sends a mirror
/// Docker Hub's names; see `Registry::root_mirror`). The endpoint is
/// rewritten before the authorization step, so the name served is the one
/// authorized; the client's name is kept for its token
/// ([`access::ClientName`]).
async fn through_root_mirror(
    state: &AppState,
    endpoint: Endpoint,
    parts: &mut Parts,
) -> Result<Endpoint, ApiError> {
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        return Ok(endpoint);
    }
    let Some(repository) = endpoint.pulled_repository() else {
        return Ok(endpoint);
    };
    let Some(served) = state.registry.root_mirror(repository).await? else {
        return Ok(endpoint);
    };
    parts
        .extensions
        .insert(access::ClientName(repository.clone()));
    Ok(endpoint.with_repository(served))
}

fn labelled(mut response: Response, label: &'static str) -> Response {
    response.extensions_mut().insert(EndpointLabel(label));
    response
}

/// Serves an authorized request; the body is apart from the rest so that
/// only `Sync` parts are borrowed across awaits.
async fn handle(state: &AppState, endpoint: Endpoint, parts: &Parts, body: Body) -> ApiResult {
    let request = parts;
    // A proxy namespace's content comes from its upstream only: every
    // change a client asks for is refused before anything else is read.
    match (&endpoint, &parts.method) {
        (Endpoint::Manifest(repo, _), &Method::PUT | &Method::DELETE)
        | (Endpoint::Blob(repo, _), &Method::DELETE)
        | (Endpoint::UploadStart(repo), _)
        | (Endpoint::Upload(repo, _), _) => state.registry.refuse_proxy_write(repo)?,
        _ => {}
    }
    match (endpoint, parts.method.clone()) {
        (Endpoint::Base, method) => Ok(base(method).await),
        (Endpoint::Catalog, Method::GET | Method::HEAD) => catalog(state, request).await,
        (Endpoint::Tags(repo), Method::GET | Method::HEAD) => tags(state, &repo, request).await,
        (Endpoint::Manifest(repo, reference), Method::GET) => {
            get_manifest(state, &repo, &reference, request, false).await
        }
        (Endpoint::Manifest(repo, reference), Method::HEAD) => {
            get_manifest(state, &repo, &reference, request, true).await
        }
        (Endpoint::Manifest(repo, reference), Method::PUT) => {
            put_manifest(state, &repo, &reference, request, body).await
        }
        (Endpoint::Manifest(repo, reference), Method::DELETE) => {
            state
                .registry
                .delete_manifest(&access::actor(request), &repo, &reference)
                .await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Endpoint::Blob(repo, digest), Method::GET) => {
            get_blob(state, &repo, &digest, request, false).await
        }
        (Endpoint::Blob(repo, digest), Method::HEAD) => {
            get_blob(state, &repo, &digest, request, true).await
        }
        (Endpoint::Blob(repo, digest), Method::DELETE) => {
            state
                .registry
                .delete_blob(&access::actor(request), &repo, &digest)
                .await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        (Endpoint::UploadStart(repo), Method::POST) => {
            start_upload(state, &repo, request, body).await
        }
        (Endpoint::Upload(repo, id), Method::GET | Method::HEAD) => {
            let status = state.registry.upload_status(&repo, &id).await?;
            Ok(upload_response(
                StatusCode::NO_CONTENT,
                &repo,
                &id,
                status.size,
            ))
        }
        (Endpoint::Upload(repo, id), Method::PATCH) => {
            patch_upload(state, &repo, &id, request, body).await
        }
        (Endpoint::Upload(repo, id), Method::PUT) => {
            put_upload(state, &repo, &id, request, body).await
        }
        (Endpoint::Upload(repo, id), Method::DELETE) => {
            state.registry.cancel_upload(&repo, &id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Endpoint::Referrers(repo, digest), Method::GET | Method::HEAD) => {
            referrers(state, &repo, &digest, request).await
        }
        _ => Err(ApiError::unsupported_method()),
    }
}

// --- blobs ---

async fn get_blob(
    state: &AppState,
    repo: &RepoName,
    digest: &Digest,
    request: &Parts,
    head: bool,
) -> ApiResult {
    let headers = &request.headers;
    // In a proxy namespace, a blob not cached yet comes from upstream as
    // it arrives (whole: a range is one the server may ignore).
    if let Some((size, body)) = state.registry.pull_blob_through(repo, digest, head).await? {
        let response = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("docker-content-digest", digest.as_str())
            .header(header::ETAG, format!("\"{digest}\""))
            .header(header::CONTENT_LENGTH, size);
        let body = match body {
            // A blob the fetch stored is sent from its file like any other,
            // and one shared from the fetch in flight from the upload's
            // file as it is written (or, without one, as a stream).
            Some(blob) => {
                state.metrics.bytes_out(blob.len);
                crate::sendfile::blob_body(blob, request)
            }
            None => Body::empty(),
        };
        return Ok(response.body(body).expect("valid blob response"));
    }
    if !head {
        if let Some(url) = state.registry.blob_redirect(repo, digest).await? {
            return Ok(Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, url)
                .header("docker-content-digest", digest.as_str())
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .expect("valid redirect response"));
        }
    }
    let size = state.registry.blob_size(repo, digest).await?;
    // A header that is not text cannot be a range of ours: ignored, like
    // any other range RFC 9110 lets a server ignore.
    let requested = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map_or(RangeRequest::Whole, |value| parse_range_header(value, size));
    let range = match requested {
        RangeRequest::Whole => None,
        RangeRequest::Part(range) => Some(range),
        RangeRequest::NotSatisfiable => return Err(ApiError::range_not_satisfiable(size)),
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("docker-content-digest", digest.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::CACHE_CONTROL, "max-age=31536000");
    let (status, len) = match range {
        Some(r) => {
            builder = builder.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            );
            (StatusCode::PARTIAL_CONTENT, r.len())
        }
        None => (StatusCode::OK, size),
    };
    builder = builder.status(status).header(header::CONTENT_LENGTH, len);
    let body = if head {
        Body::empty()
    } else {
        let blob = state.registry.serve_blob(repo, digest, range).await?;
        state.metrics.bytes_out(blob.len);
        crate::sendfile::blob_body(blob, request)
    };
    Ok(builder.body(body).expect("valid blob response"))
}

// --- uploads ---

fn upload_response(status: StatusCode, repo: &RepoName, id: &UploadId, size: u64) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, format!("/v2/{repo}/blobs/uploads/{id}"))
        .header(header::RANGE, upload_range(size))
        .header("docker-upload-uuid", id.to_string())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid upload response")
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    Response::builder()
        .status(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{repo}/blobs/{digest}"))
        .header("docker-content-digest", digest.as_str())
        .header(header::CONTENT_LENGTH, 0)
        .body(Body::empty())
        .expect("valid blob created response")
}

async fn start_upload(state: &AppState, repo: &RepoName, request: &Parts, body: Body) -> ApiResult {
    let query = Query::parse(request)?;
    let mount_allowed = request.extensions.get::<MountDenied>().is_none();
    if let Some(mount) = query.get("mount").filter(|_| mount_allowed) {
        let digest = Digest::parse(mount).map_err(|e| ApiError::digest_invalid(e.to_string()))?;
        // An unusable `from` is not an error: the spec says the registry then
        // falls back to an ordinary upload session.
        let source = match query.get("from") {
            Some(from) => RepoName::parse(from).ok(),
            None => mount_source(state, request, &digest).await?,
        };
        if let Some(from) = source {
            if state
                .registry
                .mount_blob(&access::actor(request), repo, &from, &digest)
                .await?
                .is_some()
            {
                return Ok(blob_created(repo, &digest));
            }
        }
    }
    if let Some(digest) = query.get("digest") {
        let digest = Digest::parse(digest).map_err(|e| ApiError::digest_invalid(e.to_string()))?;
        let stream = body_stream(state, body);
        state
            .registry
            .upload_monolithic(&access::actor(request), repo, &digest, stream)
            .await?;
        return Ok(blob_created(repo, &digest));
    }
    let status = state
        .registry
        .start_upload(&access::actor(request), repo)
        .await?;
    Ok(upload_response(
        StatusCode::ACCEPTED,
        repo,
        &status.id,
        status.size,
    ))
}

/// Repositories examined at most for a mount that names no source, so a
/// blob held by very many repositories the caller may not pull costs a
/// bounded amount of work; past it the caller uploads the blob.
const MOUNT_CANDIDATES: usize = 1000;

/// Candidate sources read per query while looking for one.
const MOUNT_CANDIDATE_PAGE: usize = 100;

/// The source of a mount that names none (OCI 1.1 `?mount=` without
/// `from`): the first repository holding the blob that the caller may pull,
/// by the same rule as a mount with `from` (`access::may_pull`). Without
/// access control every repository qualifies.
async fn mount_source(
    state: &AppState,
    request: &Parts,
    digest: &Digest,
) -> Result<Option<RepoName>, ApiError> {
    let caller = request.extensions.get::<Caller>();
    let mut facts = std::collections::HashMap::new();
    let mut after: Option<RepoName> = None;
    let mut examined = 0;
    while examined < MOUNT_CANDIDATES {
        let page = state
            .registry
            .blob_holders(digest, after.as_ref(), MOUNT_CANDIDATE_PAGE)
            .await?;
        let exhausted = page.len() < MOUNT_CANDIDATE_PAGE;
        for candidate in page {
            examined += 1;
            let visible = match (&state.auth, caller) {
                (None, _) => true,
                (Some(auth), Some(caller)) => {
                    access::may_pull(auth, caller, &candidate, &mut facts).await?
                }
                // Authorization always leaves the caller; without one, no
                // source is visible.
                (Some(_), None) => false,
            };
            if visible {
                return Ok(Some(candidate));
            }
            after = Some(candidate);
        }
        if exhausted {
            break;
        }
    }
    Ok(None)
}

async fn patch_upload(
    state: &AppState,
    repo: &RepoName,
    id: &UploadId,
    request: &Parts,
    body: Body,
) -> ApiResult {
    let range = chunk_range(request)?;
    let stream = body_stream(state, body);
    let status = state.registry.append_chunk(repo, id, range, stream).await?;
    Ok(upload_response(StatusCode::ACCEPTED, repo, id, status.size))
}

/// The bytes a chunk claims to be in its `Content-Range`, if it has one.
fn chunk_range(request: &Parts) -> Result<Option<ByteRange>, ApiError> {
    match request.headers.get(header::CONTENT_RANGE) {
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().map_err(|_| ApiError::bad_content_range())?;
            let range = parse_content_range(text).map_err(|_| ApiError::bad_content_range())?;
            Ok(Some(range))
        }
    }
}

async fn put_upload(
    state: &AppState,
    repo: &RepoName,
    id: &UploadId,
    request: &Parts,
    body: Body,
) -> ApiResult {
    let query = Query::parse(request)?;
    let digest = query
        .get("digest")
        .ok_or_else(|| ApiError::digest_invalid("the digest parameter is required".into()))?;
    let digest = Digest::parse(digest).map_err(|e| ApiError::digest_invalid(e.to_string()))?;
    let has_body = match request.headers.get(header::CONTENT_LENGTH) {
        Some(len) => len.as_bytes() != b"0",
        None => request.headers.contains_key(header::TRANSFER_ENCODING),
    };
    let range = chunk_range(request)?;
    let last_chunk = has_body.then(|| body_stream(state, body));
    state
        .registry
        .finish_upload(
            &access::actor(request),
            repo,
            id,
            &digest,
            range,
            last_chunk,
        )
        .await?;
    Ok(blob_created(repo, &digest))
}

/// Turns a request body into the storage layer's byte stream, counting bytes.
fn body_stream(state: &AppState, body: Body) -> ByteStream {
    let metrics = state.metrics.clone();
    Box::pin(
        body.into_data_stream()
            .map_err(std::io::Error::other)
            .inspect_ok(move |chunk| metrics.bytes_in(chunk.len() as u64)),
    )
}

// --- manifests ---

/// Whether a client's `Accept` headers admit `media_type`. No `Accept` at
/// all, `*/*` and `application/json` admit everything.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    let mut any = false;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(text) = value.to_str() else { continue };
        for item in text.split(',') {
            let item = item.split(';').next().unwrap_or("").trim();
            if item.is_empty() {
                continue;
            }
            any = true;
            if item == media_type
                || item == "*/*"
                || item == "application/*"
                || item == "application/json"
            {
                return true;
            }
        }
    }
    !any
}

/// The `Warning` header of a manifest a proxy namespace served from its
/// cache because the upstream could not be asked (see docs/proxy.md).
pub const STALE_WARNING: &str = "110 - \"response is stale\"";

/// The header of a manifest answer whose image the namespace's
/// vulnerability policy warns about (`warn` mode): what `block` would say.
pub const VULNERABILITY_WARNING: &str = "berth-vulnerability-warning";

async fn get_manifest(
    state: &AppState,
    repo: &RepoName,
    reference: &Reference,
    request: &Parts,
    head: bool,
) -> ApiResult {
    let (record, freshness) = state.registry.pull_manifest(repo, reference).await?;
    // A digest pins exact content, so it is served whatever the client
    // accepts; a tag is negotiated, as Docker's registry does.
    if matches!(reference, Reference::Tag(_)) && !accepts(&request.headers, &record.media_type) {
        return Err(berth_registry::RegistryError::NotAcceptable.into());
    }
    // The namespace's vulnerability policy: a blocked image is refused
    // with the reason, a warned one served with it in a header.
    let tag = match reference {
        Reference::Tag(tag) => Some(tag),
        Reference::Digest(_) => None,
    };
    let warning = match state.registry.pull_verdict(repo, tag, &record).await? {
        PullVerdict::Allow => None,
        PullVerdict::Block(message) => return Err(ApiError::new(ErrorCode::Denied, message)),
        PullVerdict::Warn(message) => Some(message),
    };
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, &record.media_type)
        .header("docker-content-digest", record.digest.as_str())
        .header(header::ETAG, format!("\"{}\"", record.digest))
        .header(header::CONTENT_LENGTH, record.payload.len());
    if freshness == Freshness::Stale {
        // RFC 7234's warning for a cached answer that could not be
        // revalidated: the upstream of this proxy namespace failed.
        builder = builder.header(header::WARNING, STALE_WARNING);
    }
    if let Some(warning) = &warning {
        // Header values are visible ASCII; the message is made of names
        // and versions, and anything else is replaced.
        let printable: String = warning
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        builder = builder.header(VULNERABILITY_WARNING, printable);
    }
    let body = if head {
        Body::empty()
    } else {
        // A pull is a GET that is answered with the manifest; HEADs (how
        // clients check for updates) are not counted.
        state.registry.record_pull(
            repo,
            &record.digest,
            &access::actor(request),
            warning.as_deref(),
        );
        Body::from(bytes::Bytes::copy_from_slice(&record.payload))
    };
    Ok(builder.body(body).expect("valid manifest response"))
}

async fn put_manifest(
    state: &AppState,
    repo: &RepoName,
    reference: &Reference,
    request: &Parts,
    body: Body,
) -> ApiResult {
    let content_type = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limit = berth_oci::manifest::MAX_MANIFEST_SIZE;
    let payload = axum::body::to_bytes(body, limit + 1).await.map_err(|_| {
        ApiError::payload_too_large(
            ErrorCode::ManifestInvalid,
            format!("manifest larger than {limit} bytes"),
        )
    })?;
    state.metrics.bytes_in(payload.len() as u64);
    let extra_tags = tag_params(request, reference)?;
    let put = state
        .registry
        .put_manifest(
            &access::actor(request),
            repo,
            reference,
            &extra_tags,
            content_type.as_deref(),
            payload.to_vec(),
        )
        .await?;
    let mut builder = Response::builder()
        .status(StatusCode::CREATED)
        .header(
            header::LOCATION,
            format!("/v2/{repo}/manifests/{}", put.digest),
        )
        .header("docker-content-digest", put.digest.as_str())
        .header(header::CONTENT_LENGTH, 0);
    if let Some(subject) = &put.subject {
        builder = builder.header("oci-subject", subject.as_str());
    }
    for tag in &put.tags {
        builder = builder.header("oci-tag", tag.as_str());
    }
    Ok(builder
        .body(Body::empty())
        .expect("valid manifest created response"))
}

/// Most `?tag=` parameters accepted on one push; the spec asks for at least 10.
const MAX_TAG_PARAMS: usize = 100;

/// The `?tag=` parameters of a push by digest, validated.
fn tag_params(request: &Parts, reference: &Reference) -> Result<Vec<Tag>, ApiError> {
    let query = Query::parse(request)?;
    let raw: Vec<&str> = query.all("tag").collect();
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if matches!(reference, Reference::Tag(_)) {
        return Err(ApiError::bad_request(
            ErrorCode::ManifestInvalid,
            "tag parameters are only allowed on a push by digest",
        ));
    }
    if raw.len() > MAX_TAG_PARAMS {
        return Err(ApiError::uri_too_long(
            ErrorCode::ManifestInvalid,
            format!("at most {MAX_TAG_PARAMS} tag parameters are accepted"),
        ));
    }
    raw.into_iter()
        .map(|t| Tag::parse(t).map_err(|e| ApiError::manifest_invalid_reference(e.to_string())))
        .collect()
}

// --- listings ---

/// The `n` and `last` paging parameters.
struct Page {
    limit: usize,
    /// Whether the client asked for a page size (Link headers only then).
    explicit: bool,
    last: Option<String>,
}

fn page(query: &Query, default: usize) -> Result<Page, ApiError> {
    let (limit, explicit) = match query.get("n") {
        Some(n) => {
            let n: usize = n.parse().map_err(|_| {
                ApiError::bad_request(ErrorCode::Unsupported, "n must be a non-negative integer")
            })?;
            (n.min(MAX_PAGE), true)
        }
        None => (default, false),
    };
    Ok(Page {
        limit,
        explicit,
        last: query.get("last").map(str::to_string),
    })
}

fn link_header(path: &str, page: &Page, last: &str) -> String {
    let last = form_urlencoded_value(last);
    format!("<{path}?n={}&last={last}>; rel=\"next\"", page.limit)
}

fn form_urlencoded_value(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .map(|s| s.trim_start_matches("v=").to_string())
        .unwrap_or_default()
}

async fn tags(state: &AppState, repo: &RepoName, request: &Parts) -> ApiResult {
    let query = Query::parse(request)?;
    let page = page(&query, usize::MAX / 4)?;
    // One more than asked reveals whether a next page exists.
    let mut tags = state
        .registry
        .list_tags(repo, page.last.as_deref(), page.limit.saturating_add(1))
        .await?;
    let more = tags.len() > page.limit;
    tags.truncate(page.limit);
    let names: Vec<&str> = tags.iter().map(|t| t.as_str()).collect();
    // Serialized straight from the names, without an intermediate
    // `serde_json::Value` (one allocation per tag fewer on long lists).
    #[derive(serde::Serialize)]
    struct TagList<'a> {
        name: &'a str,
        tags: &'a [&'a str],
    }
    let mut response = axum::Json(TagList {
        name: repo.as_str(),
        tags: &names,
    })
    .into_response();
    if more && page.explicit {
        if let Some(last) = names.last() {
            let link = link_header(&format!("/v2/{repo}/tags/list"), &page, last);
            if let Ok(v) = HeaderValue::from_str(&link) {
                response.headers_mut().insert(header::LINK, v);
            }
        }
    }
    Ok(response)
}

async fn catalog(state: &AppState, request: &Parts) -> ApiResult {
    let query = Query::parse(request)?;
    let mut page = page(&query, DEFAULT_CATALOG_PAGE)?;
    let after = match &page.last {
        Some(last) => {
            Some(RepoName::parse(last).map_err(|e| ApiError::name_invalid(e.to_string()))?)
        }
        None => None,
    };
    let mut repos =
        visible_catalog_page(state, request, after, page.limit.saturating_add(1)).await?;
    let more = repos.len() > page.limit;
    repos.truncate(page.limit);
    let names: Vec<&str> = repos.iter().map(|r| r.as_str()).collect();
    let mut response = axum::Json(serde_json::json!({ "repositories": names })).into_response();
    if more {
        page.explicit = true;
        if let Some(last) = names.last() {
            if let Ok(v) = HeaderValue::from_str(&link_header("/v2/_catalog", &page, last)) {
                response.headers_mut().insert(header::LINK, v);
            }
        }
    }
    Ok(response)
}

/// Up to `limit` repository names after `after` that the caller may pull
/// from: all of them without access control; otherwise pages are read and
/// filtered until `limit` are found or the catalog ends.
async fn visible_catalog_page(
    state: &AppState,
    request: &Parts,
    mut after: Option<RepoName>,
    limit: usize,
) -> Result<Vec<RepoName>, ApiError> {
    let (Some(auth), Some(caller)) = (&state.auth, request.extensions.get::<Caller>()) else {
        return Ok(state.registry.catalog(after.as_ref(), limit).await?);
    };
    let mut cache = std::collections::HashMap::new();
    let mut visible = Vec::new();
    loop {
        let batch = state.registry.catalog(after.as_ref(), limit).await?;
        let exhausted = batch.len() < limit;
        for repo in batch {
            if access::may_pull(auth, caller, &repo, &mut cache).await? {
                visible.push(repo.clone());
                if visible.len() == limit {
                    return Ok(visible);
                }
            }
            after = Some(repo);
        }
        if exhausted {
            return Ok(visible);
        }
    }
}

async fn referrers(
    state: &AppState,
    repo: &RepoName,
    subject: &Digest,
    request: &Parts,
) -> ApiResult {
    let query = Query::parse(request)?;
    let artifact_type = query.get("artifactType");
    let after = match query.get("cursor") {
        Some(cursor) => Some(decode_cursor(cursor)?),
        None => None,
    };
    let page = state
        .registry
        .referrers(repo, subject, artifact_type, after.as_ref())
        .await?;
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            berth_oci::manifest::media_types::OCI_INDEX,
        )
        .header(header::CONTENT_LENGTH, page.index_len());
    if page.filtered {
        builder = builder.header("oci-filters-applied", "artifactType");
    }
    if let Some(next) = &page.next {
        let mut link = format!("/v2/{repo}/referrers/{subject}?");
        if let Some(artifact_type) = artifact_type {
            link.push_str(&format!(
                "artifactType={}&",
                form_urlencoded_value(artifact_type)
            ));
        }
        link.push_str(&format!("cursor={}", encode_cursor(next)));
        builder = builder.header(header::LINK, format!("<{link}>; rel=\"next\""));
    }
    // The index goes out piece by piece, each descriptor as it was
    // rendered, never copied into one buffer.
    let pieces = page
        .into_index_pieces()
        .map(Ok::<_, std::convert::Infallible>);
    Ok(builder
        .body(Body::from_stream(futures::stream::iter(pieces)))
        .expect("valid referrers response"))
}

/// The `cursor` of a referrers page: the digest the page starts after,
/// base64url-encoded so that clients treat it as opaque and follow `Link`
/// rather than build it.
fn encode_cursor(after: &Digest) -> String {
    URL_SAFE_NO_PAD.encode(after.as_str())
}

fn decode_cursor(cursor: &str) -> Result<Digest, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| Digest::parse(&text).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::Unsupported,
                "invalid cursor: follow the Link header of the previous page",
            )
        })
}

/// Decoded query parameters (the first value of each name wins).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(request: &Parts) -> Result<Query, ApiError> {
        let raw = request.uri.query().unwrap_or("");
        serde_urlencoded::from_str::<Vec<(String, String)>>(raw)
            .map(Query)
            .map_err(|_| ApiError::bad_request(ErrorCode::Unsupported, "malformed query string"))
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
