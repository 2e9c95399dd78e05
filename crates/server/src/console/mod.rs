//! The web console under `/`: server-rendered pages for people, beside the
//! OCI API (`/v2/`) and the management API (`/api/v1`).
//!
//! # Layout
//!
//! A request goes through the same steps as one of `/api/v1`, each in one
//! place:
//!
//! 1. [`page::Page::parse`]: the method and path (and, for a form, its
//!    fields) become a typed [`page::Page`]; anything else is the 404 page.
//! 2. [`session`]: the session cookie, if any, becomes the caller (a signed-in
//!    user, or anonymous); a POST must come from this site (`Origin`,
//!    `Sec-Fetch-Site`) and carry the session's CSRF token.
//! 3. [`page::required`]: the permission table, in the management API's
//!    vocabulary ([`crate::api::permission::Permission`]), checked once by
//!    [`crate::api::permission::authorize_policy`] with the policy's own
//!    decisions. A refused anonymous visitor is sent to sign in.
//! 4. [`views`] (and [`lifecycle`] for quotas, retention, immutable tags
//!    and the trash; [`vulnerabilities`] for findings, exemptions and pull
//!    policies; [`settings`] for the settings and account pages;
//!    [`replication`] for the replication rules): the
//!    page's handler reads through the same domain services
//!    and typed views as the management API's handlers and renders HTML
//!    ([`html`]: layout, escaping by `maud`).
//!
//! Every answer, errors included, is an HTML page with the security headers
//! of [`secure`]; the stylesheet and the script are compiled into the binary
//! ([`assets`]).
//!
//! **Architecture Invariant:** the console calls the registry domain and the
//! access-control store, as the management API does, never SQL; where it
//! shows what the API shows, it renders the API's own view types.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::v2::EndpointLabel;
use crate::AppState;

pub mod assets;
pub mod html;
pub mod lifecycle;
pub mod page;
pub mod replication;
pub mod session;
pub mod settings;
pub mod views;
pub mod vulnerabilities;

pub use page::Page;

/// The Content-Security-Policy of every console answer: nothing but this
/// origin's own files (no inline script or style), never framed, forms
/// posted only here, and no `<base>` to redirect relative links.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Every request the other routes do not take: the console's pages, and
/// its 404 page for anything else.
pub async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let mut response = views::handle(&state, request).await;
    secure(&mut response);
    response.extensions_mut().insert(EndpointLabel("console"));
    response
}

/// Adds the console's security headers to `response`; pages (as opposed to
/// the embedded assets) are never stored by caches, since they show what
/// one signed-in person may see and carry their CSRF token.
pub fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// An HTML answer with `status`.
pub fn html_response(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = Response::new(Body::from(markup.into_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// A `303 See Other` to `location` (a path of this site): what a form's
/// POST answers, so that reloading the next page repeats nothing.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Whether `method` changes something (and so needs the CSRF checks).
pub fn is_write(method: &Method) -> bool {
    *method != Method::GET && *method != Method::HEAD
}
