//! The OpenAPI 3.1 document of the management API, served at
//! `/api/v1/openapi.json`, generated from the code: each handler's
//! `#[utoipa::path]` annotation gives its path, parameters, body and
//! success answer, the request and response types give the schemas, and
//! [`StandardResponses`] adds, from the routing table, the error answers
//! every operation shares (authentication, validation, limits, faults) and
//! its security requirements. Tests hold the document's operations to
//! [`Route::ALL`], so a route cannot be served undocumented.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorCode};
use super::route::Route;
use super::types::{ReferenceParam, RepositoryParam, TagParam};
use super::{
    audit, images, immutable, members, namespaces, quotas, replications, repositories, retention,
    tokens, trash, users, vulnerabilities, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Berth management API",
        description = "Users, namespaces, members, access tokens and images of a Berth registry.

Authenticate as on `/v2/`: HTTP Basic with a user's password or an access \
token's name and secret, or a registry token (`Bearer`) from `/auth/token`. \
A registry token grants here only what its `access` claim names: \
`namespace:NS:ACTION` (pull, push, delete, manage_members, manage_settings, \
create), `registry:users:*` (user administration), `registry:tokens:*` \
(one's own access tokens) and `registry:account:*` (one's own password); the image endpoints need \
`repository:NAME:pull|push|delete`, as on `/v2/`. A 401 answer names the scope to ask for in its \
`WWW-Authenticate` challenge and in `detail.scope`.

Errors are `{\"code\", \"message\", \"detail\"}` with the codes of `ErrorCode`."
    ),
    paths(
        document,
        users::list,
        users::create,
        users::update,
        users::delete,
        users::set_password,
        users::change_own_password,
        namespaces::list,
        namespaces::create,
        namespaces::get,
        namespaces::update,
        members::list,
        members::set,
        members::remove,
        tokens::list,
        tokens::create,
        tokens::revoke,
        tokens::list_in_namespace,
        images::list,
        images::list_tags,
        images::get,
        images::delete,
        images::tag,
        images::untag,
        repositories::list,
        namespaces::delete,
        vulnerabilities::report,
        vulnerabilities::sbom,
        vulnerabilities::get_policy,
        vulnerabilities::set_policy,
        vulnerabilities::list_policies,
        vulnerabilities::summary,
        vulnerabilities::list_exemptions,
        vulnerabilities::add_exemption,
        vulnerabilities::remove_exemption,
        vulnerabilities::advisory_data,
        vulnerabilities::import,
        vulnerabilities::advisory_sources,
        vulnerabilities::sync_advisory_sources,
        immutable::list_rules,
        immutable::add_rule,
        immutable::remove_rule,
        webhooks::list,
        webhooks::create,
        webhooks::delete,
        webhooks::deliveries,
        audit::list,
        trash::list,
        trash::restore,
        retention::list_policies,
        retention::set_policy,
        retention::remove_policy,
        retention::run_policy,
        quotas::list,
        quotas::get,
        quotas::history,
        quotas::set,
        quotas::recompute,
        replications::list,
        replications::create,
        replications::get,
        replications::run,
        replications::delete,
    ),
    components(schemas(
        ErrorBody,
        ErrorCode,
        RepositoryParam,
        ReferenceParam,
        TagParam,
        images::Tagged,
        images::TagSortParam,
        repositories::Sort,
    )),
    modifiers(&StandardResponses),
    tags(
        (name = "users", description = "User accounts (administrators)"),
        (name = "namespaces", description = "Namespaces and their settings"),
        (name = "members", description = "Who may do what in a namespace"),
        (name = "tokens", description = "Access tokens for robots: pipelines, clusters"),
        (name = "repositories", description = "Repositories: counts, sizes, last push"),
        (name = "images", description = "The images of a repository: list, inspect, tag, untag, delete"),
        (name = "vulnerabilities", description = "The Vulnerability Advisor: reports, SBOMs, exemptions, pull policies, advisories"),
        (name = "lifecycle", description = "Image lifecycle: immutable tags, the trash, retention policies"),
        (name = "webhooks", description = "Webhooks: events delivered as signed CloudEvents"),
        (name = "audit", description = "The audit trail (administrators)"),
        (name = "replications", description = "Replication rules: copying images to and from other registries (administrators)"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document.
///
/// Describes every endpoint of this API; anyone may read it.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub fn document() -> Response {
    static DOCUMENT: LazyLock<Vec<u8>> =
        LazyLock::new(|| serde_json::to_vec(&ApiDoc::openapi()).expect("the document serializes"));
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_slice(),
    )
        .into_response()
}

