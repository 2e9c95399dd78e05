//! Manifest parsing and validation.
//!
//! Berth reads only what it must to store a manifest correctly: the kind of
//! manifest, the descriptors it references (config, layers, child manifests,
//! subject) and its artifact type. The original bytes are always stored and
//! served unchanged, because their digest is the manifest's identity.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;

pub mod media_types {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}

/// The largest manifest accepted, as the spec recommends (4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// The longest media type RFC 6838 allows: a 127-character type, a slash
/// and a 127-character subtype.
pub const MAX_MEDIA_TYPE_LENGTH: usize = 255;

/// The four manifest formats Berth stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    OciManifest,
    OciIndex,
    DockerManifest,
    DockerManifestList,
}

impl ManifestKind {
    pub fn from_media_type(media_type: &str) -> Option<ManifestKind> {
        match media_type {
            media_types::OCI_MANIFEST => Some(ManifestKind::OciManifest),
            media_types::OCI_INDEX => Some(ManifestKind::OciIndex),
            media_types::DOCKER_MANIFEST => Some(ManifestKind::DockerManifest),
            media_types::DOCKER_MANIFEST_LIST => Some(ManifestKind::DockerManifestList),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciManifest => media_types::OCI_MANIFEST,
            ManifestKind::OciIndex => media_types::OCI_INDEX,
            ManifestKind::DockerManifest => media_types::DOCKER_MANIFEST,
            ManifestKind::DockerManifestList => media_types::DOCKER_MANIFEST_LIST,
        }
    }

    /// Whether this kind lists other manifests rather than blobs.
    pub fn is_index(self) -> bool {
        matches!(
            self,
            ManifestKind::OciIndex | ManifestKind::DockerManifestList
        )
    }
}

/// A content descriptor as it appears in manifests and in the referrers index.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    /// Whether the registry need not hold this blob: non-distributable layers
    /// (OCI's deprecated `nondistributable` types and Docker's foreign layers)
    /// are fetched by clients from their `urls`, not from the registry.
    pub fn is_non_distributable(&self) -> bool {
        self.media_type.contains("nondistributable")
            || self.media_type == media_types::DOCKER_FOREIGN_LAYER
    }
}

/// The fields of any of the four formats that validation needs.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Why a manifest was refused. Each maps to `MANIFEST_INVALID` except where noted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is larger than {MAX_MANIFEST_SIZE} bytes")]
    TooLarge,
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("mediaType {body:?} in the manifest does not match Content-Type {header:?}")]
    MediaTypeMismatch { body: String, header: String },
    #[error("{0}")]
    Structure(&'static str),
}

