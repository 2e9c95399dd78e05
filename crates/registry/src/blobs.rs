//! Reading, mounting and unlinking blobs.

use berth_meta::{Actor, Change};
use berth_oci::{ByteRange, Digest, RepoName};
use berth_storage::BlobBody;

use crate::{Registry, RegistryError};

impl Registry {
    /// The size of a blob visible through `repository`.
    pub async fn blob_size(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<u64, RegistryError> {
        if let Some(size) = self.inner.blob_cache.get(repository, digest) {
            return Ok(size);
        }
        let ticket = self.inner.cache_gate.ticket();
        let size = self
            .meta()
            .linked_blob_size(repository, digest)
            .await?
            .ok_or(RegistryError::BlobUnknown)?;
        self.inner
            .blob_cache
            .insert(repository, digest, size, ticket);
        Ok(size)
    }

    /// Streams a blob visible through `repository`, or a range of it. The range
    /// must have been checked against [`Registry::blob_size`]. For the
    /// registry's own reads (the scanner, image facts): neither counted as
    /// traffic nor refused by a traffic quota; a client's GET goes through
    /// [`Registry::serve_blob`].
    pub async fn read_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, RegistryError> {
        // The link is checked first so that a blob stored for another
        // repository is never readable through this one.
        self.blob_size(repository, digest).await?;
        Ok(self.blobs().read_blob(digest, range).await?)
    }

    /// [`Registry::read_blob`] for a client's GET: refused with
    /// `TrafficQuotaExceeded` once the namespace has served its monthly
    /// limit, and counted as traffic (the range's bytes, or the blob's).
    pub async fn serve_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, RegistryError> {
        let size = self.blob_size(repository, digest).await?;
        self.admit_traffic(repository.namespace())?;
        let blob = self.blobs().read_blob(digest, range).await?;
        self.count_traffic(
            repository.namespace(),
            range.map_or(size, |range| range.len()),
        );
        Ok(blob)
    }

    /// A short-lived URL from which the client may fetch the blob directly,
    /// when redirects are enabled and the backend can presign; `None` means
    /// the registry streams the bytes itself. A client's GET: refused and
    /// counted as [`Registry::serve_blob`] is, the whole blob counted.
    pub async fn blob_redirect(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<String>, RegistryError> {
        let Some(expiry) = self.config().redirect_expiry else {
            return Ok(None);
        };
        // The link check keeps redirects within what the repository may see.
        let size = self.blob_size(repository, digest).await?;
        self.admit_traffic(repository.namespace())?;
        let url = self.blobs().presigned_get(digest, expiry).await?;
        // A redirect serves the whole blob, from storage instead of here.
        if url.is_some() {
            self.count_traffic(repository.namespace(), size);
        }
        Ok(url.map(|url| url.to_string()))
    }

    /// Removes the blob from `repository`. Its bytes stay in storage for
    /// other repositories and for garbage collection to decide.
    pub async fn delete_blob(
        &self,
        actor: &Actor,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        self.inner.blob_cache.invalidate(repository);
        let unlinked = self
            .meta()
            .unlink_blob(&self.change(actor), repository, digest)
            .await;
        self.inner.blob_cache.invalidate(repository);
        if unlinked? {
            self.settle().await;
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown)
        }
    }

    /// Makes a blob of `from` visible through `repository` without copying.
    /// Returns `None` when `from` does not hold it (the caller then starts an
    /// ordinary upload, as the spec requires).
    pub async fn mount_blob(
        &self,
        actor: &Actor,
        repository: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, RegistryError> {
        let Some(size) = self.meta().linked_blob_size(from, digest).await? else {
            return Ok(None);
        };
        // The source link proves the bytes were verified when first pushed;
        // the link is checked against storage afterwards because garbage
        // collection may have removed the source link and the bytes since.
        let change = self.change(actor);
        let linked = self
            .meta()
            .link_blob(&change, repository, digest, size)
            .await
            .map_err(RegistryError::from);
        match self
            .check_linked_bytes(&change, repository, digest, linked)
            .await
        {
            Ok(()) => Ok(Some(size)),
            Err(RegistryError::BlobBeingCollected) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The repositories holding `digest`, by name, after `after`, at most
    /// `limit`: the sources a mount that names none may use, for the caller
    /// to filter by what it may pull and then [`Registry::mount_blob`] from.
    pub async fn blob_holders(
        &self,
        digest: &Digest,
        after: Option<&RepoName>,
        limit: usize,
    ) -> Result<Vec<RepoName>, RegistryError> {
        Ok(self
            .meta()
            .repositories_with_blob(digest, after, limit)
            .await?)
    }

    /// Checks, after a blob whose bytes were stored (or found stored) was
    /// linked into `repository` (`linked` is how the link went), that the
    /// bytes are still there.
    ///
    /// This is the push side of the garbage-collection protocol (see
    /// "Deletion and garbage collection" in ARCHITECTURE.md): the link is
    /// refused while a collection is deleting the digest, and if the bytes
    /// vanished between storing and linking (a collection finished in
    /// between) the new link is taken back, because from the moment the link
    /// exists no later collection can delete the bytes, so bytes seen after
    /// linking are bytes that stay.
    pub(crate) async fn check_linked_bytes(
        &self,
        change: &Change,
        repository: &RepoName,
        digest: &Digest,
        linked: Result<(), RegistryError>,
    ) -> Result<(), RegistryError> {
        linked?;
        if self.blobs().blob_size(digest).await?.is_none() {
            tracing::warn!(%digest, "blob bytes vanished before linking; asking for a re-push");
            self.meta().unlink_blob(change, repository, digest).await?;
            self.inner.blob_cache.invalidate(repository);
            return Err(RegistryError::BlobBeingCollected);
        }
        Ok(())
    }
}
