//! The OCI Distribution operations the scenarios are made of, each written
//! the way common clients perform it, so the figures reflect real traffic.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK, LOCATION};
use http::{Method, StatusCode};
use http_body_util::Full;

use crate::client::{drain, unexpected, Connection, Result};
use crate::content::{Blob, Image, OCI_MANIFEST};

const OCTET_STREAM: &str = "application/octet-stream";

/// Whether the repository can serve the blob (`HEAD`), as clients check before
/// uploading.
pub async fn blob_exists(
    connection: &mut Connection,
    repository: &str,
    digest: &str,
) -> Result<bool> {
    let path = format!("/v2/{repository}/blobs/{digest}");
    let request = connection
        .target()
        .request(Method::HEAD, &path)
        .body(Full::default())?;
    let (parts, body) = connection.fetch(request).await?;
    match parts.status {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        status => Err(unexpected(&format!("HEAD {path}"), status, &body)),
    }
}

/// Opens an upload session and returns the path to send its data to.
pub async fn start_upload(connection: &mut Connection, repository: &str) -> Result<String> {
    let path = format!("/v2/{repository}/blobs/uploads/");
    let request = connection
        .target()
        .request(Method::POST, &path)
        .header(CONTENT_LENGTH, 0)
        .body(Full::default())?;
    let (parts, body) = connection.fetch(request).await?;
    if parts.status != StatusCode::ACCEPTED {
        return Err(unexpected(&format!("POST {path}"), parts.status, &body));
    }
    location(&parts, &path)
}

/// Uploads a blob in one `PUT` after opening a session (the monolithic flow
/// of docker and containerd for small and medium blobs).
pub async fn push_blob_monolithic(
    connection: &mut Connection,
    repository: &str,
    blob: &Blob,
) -> Result<()> {
    let upload = start_upload(connection, repository).await?;
    finish_upload(connection, &upload, &blob.digest, blob.data.clone()).await
}

/// Uploads a blob as a series of `PATCH` requests of `chunk_size` bytes,
/// then closes the session with an empty `PUT`.
pub async fn push_blob_chunked(
    connection: &mut Connection,
    repository: &str,
    blob: &Blob,
    chunk_size: usize,
) -> Result<()> {
    let mut upload = start_upload(connection, repository).await?;
    let mut offset = 0usize;
    while offset < blob.data.len() {
        let end = (offset + chunk_size).min(blob.data.len());
        // Slicing `Bytes` shares the buffer, so a chunk costs no copy.
        let chunk = blob.data.slice(offset..end);
        let request = connection
            .target()
            .request(Method::PATCH, &upload)
            .header(CONTENT_TYPE, OCTET_STREAM)
            .header(CONTENT_LENGTH, chunk.len())
            .header("content-range", format!("{}-{}", offset, end - 1))
            .body(Full::new(chunk))?;
        let (parts, body) = connection.fetch(request).await?;
        if parts.status != StatusCode::ACCEPTED {
            return Err(unexpected(&format!("PATCH {upload}"), parts.status, &body));
        }
        upload = location(&parts, &upload)?;
        offset = end;
    }
    finish_upload(connection, &upload, &blob.digest, Bytes::new()).await
}

/// Closes an upload session with `PUT ?digest=`, sending `data` as its last
/// (or only) part.
async fn finish_upload(
    connection: &mut Connection,
    upload: &str,
    digest: &str,
    data: Bytes,
) -> Result<()> {
    let separator = if upload.contains('?') { '&' } else { '?' };
    let path = format!("{upload}{separator}digest={digest}");
    let request = connection
        .target()
        .request(Method::PUT, &path)
        .header(CONTENT_TYPE, OCTET_STREAM)
        .header(CONTENT_LENGTH, data.len())
        .body(Full::new(data))?;
    let (parts, body) = connection.fetch(request).await?;
    if parts.status != StatusCode::CREATED {
        return Err(unexpected(&format!("PUT {upload}"), parts.status, &body));
    }
    Ok(())
}

/// Uploads a blob unless the repository already has it, as docker does.
pub async fn push_blob_if_missing(
    connection: &mut Connection,
    repository: &str,
    blob: &Blob,
) -> Result<()> {
    if !blob_exists(connection, repository, &blob.digest).await? {
        push_blob_monolithic(connection, repository, blob).await?;
    }
    Ok(())
}

