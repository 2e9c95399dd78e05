//! The console's stylesheet and script, compiled into the binary: no
//! separate files to deploy, no CDN, no build step.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

/// A file the console serves from memory.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    /// Its path on the site.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The stylesheet: light and dark by `prefers-color-scheme`, one column
/// on a phone.
pub const STYLESHEET: Asset = Asset {
    path: "/static/console.css",
    content_type: "text/css; charset=utf-8",
    body: include_str!("assets/console.css"),
};

/// The script: progressive enhancement only (copy buttons).
pub const SCRIPT: Asset = Asset {
    path: "/static/console.js",
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("assets/console.js"),
};

/// Every asset, found by path.
pub const ALL: [&Asset; 2] = [&STYLESHEET, &SCRIPT];

/// The asset at `path`, if there is one.
pub fn find(path: &str) -> Option<&'static Asset> {
    ALL.into_iter().find(|asset| asset.path == path)
}

impl Asset {
    /// The asset as an answer. Browsers may keep it for an hour: it changes
    /// only with the binary.
    pub fn response(&self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        response
    }
}
