//! Raw HTTP against the registry under test, to check what a client did
//! independently of that client: manifests and blobs read back byte for
//! byte, referrers listed, tags checked. Blocking, so it must not be used
//! from inside an async test (use reqwest's async client there).

use reqwest::blocking::Client;
use reqwest::header::HeaderMap;

use super::oci::{Blob, TestImage, TestIndex, ALL_MANIFEST_TYPES};

/// A response read whole.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_string())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Panics with the body when the status is not `expected`.
    pub fn expect_status(self, expected: u16, what: &str) -> Reply {
        assert_eq!(
            self.status,
            expected,
            "{what}: unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }
}

pub struct RegistryHttp {
    client: Client,
    base: String,
}

impl RegistryHttp {
    /// `addr` is `HOST:PORT`, as in image references.
    pub fn new(addr: &str) -> RegistryHttp {
        RegistryHttp {
            client: Client::new(),
            base: format!("http://{addr}"),
        }
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Reply {
        let response = request.send().expect("HTTP request to the registry");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().expect("read body").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GET `path` (starting with `/v2/`), with an optional `Accept`.
    pub fn get(&self, path: &str, accept: Option<&str>) -> Reply {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        self.send(request)
    }

    pub fn head(&self, path: &str, accept: Option<&str>) -> Reply {
        let mut request = self.client.head(format!("{}{path}", self.base));
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        self.send(request)
    }

    /// The manifest `reference` (tag or digest) of `repo`, accepting every
    /// manifest media type.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Reply {
        self.get(
            &format!("/v2/{repo}/manifests/{reference}"),
            Some(ALL_MANIFEST_TYPES),
        )
    }

    pub fn get_blob(&self, repo: &str, digest: &str) -> Reply {
        self.get(&format!("/v2/{repo}/blobs/{digest}"), None)
    }

    /// Asserts the registry serves `blob` from `repo` with identical bytes.
    pub fn assert_blob(&self, repo: &str, blob: &Blob) {
        let reply = self
            .get_blob(repo, &blob.digest)
            .expect_status(200, &format!("GET blob {}", blob.digest));
        assert!(
            reply.body == blob.bytes,
            "blob {} of {repo} differs from what was pushed",
            blob.digest
        );
    }

    /// Asserts the registry serves `manifest` by digest with identical
    /// bytes, its media type as `Content-Type` and its digest as
    /// `Docker-Content-Digest`.
    pub fn assert_manifest(&self, repo: &str, reference: &str, manifest: &Blob) {
        let reply = self
            .get_manifest(repo, reference)
            .expect_status(200, &format!("GET manifest {repo}:{reference}"));
        assert!(
            reply.body == manifest.bytes,
            "manifest {repo}:{reference} differs from {}: got {}",
            manifest.digest,
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            reply.header("docker-content-digest").as_deref(),
            Some(manifest.digest.as_str())
        );
        let content_type = reply.header("content-type").unwrap_or_default();
        assert_eq!(
            content_type.split(';').next().unwrap().trim(),
            manifest.media_type,
            "Content-Type"
        );
    }

    /// Asserts an image (manifest by `reference` and by digest, config,
    /// layers) is stored in `repo` byte for byte.
    pub fn assert_image(&self, repo: &str, reference: &str, image: &TestImage) {
        self.assert_manifest(repo, reference, &image.manifest);
        self.assert_manifest(repo, &image.manifest.digest, &image.manifest);
        self.assert_blob(repo, &image.config);
        for layer in &image.layers {
            self.assert_blob(repo, layer);
        }
    }

    pub fn assert_index(&self, repo: &str, reference: &str, index: &TestIndex) {
        self.assert_manifest(repo, reference, &index.index);
        for image in &index.images {
            self.assert_image(repo, &image.manifest.digest, image);
        }
    }

    /// Uploads a blob with POST then PUT (the flow every registry supports).
    pub fn push_blob(&self, repo: &str, blob: &Blob) {
        let start = self
            .send(
                self.client
                    .post(format!("{}/v2/{repo}/blobs/uploads/", self.base)),
            )
            .expect_status(202, "POST upload");
        let location = start.header("location").expect("Location on upload start");
        let url = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        self.send(
            self.client
                .put(format!("{url}{separator}digest={}", blob.digest))
                .header("Content-Type", "application/octet-stream")
                .body(blob.bytes.clone()),
        )
        .expect_status(201, "PUT upload");
    }

    pub fn put_manifest(&self, repo: &str, reference: &str, manifest: &Blob) -> Reply {
        self.send(
            self.client
                .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
                .header("Content-Type", &manifest.media_type)
                .body(manifest.bytes.clone()),
        )
    }

    /// Pushes an image's blobs and manifest, tagging it `tag`.
    pub fn push_image(&self, repo: &str, tag: &str, image: &TestImage) {
        for layer in &image.layers {
            self.push_blob(repo, layer);
        }
        self.push_blob(repo, &image.config);
        self.put_manifest(repo, tag, &image.manifest)
            .expect_status(201, "PUT manifest");
    }

    /// The referrers index of `digest` in `repo`, optionally filtered.
    pub fn referrers(&self, repo: &str, digest: &str, artifact_type: Option<&str>) -> Reply {
        let mut path = format!("/v2/{repo}/referrers/{digest}");
        if let Some(artifact_type) = artifact_type {
            path.push_str(&format!(
                "?artifactType={}",
                artifact_type.replace('+', "%2B")
            ));
        }
        self.get(&path, None)
    }

    /// The tags of `repo`, as listed by the registry.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let reply = self
            .get(&format!("/v2/{repo}/tags/list"), None)
            .expect_status(200, "tags/list");
        let json = reply.json();
        json["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}