/// Stores an OCI image manifest under a tag (or digest).
pub async fn put_manifest(
    connection: &mut Connection,
    repository: &str,
    reference: &str,
    manifest: &Blob,
) -> Result<()> {
    let path = format!("/v2/{repository}/manifests/{reference}");
    let request = connection
        .target()
        .request(Method::PUT, &path)
        .header(CONTENT_TYPE, OCI_MANIFEST)
        .header(CONTENT_LENGTH, manifest.data.len())
        .body(Full::new(manifest.data.clone()))?;
    let (parts, body) = connection.fetch(request).await?;
    if parts.status != StatusCode::CREATED {
        return Err(unexpected(&format!("PUT {path}"), parts.status, &body));
    }
    Ok(())
}

/// Pushes a whole image the way `docker push` does: for each blob a `HEAD`,
/// then an upload when it is missing, then the manifest.
pub async fn push_image(
    connection: &mut Connection,
    repository: &str,
    tag: &str,
    image: &Image,
) -> Result<()> {
    push_blob_if_missing(connection, repository, &image.layer).await?;
    push_blob_if_missing(connection, repository, &image.config).await?;
    put_manifest(connection, repository, tag, &image.manifest).await
}

/// Downloads a blob, discarding its bytes, and returns how many arrived.
pub async fn pull_blob(connection: &mut Connection, repository: &str, digest: &str) -> Result<u64> {
    let path = format!("/v2/{repository}/blobs/{digest}");
    let request = connection
        .target()
        .request(Method::GET, &path)
        .body(Full::default())?;
    let response = connection.send(request).await?;
    let status = response.status();
    let (_, body) = response.into_parts();
    if status != StatusCode::OK {
        let text = http_body_util::BodyExt::collect(body).await?.to_bytes();
        return Err(unexpected(&format!("GET {path}"), status, &text));
    }
    drain(body).await
}

/// The `Accept` header of a client that understands OCI and Docker manifests.
pub fn manifest_accept() -> &'static str {
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json"
}

/// Fetches every page of a paged listing (`/v2/_catalog` or `tags/list`),
/// following `Link: <...>; rel="next"`, and returns the names found under
/// `key` (`repositories` or `tags`).
pub async fn list_all_pages(
    connection: &mut Connection,
    first_page: &str,
    key: &str,
) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut next = Some(first_page.to_string());
    // A registry that kept returning a next link would loop forever; no
    // listing in the benchmark has anywhere near this many pages.
    for _ in 0..100_000 {
        let Some(path) = next.take() else {
            return Ok(names);
        };
        let request = connection
            .target()
            .request(Method::GET, &path)
            .header(ACCEPT, "application/json")
            .body(Full::default())?;
        let (parts, body) = connection.fetch(request).await?;
        if parts.status != StatusCode::OK {
            return Err(unexpected(&format!("GET {path}"), parts.status, &body));
        }
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        if let Some(items) = page.get(key).and_then(|v| v.as_array()) {
            names.extend(
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_string)),
            );
        }
        next = parts
            .headers
            .get(LINK)
            .and_then(|value| value.to_str().ok())
            .and_then(next_link);
    }
    Err(format!("listing {first_page} did not end after 100000 pages").into())
}

/// Extracts the target of a `rel="next"` link as an origin-form path.
fn next_link(header: &str) -> Option<String> {
    header
        .split(',')
        .find(|link| link.contains("rel=\"next\""))
        .and_then(|link| {
            let start = link.find('<')? + 1;
            let end = link.find('>')?;
            Some(origin_form(&link[start..end]))
        })
}

/// Reads the `Location` of an upload response as a path on the same server.
fn location(parts: &http::response::Parts, request_path: &str) -> Result<String> {
    let value = parts
        .headers
        .get(LOCATION)
        .ok_or_else(|| format!("{request_path}: response has no Location"))?
        .to_str()?;
    Ok(origin_form(value))
}

/// Registries may answer with absolute URLs (Distribution does); the
/// benchmark always talks to the one server it was given, so only the path
/// and query matter.
fn origin_form(url: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(slash) => rest[slash..].to_string(),
            None => "/".to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_relative_locations_become_paths() {
        assert_eq!(
            origin_form("http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=1"),
            "/v2/a/blobs/uploads/x?_state=1"
        );
        assert_eq!(
            origin_form("/v2/a/blobs/uploads/x"),
            "/v2/a/blobs/uploads/x"
        );
    }

    #[test]
    fn next_link_is_found_among_several() {
        let header = r#"</v2/_catalog?last=b&n=2>; rel="next""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}
