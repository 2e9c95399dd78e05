//! Manifests, tags and referrers.

use std::sync::Arc;

use berth_meta::{Actor, ManifestRecord, NewManifest};
use berth_oci::manifest::{media_types, ManifestError, MAX_MANIFEST_SIZE};
use berth_oci::{Digest, ParsedManifest, Reference, RepoName, Tag};

use crate::{Registry, RegistryError};

/// The outcome of storing a manifest.
#[derive(Clone, Debug)]
pub struct ManifestPut {
    pub digest: Digest,
    /// The manifest's subject, echoed in the `OCI-Subject` header.
    pub subject: Option<Digest>,
    /// Tags set from `?tag=` parameters, echoed in `OCI-Tag` headers.
    pub tags: Vec<Tag>,
}

/// The referrers of a manifest, rendered as an OCI image index.
#[derive(Clone, Debug)]
pub struct ReferrersIndex {
    /// The JSON body.
    pub body: Vec<u8>,
    /// Whether an `artifactType` filter was applied (`OCI-Filters-Applied`).
    pub filtered: bool,
}

impl Registry {
    /// Validates and stores a manifest pushed under `reference`, and points
    /// `extra_tags` at it as well (the spec's `?tag=` parameters on a push by
    /// digest).
    pub async fn put_manifest(
        &self,
        actor: &Actor,
        repository: &RepoName,
        reference: &Reference,
        extra_tags: &[Tag],
        content_type: Option<&str>,
        payload: Vec<u8>,
    ) -> Result<ManifestPut, RegistryError> {
        if payload.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestTooLarge(MAX_MANIFEST_SIZE));
        }
        // A push by digest is hashed with that digest's algorithm, so sha512
        // manifests keep their sha512 identity; a push by tag uses sha256.
        let digest = match reference {
            Reference::Digest(claimed) => {
                let computed = claimed.algorithm().digest_of(&payload);
                if &computed != claimed {
                    return Err(RegistryError::DigestInvalid(format!(
                        "manifest digest is {computed}, not {claimed}"
                    )));
                }
                computed
            }
            Reference::Tag(_) => berth_oci::Algorithm::Sha256.digest_of(&payload),
        };
        let parsed = ParsedManifest::parse(&payload, content_type).map_err(|e| match e {
            ManifestError::TooLarge => RegistryError::ManifestTooLarge(MAX_MANIFEST_SIZE),
            other => RegistryError::ManifestInvalid(other.to_string()),
        })?;
        let mut blobs: Vec<Digest> = parsed.required_blobs().map(|d| d.digest.clone()).collect();
        blobs.sort();
        blobs.dedup();
        let mut children: Vec<Digest> = parsed.manifests.iter().map(|d| d.digest.clone()).collect();
        children.sort();
        children.dedup();
        let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
        let annotations = parsed
            .annotations
            .as_ref()
            .map(|a| serde_json::to_string(a).unwrap_or_else(|_| "{}".to_string()));
        let manifest = NewManifest {
            record: ManifestRecord {
                digest: digest.clone(),
                media_type: parsed.media_type.to_string(),
                artifact_type: parsed.artifact_type.clone(),
                subject: subject.clone(),
                annotations,
                payload,
            },
            blobs,
            children,
        };
        let tag = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        let change = self.change(actor);
        self.meta()
            .put_manifest(&change, repository, &manifest, tag)
            .await?;
        // Storing an existing manifest again only moves the tag, so each
        // further tag costs one short transaction.
        for extra in extra_tags {
            self.meta()
                .put_manifest(&change, repository, &manifest, Some(extra))
                .await?;
        }
        self.inner.manifest_cache.invalidate(repository);
        Ok(ManifestPut {
            digest,
            subject,
            tags: extra_tags.to_vec(),
        })
    }

    /// Fetches a manifest by tag or digest.
    pub async fn get_manifest(
        &self,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<Arc<ManifestRecord>, RegistryError> {
        if let Some(hit) = self.inner.manifest_cache.get(repository, reference) {
            return Ok(hit);
        }
        let found = match reference {
            Reference::Tag(tag) => self.meta().manifest_by_tag(repository, tag).await?,
            Reference::Digest(digest) => self.meta().manifest_by_digest(repository, digest).await?,
        };
        let record = Arc::new(found.ok_or(RegistryError::ManifestUnknown)?);
        self.inner
            .manifest_cache
            .insert(repository, reference, record.clone());
        Ok(record)
    }

    /// Deletes by reference: a digest deletes the manifest and its tags (and,
    /// when `delete_referrers` is configured, its referrers, recursively); a
    /// tag deletes only the tag. A manifest an index of the repository lists
    /// is refused with `ManifestReferenced`. What the deletion leaves
    /// unreferenced is reclaimed by garbage collection after the grace period.
    pub async fn delete_manifest(
        &self,
        actor: &Actor,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        // Invalidated before and after: a reader that refilled the cache
        // between the two sees the change no later than the second call.
        self.inner.manifest_cache.invalidate(repository);
        let result = self
            .delete_manifest_uncached(actor, repository, reference)
            .await;
        self.inner.manifest_cache.invalidate(repository);
        result
    }

    async fn delete_manifest_uncached(
        &self,
        actor: &Actor,
        repository: &RepoName,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        let change = self.change(actor);
        match reference {
            Reference::Tag(tag) => {
                if self.meta().delete_tag(&change, repository, tag).await? {
                    Ok(())
                } else {
                    Err(RegistryError::ManifestUnknown)
                }
            }
            Reference::Digest(digest) => {
                let deleted = self
                    .meta()
                    .delete_manifest(&change, repository, digest, self.config().delete_referrers)
                    .await?;
                match deleted {
                    Some(_) => Ok(()),
                    None => Err(RegistryError::ManifestUnknown),
                }
            }
        }
    }

    /// Lists tags, or fails with `NameUnknown` for an unknown repository.
    pub async fn list_tags(
        &self,
        repository: &RepoName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tag>, RegistryError> {
        self.meta()
            .list_tags(repository, after, limit)
            .await?
            .ok_or(RegistryError::NameUnknown)
    }

    /// Renders the referrers of `subject` in `repository` as an image index.
    pub async fn referrers(
        &self,
        repository: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ReferrersIndex, RegistryError> {
        let referrers = self
            .meta()
            .referrers(repository, subject, artifact_type)
            .await?;
        let manifests: Vec<serde_json::Value> = referrers
            .into_iter()
            .map(|r| {
                let mut descriptor = serde_json::json!({
                    "mediaType": r.media_type,
                    "digest": r.digest,
                    "size": r.size,
                });
                if let Some(t) = r.artifact_type {
                    descriptor["artifactType"] = serde_json::Value::String(t);
                }
                if let Some(a) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
                {
                    descriptor["annotations"] = a;
                }
                descriptor
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": manifests,
        });
        let body = serde_json::to_vec(&index).map_err(|e| {
            RegistryError::Meta(berth_meta::MetaError::Corrupt(format!(
                "rendering referrers: {e}"
            )))
        })?;
        Ok(ReferrersIndex {
            body,
            filtered: artifact_type.is_some(),
        })
    }
}
