//! Manifests seen as images, for the management API: listings, inspection
//! and the server-side tag, untag and delete.
//!
//! What an image's configuration says (created, platform, entrypoint,
//! history, ...) is read from its config blob once, the first time the
//! image is listed or inspected, and kept with the manifest as
//! [`ImageFacts`] (`ImageStore::set_image_facts`); listings then read the
//! metadata store only. An index's facts are its children's platforms, read
//! from its own payload.

use std::collections::BTreeMap;

use berth_meta::{
    Actor, ImageCursor, ImageSummary, ManifestRecord, Referrer, RepositoryQuery, RepositorySummary,
    TagQuery, TaggedFilter,
};
use berth_oci::manifest::media_types;
use berth_oci::{Digest, ParsedManifest, Reference, RepoName, Tag};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::{Registry, RegistryError};

/// The largest config blob whose facts are read; a larger one (no real
/// image has one) gets empty facts rather than being held in memory.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// How deep indexes may nest when an image is tagged into another
/// repository (an index of indexes of images is already unusual).
const MAX_INDEX_DEPTH: usize = 4;

/// Referrers listed by an inspection at most.
pub const MAX_INSPECT_REFERRERS: usize = 1000;

/// The config media types whose blob is an image configuration.
const IMAGE_CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// What an image's configuration (or an index's payload) says, as stored
/// with the manifest. Every field is optional: an artifact has none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    /// The `created` time the image configuration gives, as written there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// An index's children's platforms, in the index's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<Platform>,
}

/// How a container of the image runs (the configuration's `config`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
    /// `port/protocol`, sorted.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// Paths, sorted.
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One step of the image's build history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub empty_layer: bool,
}

/// A platform an index lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub digest: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image: its summary from the metadata store and its facts.
#[derive(Clone, Debug)]
pub struct Image {
    pub summary: ImageSummary,
    pub facts: ImageFacts,
}

/// Everything an inspection shows of one image.
#[derive(Clone, Debug)]
pub struct ImageDetails {
    pub image: Image,
    /// The manifest itself, its bytes as pushed.
    pub record: std::sync::Arc<ManifestRecord>,
    /// The manifests whose subject it is, at most [`MAX_INSPECT_REFERRERS`].
    pub referrers: Vec<Referrer>,
}

