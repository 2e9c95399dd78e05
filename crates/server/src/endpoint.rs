//! Parsing `/v2/...` paths into endpoints.
//!
//! Repository names contain slashes, so routes cannot be matched per path
//! depth; the path is split into segments and read from its end, where the
//! resource keyword (`manifests`, `blobs`, `tags`, `referrers`) stands.

use berth_oci::{Digest, Reference, RepoName, UploadId};

use crate::error::ApiError;

/// One resource of the distribution API, parsed and validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, Reference),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepoName, UploadId),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, Digest),
}

impl Endpoint {
    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::Tags(_) => "tags",
            Endpoint::Manifest(..) => "manifest",
            Endpoint::Blob(..) => "blob",
            Endpoint::UploadStart(_) => "upload_start",
            Endpoint::Upload(..) => "upload",
            Endpoint::Referrers(..) => "referrers",
        }
    }

    /// The repository a pull names (tags, manifests, blobs, referrers).
    pub fn pulled_repository(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Tags(repo)
            | Endpoint::Manifest(repo, _)
            | Endpoint::Blob(repo, _)
            | Endpoint::Referrers(repo, _) => Some(repo),
            _ => None,
        }
    }

    /// The same endpoint on `repository` instead (uploads stay as they are:
    /// they are never served by the root mirror).
    pub fn with_repository(self, repository: RepoName) -> Endpoint {
        match self {
            Endpoint::Tags(_) => Endpoint::Tags(repository),
            Endpoint::Manifest(_, reference) => Endpoint::Manifest(repository, reference),
            Endpoint::Blob(_, digest) => Endpoint::Blob(repository, digest),
            Endpoint::Referrers(_, digest) => Endpoint::Referrers(repository, digest),
            other => other,
        }
    }

    /// Parses the part of the path after `/v2/`.
    pub fn parse(rest: &str) -> Result<Endpoint, ApiError> {
        if rest.is_empty() {
            return Ok(Endpoint::Base);
        }
        if rest == "_catalog" {
            return Ok(Endpoint::Catalog);
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let n = segments.len();
        let name = |count: usize| -> Result<RepoName, ApiError> {
            let joined = segments[..n - count].join("/");
            RepoName::parse(&joined).map_err(|e| ApiError::name_invalid(e.to_string()))
        };
        let last = segments[n - 1];
        let before = |k: usize| {
            if n > k {
                Some(segments[n - 1 - k])
            } else {
                None
            }
        };
        match (before(2), before(1), last) {
            (Some("blobs"), Some("uploads"), "") if n > 3 => Ok(Endpoint::UploadStart(name(3)?)),
            (_, Some("blobs"), "uploads") if n > 2 => Ok(Endpoint::UploadStart(name(2)?)),
            (Some("blobs"), Some("uploads"), id) if n > 3 => {
                let repo = name(3)?;
                let id = UploadId::parse(id).ok_or_else(ApiError::upload_unknown)?;
                Ok(Endpoint::Upload(repo, id))
            }
            (_, Some("tags"), "list") if n > 2 => Ok(Endpoint::Tags(name(2)?)),
            (_, Some("manifests"), reference) if n > 2 => {
                let repo = name(2)?;
                let reference = Reference::parse(reference).map_err(|e| match e {
                    berth_oci::ReferenceError::Digest(e) => ApiError::digest_invalid(e.to_string()),
                    berth_oci::ReferenceError::Tag(e) => {
                        ApiError::manifest_invalid_reference(e.to_string())
                    }
                })?;
                Ok(Endpoint::Manifest(repo, reference))
            }
            (_, Some("blobs"), digest) if n > 2 => {
                let repo = name(2)?;
                let digest =
                    Digest::parse(digest).map_err(|e| ApiError::digest_invalid(e.to_string()))?;
                Ok(Endpoint::Blob(repo, digest))
            }
            (_, Some("referrers"), digest) if n > 2 => {
                let repo = name(2)?;
                let digest =
                    Digest::parse(digest).map_err(|e| ApiError::digest_invalid(e.to_string()))?;
                Ok(Endpoint::Referrers(repo, digest))
            }
            _ => Err(ApiError::not_found()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const U: &str = "0b0f6a8e-3c39-4d4e-9f0c-2f4a3c1f8d10";

    fn repo(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn table() {
        let d = Digest::parse(D).unwrap();
        let u = UploadId::parse(U).unwrap();
        let cases: Vec<(String, Result<Endpoint, &str>)> = vec![
            ("".into(), Ok(Endpoint::Base)),
            ("_catalog".into(), Ok(Endpoint::Catalog)),
            (
                "alpine/tags/list".into(),
                Ok(Endpoint::Tags(repo("alpine"))),
            ),
            ("a/b/c/tags/list".into(), Ok(Endpoint::Tags(repo("a/b/c")))),
            (
                "library/alpine/manifests/latest".into(),
                Ok(Endpoint::Manifest(
                    repo("library/alpine"),
                    Reference::parse("latest").unwrap(),
                )),
            ),
            (
                format!("x/manifests/{D}"),
                Ok(Endpoint::Manifest(repo("x"), Reference::Digest(d.clone()))),
            ),
            (
                format!("x/blobs/{D}"),
                Ok(Endpoint::Blob(repo("x"), d.clone())),
            ),
            (
                format!("blobs/blobs/{D}"),
                Ok(Endpoint::Blob(repo("blobs"), d.clone())),
            ),
            (
                "x/blobs/uploads/".into(),
                Ok(Endpoint::UploadStart(repo("x"))),
            ),
            (
                "x/blobs/uploads".into(),
                Ok(Endpoint::UploadStart(repo("x"))),
            ),
            (
                "a/manifests/blobs/uploads/".into(),
                Ok(Endpoint::UploadStart(repo("a/manifests"))),
            ),
            (
                format!("x/y/blobs/uploads/{U}"),
                Ok(Endpoint::Upload(repo("x/y"), u.clone())),
            ),
            (
                format!("x/referrers/{D}"),
                Ok(Endpoint::Referrers(repo("x"), d.clone())),
            ),
            (
                "x/blobs/uploads/not-a-uuid".into(),
                Err("BLOB_UPLOAD_UNKNOWN"),
            ),
            ("X/tags/list".into(), Err("NAME_INVALID")),
            ("a//b/tags/list".into(), Err("NAME_INVALID")),
            ("x/blobs/sha256:abc".into(), Err("DIGEST_INVALID")),
            ("x/manifests/sha256:abc".into(), Err("DIGEST_INVALID")),
            ("x/manifests/-bad".into(), Err("MANIFEST_INVALID")),
            ("x/referrers/latest".into(), Err("DIGEST_INVALID")),
            ("tags/list".into(), Err("NOT_FOUND")),
            ("x/unknown/thing".into(), Err("NOT_FOUND")),
            ("x".into(), Err("NOT_FOUND")),
        ];
        for (path, expected) in cases {
            let got = Endpoint::parse(&path);
            match (got, expected) {
                (Ok(e), Ok(x)) => assert_eq!(e, x, "{path}"),
                (Err(e), Err(code)) => assert_eq!(e.code_str(), code, "{path}"),
                (got, expected) => panic!("{path}: got {got:?}, expected {expected:?}"),
            }
        }
    }
}