/// The error answers an operation can give, beyond those its annotation
/// names: what authentication, request parsing and the server itself can
/// answer on that route.
pub fn standard_errors(route: Route) -> Vec<ErrorCode> {
    let (_, path) = route.method_and_path();
    let mut codes = Vec::new();
    if route.takes_body() || path.contains('{') {
        codes.push(ErrorCode::InvalidRequest);
    }
    if !route.is_public() {
        // 404 also answers every non-public route of a server running
        // without access control.
        codes.extend([
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::TooManyRequests,
        ]);
    }
    if route.takes_body() {
        codes.extend([ErrorCode::PayloadTooLarge, ErrorCode::UnsupportedMediaType]);
    }
    codes.extend([ErrorCode::Internal, ErrorCode::Unavailable]);
    codes
}

/// Adds the shared error answers and the security requirements to every
/// operation, from [`Route::ALL`].
struct StandardResponses;

impl Modify for StandardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".to_string());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        for route in Route::ALL {
            let (method, path) = route.method_and_path();
            let Some(operation) = operation_mut(openapi, &method, path) else {
                // The tests fail on a route the annotations do not cover.
                continue;
            };
            for code in standard_errors(route) {
                let status = code.status().as_str().to_string();
                operation
                    .responses
                    .responses
                    .entry(status)
                    .or_insert_with(|| error_response(code));
            }
            if !route.is_public() {
                operation.security = Some(vec![
                    SecurityRequirement::new("basic", Vec::<String>::new()),
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                ]);
            }
        }
    }
}

fn operation_mut<'a>(
    openapi: &'a mut utoipa::openapi::OpenApi,
    method: &axum::http::Method,
    path: &str,
) -> Option<&'a mut Operation> {
    let item = openapi.paths.paths.get_mut(path)?;
    let method = match *method {
        axum::http::Method::GET => HttpMethod::Get,
        axum::http::Method::POST => HttpMethod::Post,
        axum::http::Method::PUT => HttpMethod::Put,
        axum::http::Method::PATCH => HttpMethod::Patch,
        axum::http::Method::DELETE => HttpMethod::Delete,
        _ => return None,
    };
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Patch => item.patch.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        _ => None,
    }
}

/// The answer for `code`: the error body, and the header that goes with it.
fn error_response(code: ErrorCode) -> RefOr<utoipa::openapi::Response> {
    let description = match code {
        ErrorCode::InvalidRequest => "The request is malformed; the message says how",
        ErrorCode::Unauthorized => {
            "No credentials, wrong ones, or a token that does not grant this \
             (the challenge names the scope to ask for)"
        }
        ErrorCode::Forbidden => "The caller may not do this",
        ErrorCode::NotFound => "No such thing, or the server runs without access control",
        ErrorCode::MethodNotAllowed => "The path exists for other methods",
        ErrorCode::Conflict => "The change conflicts with the current state",
        ErrorCode::PayloadTooLarge => "The request body is over 64 KiB",
        ErrorCode::UnsupportedMediaType => "The request body is not application/json",
        ErrorCode::TooManyRequests => "Too many failed logins",
        ErrorCode::Internal => "The server failed; details are in its log",
        ErrorCode::Unavailable => "A dependency is unavailable; retry later",
    };
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    );
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let header = match code {
        ErrorCode::Unauthorized => Some((
            "WWW-Authenticate",
            "A Bearer challenge: realm, service, and the scope needed",
        )),
        ErrorCode::TooManyRequests => Some(("Retry-After", "Seconds to wait")),
        _ => None,
    };
    if let Some((name, description)) = header {
        response = response.header(
            name,
            HeaderBuilder::new()
                .schema(Some(string()))
                .description(Some(description))
                .build(),
        );
    }
    response.build().into()
}