/// The image configuration as written (Docker's and OCI's share this).
#[derive(Deserialize)]
struct RawConfig {
    created: Option<String>,
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
    config: Option<RawRunConfig>,
    #[serde(default)]
    history: Vec<RawHistory>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRunConfig {
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawHistory {
    created: Option<String>,
    created_by: Option<String>,
    comment: Option<String>,
    #[serde(default)]
    empty_layer: bool,
}

impl ImageFacts {
    /// The facts of an image configuration blob; `None` when it is not one
    /// (a malformed config is an artifact's business, not an error).
    pub fn from_config(bytes: &[u8]) -> Option<ImageFacts> {
        let raw: RawConfig = serde_json::from_slice(bytes).ok()?;
        let config = raw.config.map(|c| RunConfig {
            env: c.env.unwrap_or_default(),
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
            volumes: c.volumes.unwrap_or_default().into_keys().collect(),
            labels: c.labels.unwrap_or_default(),
        });
        Some(ImageFacts {
            created: raw.created,
            os: raw.os,
            architecture: raw.architecture,
            variant: raw.variant,
            config,
            history: raw
                .history
                .into_iter()
                .map(|h| HistoryEntry {
                    created: h.created,
                    created_by: h.created_by,
                    comment: h.comment,
                    empty_layer: h.empty_layer,
                })
                .collect(),
            platforms: Vec::new(),
        })
    }

    /// The facts of an index: its children's platforms.
    pub fn from_index(parsed: &ParsedManifest) -> ImageFacts {
        let text = |platform: &serde_json::Value, key: &str| {
            platform
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let platforms = parsed
            .manifests
            .iter()
            .map(|child| {
                let platform = child.platform.clone().unwrap_or_default();
                Platform {
                    digest: child.digest.to_string(),
                    os: text(&platform, "os").unwrap_or_default(),
                    architecture: text(&platform, "architecture").unwrap_or_default(),
                    variant: text(&platform, "variant"),
                }
            })
            .collect();
        ImageFacts {
            platforms,
            ..ImageFacts::default()
        }
    }
}

impl Registry {
    /// One page of the tags of `repository` with the images they name (see
    /// `ImageStore::list_tagged_images`), with their facts: searched by
    /// part of a name and sorted by name, age or size. Fails with
    /// `NameUnknown` for an unknown repository.
    pub async fn list_tagged_images(
        &self,
        repository: &RepoName,
        query: &TagQuery,
    ) -> Result<Vec<(Tag, berth_meta::Timestamp, Image)>, RegistryError> {
        let rows = self
            .meta()
            .list_tagged_images(repository, query)
            .await?
            .ok_or(RegistryError::NameUnknown)?;
        let mut tagged = Vec::with_capacity(rows.len());
        for row in rows {
            let image = self.with_facts(repository, row.image).await?;
            tagged.push((row.tag, row.updated_at, image));
        }
        Ok(tagged)
    }

    /// One page of the images of `repository` (see `ImageStore::list_images`),
    /// with their facts; fails with `NameUnknown` for an unknown repository.
    pub async fn list_images(
        &self,
        repository: &RepoName,
        filter: TaggedFilter,
        after: Option<&ImageCursor>,
        limit: usize,
    ) -> Result<Vec<Image>, RegistryError> {
        let summaries = self
            .meta()
            .list_images(repository, filter, after, limit)
            .await?
            .ok_or(RegistryError::NameUnknown)?;
        let mut images = Vec::with_capacity(summaries.len());
        for summary in summaries {
            images.push(self.with_facts(repository, summary).await?);
        }
        Ok(images)
    }

    /// Repositories with their counts, size and last push (see
    /// `ImageStore::list_repository_summaries`).
    pub async fn repository_summaries(
        &self,
        query: &RepositoryQuery,
    ) -> Result<Vec<RepositorySummary>, RegistryError> {
        Ok(self.meta().list_repository_summaries(query).await?)
    }

    /// Everything about the image `reference` names in `repository`.
    pub async fn inspect_image(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<ImageDetails, RegistryError> {
        let record = self.get_manifest(repository, reference).await?;
        let summary = self
            .meta()
            .image(repository, &record.digest)
            .await?
            .ok_or(RegistryError::ManifestUnknown)?;
        let image = self.with_facts(repository, summary).await?;
        let referrers = self
            .meta()
            .referrers(
                repository,
                &record.digest,
                None,
                None,
                MAX_INSPECT_REFERRERS,
                self.config().referrer_annotation_bytes,
            )
            .await?;
        Ok(ImageDetails {
            image,
            record,
            referrers,
        })
    }

    /// Points `tag` of `target` at the image `reference` names in `source`,
    /// server-side: the blobs are mounted (no bytes move) and the manifest
    /// (an index with its children first) is stored in `target` through the
    /// same path as a push, so it is validated and writes its events.
    pub async fn tag_image(
        &self,
        actor: &Actor,
        source: &RepoName,
        reference: &Reference,
        target: &RepoName,
        tag: &Tag,
    ) -> Result<Digest, RegistryError> {
        let record = self.get_manifest(source, reference).await?;
        self.copy_children(actor, source, target, &record, 0)
            .await?;
        self.mount_references(actor, source, target, &record)
            .await?;
        let put = self
            .put_manifest(
                actor,
                target,
                &Reference::Digest(record.digest.clone()),
                std::slice::from_ref(tag),
                Some(&record.media_type),
                record.payload.clone(),
            )
            .await?;
        Ok(put.digest)
    }

    /// Deletes a tag of `repository`, leaving its image.
    pub async fn untag_image(
        &self,
        actor: &Actor,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<(), RegistryError> {
        self.delete_manifest(actor, repository, &Reference::Tag(tag.clone()))
            .await
    }

    /// Deletes the image `reference` names (a tag names the image it points
    /// at) with every tag pointing at it, as the OCI API's delete by digest
    /// does. Returns the digest deleted.
    pub async fn delete_image(
        &self,
        actor: &Actor,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<Digest, RegistryError> {
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(_) => self
                .get_manifest(repository, reference)
                .await?
                .digest
                .clone(),
        };
        self.delete_manifest(actor, repository, &Reference::Digest(digest.clone()))
            .await?;
        Ok(digest)
    }

    /// Stores an index's children (recursively) in `target`, each with its
    /// blobs mounted, before the index itself.
    async fn copy_children(
        &self,
        actor: &Actor,
        source: &RepoName,
        target: &RepoName,
        record: &ManifestRecord,
        depth: usize,
    ) -> Result<(), RegistryError> {
        let parsed = parse(record)?;
        if parsed.manifests.is_empty() {
            return Ok(());
        }
        if depth >= MAX_INDEX_DEPTH {
            return Err(RegistryError::ManifestInvalid(format!(
                "indexes nest more than {MAX_INDEX_DEPTH} deep"
            )));
        }
        for child in &parsed.manifests {
            let child = self
                .meta()
                .manifest_by_digest(source, &child.digest)
                .await?
                .ok_or_else(|| RegistryError::ManifestBlobUnknown(vec![child.digest.clone()]))?;
            Box::pin(self.copy_children(actor, source, target, &child, depth + 1)).await?;
            self.mount_references(actor, source, target, &child).await?;
            self.put_manifest(
                actor,
                target,
                &Reference::Digest(child.digest.clone()),
                &[],
                Some(&child.media_type),
                child.payload.clone(),
            )
            .await?;
        }
        Ok(())
    }

    /// Mounts every blob `record` references from `source` into `target`.
    async fn mount_references(
        &self,
        actor: &Actor,
        source: &RepoName,
        target: &RepoName,
        record: &ManifestRecord,
    ) -> Result<(), RegistryError> {
        let parsed = parse(record)?;
        let mut missing = Vec::new();
        for blob in parsed.required_blobs() {
            if self
                .mount_blob(actor, target, source, &blob.digest)
                .await?
                .is_none()
            {
                missing.push(blob.digest.clone());
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::ManifestBlobUnknown(missing))
        }
    }

    /// The facts of the manifest `digest` of `repository`: `stored` when
    /// the store has them, else read (its config blob, once) and stored.
    /// `None` when the manifest is gone meanwhile.
    pub(crate) async fn facts_of(
        &self,
        repository: &RepoName,
        digest: &Digest,
        stored: Option<&str>,
    ) -> Result<Option<ImageFacts>, RegistryError> {
        if let Some(stored) = stored {
            return Ok(Some(serde_json::from_str(stored).unwrap_or_default()));
        }
        let Some(record) = self.meta().manifest_by_digest(repository, digest).await? else {
            return Ok(None);
        };
        let facts = self.read_facts(repository, &record).await?;
        let text = serde_json::to_string(&facts).map_err(|e| {
            RegistryError::Meta(berth_meta::MetaError::Corrupt(format!(
                "rendering image facts: {e}"
            )))
        })?;
        self.meta()
            .set_image_facts(repository, digest, &text)
            .await?;
        Ok(Some(facts))
    }

    /// `summary` with its facts, reading and storing them the first time.
    async fn with_facts(
        &self,
        repository: &RepoName,
        summary: ImageSummary,
    ) -> Result<Image, RegistryError> {
        if let Some(stored) = &summary.facts {
            // Facts this version cannot read (written by a later one) are
            // shown as none rather than failing the listing.
            let facts = serde_json::from_str(stored).unwrap_or_default();
            return Ok(Image { summary, facts });
        }
        let Some(record) = self
            .meta()
            .manifest_by_digest(repository, &summary.digest)
            .await?
        else {
            // Deleted between the listing and now: shown without facts.
            return Ok(Image {
                summary,
                facts: ImageFacts::default(),
            });
        };
        let facts = self.read_facts(repository, &record).await?;
        let text = serde_json::to_string(&facts).map_err(|e| {
            RegistryError::Meta(berth_meta::MetaError::Corrupt(format!(
                "rendering image facts: {e}"
            )))
        })?;
        self.meta()
            .set_image_facts(repository, &summary.digest, &text)
            .await?;
        Ok(Image { summary, facts })
    }

    /// Reads the facts of a manifest: its config blob's for an image, its
    /// children's platforms for an index, none for anything else.
    async fn read_facts(
        &self,
        repository: &RepoName,
        record: &ManifestRecord,
    ) -> Result<ImageFacts, RegistryError> {
        let parsed = parse(record)?;
        if parsed.kind.is_index() {
            return Ok(ImageFacts::from_index(&parsed));
        }
        let Some(config) = &parsed.config else {
            return Ok(ImageFacts::default());
        };
        if !IMAGE_CONFIG_TYPES.contains(&config.media_type.as_str())
            || config.size > MAX_CONFIG_BYTES
        {
            return Ok(ImageFacts::default());
        }
        let body = match self.read_blob(repository, &config.digest, None).await {
            Ok(body) => body,
            // A config the repository does not hold (an artifact's empty
            // config needs none): no facts.
            Err(RegistryError::BlobUnknown) => return Ok(ImageFacts::default()),
            Err(other) => return Err(other),
        };
        let chunks: Vec<bytes::Bytes> =
            body.stream
                .try_collect()
                .await
                .map_err(|e| RegistryError::Unavailable {
                    dependency: crate::Dependency::Storage,
                    reason: berth_storage::Unavailability::NotAnswering,
                    detail: format!("reading config blob {}: {e}", config.digest),
                })?;
        let bytes = chunks.concat();
        Ok(ImageFacts::from_config(&bytes).unwrap_or_default())
    }
}

/// Parses a stored manifest, which was validated when it was pushed.
fn parse(record: &ManifestRecord) -> Result<ParsedManifest, RegistryError> {
    ParsedManifest::parse(&record.payload, Some(&record.media_type)).map_err(|e| {
        RegistryError::Meta(berth_meta::MetaError::Corrupt(format!(
            "stored manifest {} does not parse: {e}",
            record.digest
        )))
    })
}

/// Whether `media_type` is an image configuration's (so a manifest with it
/// is an image, not an artifact).
pub fn is_image_config_type(media_type: &str) -> bool {
    IMAGE_CONFIG_TYPES.contains(&media_type)
}

/// Whether a manifest's media type is an index's.
pub fn is_index_media_type(media_type: &str) -> bool {
    media_type == media_types::OCI_INDEX || media_type == media_types::DOCKER_MANIFEST_LIST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_configs_give_their_facts() {
        let config = br#"{
            "created": "2026-01-02T03:04:05Z",
            "os": "linux", "architecture": "arm64", "variant": "v8",
            "config": {
                "Env": ["PATH=/bin"], "Entrypoint": ["/app"], "Cmd": ["--serve"],
                "WorkingDir": "/srv", "User": "1000",
                "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
                "Volumes": {"/data": {}},
                "Labels": {"org.opencontainers.image.title": "app"}
            },
            "history": [{"created_by": "COPY app /app"}, {"empty_layer": true, "comment": "c"}],
            "rootfs": {"type": "layers", "diff_ids": []}
        }"#;
        let facts = ImageFacts::from_config(config).unwrap();
        assert_eq!(facts.created.as_deref(), Some("2026-01-02T03:04:05Z"));
        assert_eq!(facts.os.as_deref(), Some("linux"));
        assert_eq!(facts.architecture.as_deref(), Some("arm64"));
        assert_eq!(facts.variant.as_deref(), Some("v8"));
        let run = facts.config.as_ref().unwrap();
        assert_eq!(run.env, ["PATH=/bin"]);
        assert_eq!(run.entrypoint, ["/app"]);
        assert_eq!(run.cmd, ["--serve"]);
        assert_eq!(run.working_dir, "/srv");
        assert_eq!(run.user, "1000");
        assert_eq!(run.exposed_ports, ["53/udp", "8080/tcp"]);
        assert_eq!(run.volumes, ["/data"]);
        assert_eq!(run.labels["org.opencontainers.image.title"], "app");
        assert_eq!(facts.history.len(), 2);
        assert_eq!(
            facts.history[0].created_by.as_deref(),
            Some("COPY app /app")
        );
        assert!(facts.history[1].empty_layer);
        // Stored and read back unchanged.
        let text = serde_json::to_string(&facts).unwrap();
        assert_eq!(serde_json::from_str::<ImageFacts>(&text).unwrap(), facts);
        // (input, whether it is an image configuration)
        for (input, is_config) in [
            (&b"{}"[..], true),
            (b"{\"config\": null}", true),
            (b"not json", false),
            (b"[1]", false),
        ] {
            assert_eq!(ImageFacts::from_config(input).is_some(), is_config);
        }
    }
}
