//! Manifests, tags and referrers.

use std::sync::Arc;

use berth_meta::{Actor, ManifestRecord, NewManifest, Referrer};
use berth_oci::manifest::{ManifestError, MAX_MANIFEST_SIZE};
use berth_oci::{Digest, ParsedManifest, Reference, RepoName, Tag};
use bytes::Bytes;

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

/// One page of the referrers of a manifest: descriptors serialized one by
/// one, to be written out as an OCI image index without building it whole.
#[derive(Clone, Debug)]
pub struct ReferrersPage {
    /// Each descriptor as a JSON object, in digest order.
    pub descriptors: Vec<Bytes>,
    /// The digest the next page starts after, when there is a next page.
    pub next: Option<Digest>,
    /// Whether an `artifactType` filter was applied (`OCI-Filters-Applied`).
    pub filtered: bool,
}

/// What an image index holds around its `manifests` array.
const INDEX_HEAD: &str = concat!(
    r#"{"schemaVersion":2,"mediaType":""#,
    "application/vnd.oci.image.index.v1+json",
    r#"","manifests":["#
);
const INDEX_TAIL: &str = "]}";

impl ReferrersPage {
    /// The pieces of the JSON index in order: head, descriptors with commas
    /// between them, tail. Concatenated they are a valid OCI image index.
    pub fn into_index_pieces(self) -> impl Iterator<Item = Bytes> {
        let descriptors = self.descriptors.into_iter().enumerate().flat_map(|(i, d)| {
            let comma = (i > 0).then(|| Bytes::from_static(b","));
            comma.into_iter().chain(std::iter::once(d))
        });
        std::iter::once(Bytes::from_static(INDEX_HEAD.as_bytes()))
            .chain(descriptors)
            .chain(std::iter::once(Bytes::from_static(INDEX_TAIL.as_bytes())))
    }

    /// The length of the index [`ReferrersPage::into_index_pieces`] yields.
    pub fn index_len(&self) -> usize {
        let descriptors: usize = self.descriptors.iter().map(Bytes::len).sum();
        INDEX_HEAD.len() + INDEX_TAIL.len() + descriptors + self.descriptors.len().saturating_sub(1)
    }
}

/// Referrers read from the metadata store per query while a page fills:
/// with annotations capped, this bounds what one query brings into memory.
const REFERRERS_BATCH: usize = 64;