/// A validated manifest: its kind, its references and the bytes as pushed.
#[derive(Clone, Debug)]
pub struct ParsedManifest {
    pub kind: ManifestKind,
    /// The media type under which the manifest is stored and served.
    pub media_type: &'static str,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// The artifact type the referrers API reports: `artifactType`, or for an
    /// image manifest without one, its config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ParsedManifest {
    /// Parses and validates `bytes`, pushed with the `Content-Type` header
    /// `content_type` (if any).
    pub fn parse(
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<ParsedManifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(ManifestError::TooLarge);
        }
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        match &raw.schema_version {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(2) => {}
            _ => return Err(ManifestError::SchemaVersion),
        }
        // Content-Type parameters such as "; charset=utf-8" are not part of the type.
        let header = content_type
            .map(|h| h.split(';').next().unwrap_or("").trim())
            .filter(|h| !h.is_empty());
        let header_kind = header.and_then(ManifestKind::from_media_type);
        let kind = match (&raw.media_type, header_kind) {
            (Some(body), _) => {
                let kind = ManifestKind::from_media_type(body)
                    .ok_or_else(|| ManifestError::UnsupportedMediaType(body.clone()))?;
                if let Some(h) = header {
                    // A generic JSON content type carries no claim to contradict.
                    if h != body && h != "application/json" {
                        return Err(ManifestError::MediaTypeMismatch {
                            body: body.clone(),
                            header: h.to_string(),
                        });
                    }
                }
                kind
            }
            (None, Some(kind)) => kind,
            (None, None) => match (&raw.manifests, &raw.config) {
                (Some(_), None) => ManifestKind::OciIndex,
                (None, Some(_)) => ManifestKind::OciManifest,
                _ => {
                    return Err(ManifestError::UnsupportedMediaType(
                        header.unwrap_or("").to_string(),
                    ))
                }
            },
        };
        let parsed = match kind {
            ManifestKind::OciManifest | ManifestKind::DockerManifest => {
                let config = raw
                    .config
                    .ok_or(ManifestError::Structure("an image manifest needs a config"))?;
                if raw.manifests.is_some() {
                    return Err(ManifestError::Structure(
                        "an image manifest cannot list manifests",
                    ));
                }
                let layers = raw.layers.unwrap_or_default();
                if kind == ManifestKind::DockerManifest && raw.subject.is_some() {
                    return Err(ManifestError::Structure(
                        "Docker manifests cannot have a subject",
                    ));
                }
                if kind == ManifestKind::OciManifest
                    && layers.is_empty()
                    && raw.artifact_type.is_none()
                    && config.media_type == media_types::OCI_EMPTY
                {
                    // The image spec requires artifactType when the config is empty.
                    return Err(ManifestError::Structure(
                        "artifactType is required when the config is the empty descriptor",
                    ));
                }
                let artifact_type = raw
                    .artifact_type
                    .clone()
                    .or_else(|| Some(config.media_type.clone()));
                ParsedManifest {
                    kind,
                    media_type: kind.media_type(),
                    config: Some(config),
                    layers,
                    manifests: Vec::new(),
                    subject: raw.subject,
                    artifact_type,
                    annotations: raw.annotations,
                }
            }
            ManifestKind::OciIndex | ManifestKind::DockerManifestList => {
                let manifests = raw
                    .manifests
                    .ok_or(ManifestError::Structure("an index needs manifests"))?;
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(ManifestError::Structure(
                        "an index cannot have config or layers",
                    ));
                }
                if kind == ManifestKind::DockerManifestList && raw.subject.is_some() {
                    return Err(ManifestError::Structure(
                        "Docker manifest lists cannot have a subject",
                    ));
                }
                ParsedManifest {
                    kind,
                    media_type: kind.media_type(),
                    config: None,
                    layers: Vec::new(),
                    manifests,
                    subject: raw.subject,
                    artifact_type: raw.artifact_type,
                    annotations: raw.annotations,
                }
            }
        };
        // The referrers API lists the artifact type with every descriptor; a
        // media type is at most 255 bytes (RFC 6838 §4.2: 127 for the type,
        // 127 for the subtype, and the slash), so anything longer is not one,
        // and would let one manifest make every referrers page huge.
        if parsed
            .artifact_type
            .as_ref()
            .is_some_and(|t| t.len() > MAX_MEDIA_TYPE_LENGTH)
        {
            return Err(ManifestError::Structure(
                "artifactType (or the config media type) is longer than a media type may be (255 bytes)",
            ));
        }
        Ok(parsed)
    }

    /// The blobs the registry must hold in the manifest's repository before
    /// accepting it: the config and every distributable layer.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .filter(|d| !d.is_non_distributable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(media_type: Option<&str>, extra: &str) -> String {
        let mt = media_type
            .map(|m| format!(r#""mediaType":"{m}","#))
            .unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}}]{extra}}}"#
        )
    }

    #[test]
    fn kinds_and_errors_table() {
        use media_types::*;
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":5,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let docker_list = index
            .replace(OCI_INDEX, DOCKER_MANIFEST_LIST)
            .replace(OCI_MANIFEST, DOCKER_MANIFEST);
        let artifact_no_type = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_EMPTY}","digest":"{D1}","size":2}},"layers":[]}}"#
        );
        let artifact = artifact_no_type.replace(
            r#""layers":[]"#,
            r#""layers":[],"artifactType":"application/x-sbom""#,
        );
        let cases: Vec<(String, Option<&str>, Result<ManifestKind, &str>)> = vec![
            (
                image(Some(OCI_MANIFEST), ""),
                None,
                Ok(ManifestKind::OciManifest),
            ),
            (
                image(None, ""),
                Some(OCI_MANIFEST),
                Ok(ManifestKind::OciManifest),
            ),
            (image(None, ""), None, Ok(ManifestKind::OciManifest)),
            (
                image(Some(DOCKER_MANIFEST), ""),
                Some(DOCKER_MANIFEST),
                Ok(ManifestKind::DockerManifest),
            ),
            (
                image(Some(OCI_MANIFEST), ""),
                Some("application/json; charset=utf-8"),
                Ok(ManifestKind::OciManifest),
            ),
            (
                image(Some(OCI_MANIFEST), ""),
                Some(DOCKER_MANIFEST),
                Err("mismatch"),
            ),
            (
                image(Some("application/x-other"), ""),
                None,
                Err("media type"),
            ),
            (index.clone(), Some(OCI_INDEX), Ok(ManifestKind::OciIndex)),
            (docker_list, None, Ok(ManifestKind::DockerManifestList)),
            (artifact.clone(), None, Ok(ManifestKind::OciManifest)),
            (artifact_no_type, None, Err("structure")),
            (
                artifact.replace(
                    "application/x-sbom",
                    &format!("application/{}", "x".repeat(243)),
                ),
                None,
                Ok(ManifestKind::OciManifest),
            ),
            (
                artifact.replace(
                    "application/x-sbom",
                    &format!("application/{}", "x".repeat(244)),
                ),
                None,
                Err("structure"),
            ),
            (
                image(None, "").replace(
                    "application/vnd.oci.image.config.v1+json",
                    &format!("application/{}", "x".repeat(300)),
                ),
                None,
                Err("structure"),
            ),
            (
                index.replace(
                    r#""manifests""#,
                    &format!(r#""artifactType":"a/{}","manifests""#, "x".repeat(300)),
                ),
                None,
                Err("structure"),
            ),
            ("{".to_string(), None, Err("json")),
            (r#"{"schemaVersion":1}"#.to_string(), None, Err("schema")),
            (
                image(Some(OCI_MANIFEST), "").replace(D2, "sha256:bad"),
                None,
                Err("json"),
            ),
            (
                index.replace(r#""manifests""#, r#""layers""#),
                None,
                Err("structure"),
            ),
        ];
        for (body, header, expected) in cases {
            let got = ParsedManifest::parse(body.as_bytes(), header);
            match (got, expected) {
                (Ok(m), Ok(kind)) => assert_eq!(m.kind, kind, "{body}"),
                (Err(e), Err(what)) => {
                    let ok = match what {
                        "mismatch" => matches!(e, ManifestError::MediaTypeMismatch { .. }),
                        "media type" => matches!(e, ManifestError::UnsupportedMediaType(_)),
                        "structure" => matches!(e, ManifestError::Structure(_)),
                        "json" => matches!(e, ManifestError::Json(_)),
                        "schema" => matches!(e, ManifestError::SchemaVersion),
                        _ => false,
                    };
                    assert!(ok, "{body}: expected {what}, got {e:?}");
                }
                (got, expected) => panic!("{body}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn references_and_artifact_type() {
        let subject = format!(
            r#","subject":{{"mediaType":"{}","digest":"{D2}","size":9}},"artifactType":"application/x-sig""#,
            media_types::OCI_MANIFEST
        );
        let m = ParsedManifest::parse(image(None, &subject).as_bytes(), None).unwrap();
        assert_eq!(m.subject.as_ref().unwrap().digest.as_str(), D2);
        assert_eq!(m.artifact_type.as_deref(), Some("application/x-sig"));
        assert_eq!(m.required_blobs().count(), 2);

        let plain = ParsedManifest::parse(image(None, "").as_bytes(), None).unwrap();
        assert_eq!(
            plain.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );

        let foreign = image(None, "").replace(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        );
        let m = ParsedManifest::parse(foreign.as_bytes(), None).unwrap();
        assert_eq!(
            m.required_blobs().count(),
            1,
            "non-distributable layers are not required"
        );
    }

    #[test]
    fn size_limit() {
        let big = format!(
            r#"{{"schemaVersion":2,"pad":"{}"}}"#,
            "x".repeat(MAX_MANIFEST_SIZE)
        );
        assert_eq!(
            ParsedManifest::parse(big.as_bytes(), None).unwrap_err(),
            ManifestError::TooLarge
        );
    }
}
