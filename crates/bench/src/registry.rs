//! The OCI Distribution operations the scenarios are made of, each written
//! the way common clients perform it, so the figures reflect real traffic.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK, LOCATION};
use http::{Method, StatusCode};
use http_body_util::Full;

use crate::client::{drain, unexpected, Connection, Result, Target};
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

/// What one blob download received.
pub struct Pulled {
    /// Bytes of the blob's body.
    pub length: u64,
    /// Whether the registry answered with a redirect that was followed.
    pub redirected: bool,
}

/// Downloads a blob, discarding its bytes, and returns how many arrived.
///
/// A registry may answer with a redirect to its object store (Berth with S3
/// storage and `redirect = true`, Distribution's redirect middleware); the
/// download then follows it as docker and containerd do, over `redirected`:
/// one keep-alive connection to the redirect's host, kept across calls so
/// repeated pulls do not each pay for a new connection, and replaced when a
/// redirect names another host.
pub async fn pull_blob(
    connection: &mut Connection,
    redirected: &mut Option<Connection>,
    repository: &str,
    digest: &str,
) -> Result<Pulled> {
    let path = format!("/v2/{repository}/blobs/{digest}");
    let request = connection
        .target()
        .request(Method::GET, &path)
        .body(Full::default())?;
    let response = connection.send(request).await?;
    let status = response.status();
    if status.is_redirection() {
        let (parts, body) = response.into_parts();
        // The redirect's own body (usually empty) is read so the connection
        // to the registry stays usable for the next request.
        drain(body).await?;
        let location = parts
            .headers
            .get(LOCATION)
            .ok_or_else(|| format!("GET {path}: {status} without a Location"))?
            .to_str()?;
        let length = follow_redirect(redirected, location).await?;
        return Ok(Pulled {
            length,
            redirected: true,
        });
    }
    let (_, body) = response.into_parts();
    if status != StatusCode::OK {
        let text = http_body_util::BodyExt::collect(body).await?.to_bytes();
        return Err(unexpected(&format!("GET {path}"), status, &text));
    }
    Ok(Pulled {
        length: drain(body).await?,
        redirected: false,
    })
}

/// GETs the absolute URL a registry redirected to, on `connection` if it
/// already talks to that host, and returns the body's length.
async fn follow_redirect(connection: &mut Option<Connection>, url: &str) -> Result<u64> {
    let target = Target::from_url(url).await?;
    let reusable = matches!(connection, Some(open) if open.target().host == target.host);
    if !reusable {
        *connection = Some(Connection::open(&target).await?);
    }
    let connection = connection.as_mut().expect("opened above");
    // A presigned URL signs its `Host`, which `Target` sets from the URL's
    // authority exactly as written, and its query, which is kept verbatim.
    let path = origin_form(url);
    let request = connection
        .target()
        .request(Method::GET, &path)
        .body(Full::default())?;
    let response = connection.send(request).await?;
    let status = response.status();
    let (_, body) = response.into_parts();
    if status != StatusCode::OK {
        let text = http_body_util::BodyExt::collect(body).await?.to_bytes();
        return Err(unexpected(
            &format!("GET {url} (redirected)"),
            status,
            &text,
        ));
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

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    /// Serves `answer` on a loopback port from a task of the test's runtime,
    /// counting accepted connections, and returns its address and the count.
    async fn serve<F>(answer: F) -> (std::net::SocketAddr, Arc<AtomicUsize>)
    where
        F: Fn(http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let answer = answer.clone();
                let service = service_fn(move |request| {
                    let response = answer(request);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (address, accepted)
    }

    #[tokio::test]
    async fn pull_follows_a_redirect_and_keeps_its_connection() {
        // The "object store" answers only the exact presigned path, query and
        // host it was given, as a signature check would.
        let (store, store_connections) = serve(|request| {
            let host = request.headers().get(http::header::HOST).cloned();
            let signed = request.uri().path_and_query().map(|p| p.as_str())
                == Some("/bucket/blobs/abc?X-Amz-Signature=s%2F1");
            let status = if signed && host.is_some() {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            let mut response = http::Response::new(Full::new(Bytes::from(vec![7u8; 1000])));
            *response.status_mut() = status;
            response
        })
        .await;
        let location = format!("http://{store}/bucket/blobs/abc?X-Amz-Signature=s%2F1");
        let (registry, _) = serve(move |_request| {
            let mut response = http::Response::new(Full::default());
            *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
            response
                .headers_mut()
                .insert(LOCATION, location.parse().unwrap());
            response
        })
        .await;
        let target = Target::from_url(&format!("http://{registry}"))
            .await
            .unwrap();
        let mut connection = Connection::open(&target).await.unwrap();
        let mut redirected = None;
        for _ in 0..3 {
            let pulled = pull_blob(&mut connection, &mut redirected, "a", "sha256:abc")
                .await
                .unwrap();
            assert_eq!(pulled.length, 1000);
            assert!(pulled.redirected);
        }
        assert_eq!(store_connections.load(Ordering::Relaxed), 1);
    }

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