/// A referrers descriptor as the spec lists it.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerDescriptor<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
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
        // Every size a descriptor gives, checked against the stored blob in
        // the transaction that checks the links; a blob listed twice with two
        // sizes keeps both, so one of them is reported.
        let mut blob_sizes: Vec<(Digest, u64)> = parsed
            .required_blobs()
            .map(|d| (d.digest.clone(), d.size))
            .collect();
        blob_sizes.sort();
        blob_sizes.dedup();
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
            blob_sizes,
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
        // further tag costs one short transaction. One may be refused (an
        // immutable tag) after others moved: the caches forget them first.
        let mut extras = Ok(());
        for extra in extra_tags {
            extras = self
                .meta()
                .put_manifest(&change, repository, &manifest, Some(extra))
                .await;
            if extras.is_err() {
                break;
            }
        }
        self.inner.manifest_cache.invalidate(repository);
        // A tag put may move a tag other nodes have cached; a put by digest
        // only adds what no node caches (misses are not cached).
        if tag.is_some() || !extra_tags.is_empty() {
            self.settle().await;
        }
        extras?;
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
        let ticket = self.inner.cache_gate.ticket();
        let found = match reference {
            Reference::Tag(tag) => self.meta().manifest_by_tag(repository, tag).await?,
            Reference::Digest(digest) => self.meta().manifest_by_digest(repository, digest).await?,
        };
        let record = Arc::new(found.ok_or(RegistryError::ManifestUnknown)?);
        self.inner
            .manifest_cache
            .insert(repository, reference, record.clone(), ticket);
        Ok(record)
    }

    /// Deletes by reference: a digest deletes the manifest and its tags (and,
    /// when `delete_referrers` is configured, its referrers, recursively); a
    /// tag deletes only the tag. A manifest an index of the repository lists
    /// is refused with `ManifestReferenced`. A deleted manifest goes to the
    /// trash (restorable for `trash_retention`, see `trash.rs`); what its
    /// final deletion leaves unreferenced is reclaimed by garbage collection
    /// after the grace period.
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
        if result.is_ok() {
            self.settle().await;
        }
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
                // Into the trash, unless it is turned off: either way the
                // manifest is gone from the registry when this returns.
                let with_referrers = self.config().delete_referrers;
                let deleted = if self.config().trash_retention.is_zero() {
                    self.meta()
                        .delete_manifest(&change, repository, digest, with_referrers)
                        .await?
                } else {
                    self.meta()
                        .trash_manifest(&change, repository, digest, with_referrers)
                        .await?
                };
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

    /// One page of the referrers of `subject` in `repository`, starting
    /// after the digest `after` (the previous page's `next`).
    ///
    /// A page holds at most `referrers_page_size` descriptors and
    /// `referrers_page_bytes` bytes of index (but always one descriptor);
    /// annotations longer than `referrer_annotation_bytes` are left out of
    /// their descriptor, never cut. The metadata store is read in small
    /// batches while the page fills, so a request holds about one page and
    /// one batch in memory, however many referrers there are.
    pub async fn referrers(
        &self,
        repository: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        after: Option<&Digest>,
    ) -> Result<ReferrersPage, RegistryError> {
        let config = self.config();
        let max_descriptors = config.referrers_page_size.max(1);
        let mut page = ReferrersPage {
            descriptors: Vec::new(),
            next: None,
            filtered: artifact_type.is_some(),
        };
        let mut bytes = INDEX_HEAD.len() + INDEX_TAIL.len();
        let mut last = after.cloned();
        loop {
            let batch = self
                .meta()
                .referrers(
                    repository,
                    subject,
                    artifact_type,
                    last.as_ref(),
                    REFERRERS_BATCH,
                    config.referrer_annotation_bytes,
                )
                .await?;
            let exhausted = batch.len() < REFERRERS_BATCH;
            for referrer in batch {
                let descriptor = render_descriptor(&referrer)?;
                let added = descriptor.len() + usize::from(!page.descriptors.is_empty());
                let full = page.descriptors.len() == max_descriptors
                    || (!page.descriptors.is_empty()
                        && bytes + added > config.referrers_page_bytes);
                if full {
                    // This referrer opens the next page.
                    page.next = last;
                    return Ok(page);
                }
                bytes += added;
                page.descriptors.push(descriptor);
                last = Some(referrer.digest);
            }
            if exhausted {
                return Ok(page);
            }
        }
    }
}

/// A referrer as a descriptor in JSON. Annotations that do not parse as a
/// JSON object (they always do unless the database was edited) are left out
/// rather than failing the list.
fn render_descriptor(referrer: &Referrer) -> Result<Bytes, RegistryError> {
    let annotations = referrer
        .annotations
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok());
    let descriptor = ReferrerDescriptor {
        media_type: &referrer.media_type,
        digest: referrer.digest.as_str(),
        size: referrer.size,
        artifact_type: referrer.artifact_type.as_deref(),
        annotations,
    };
    serde_json::to_vec(&descriptor)
        .map(Bytes::from)
        .map_err(|e| {
            RegistryError::Meta(berth_meta::MetaError::Corrupt(format!(
                "rendering a referrer: {e}"
            )))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_render_as_image_indexes() {
        let descriptor = |n: u8| Bytes::from(format!(r#"{{"n":{n}}}"#));
        for count in [0, 1, 3] {
            let page = ReferrersPage {
                descriptors: (0..count).map(descriptor).collect(),
                next: None,
                filtered: false,
            };
            let len = page.index_len();
            let body: Vec<u8> = page.into_index_pieces().flatten().collect();
            assert_eq!(body.len(), len, "{count}");
            let index: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(index["schemaVersion"], 2);
            assert_eq!(
                index["mediaType"],
                berth_oci::manifest::media_types::OCI_INDEX
            );
            let listed: Vec<u64> = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["n"].as_u64().unwrap())
                .collect();
            assert_eq!(listed, (0..u64::from(count)).collect::<Vec<_>>());
        }
    }
}
