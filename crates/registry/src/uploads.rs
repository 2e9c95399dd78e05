//! Upload sessions: start, append chunks, finish, cancel, and the monolithic
//! single-request form.
//!
//! An upload's progress (size, hash state, backend state) lives in the
//! metadata store, so any node can continue a session another node started.
//! Writing a chunk takes the session's lease in the metadata store first; the
//! lease makes writers of one session take turns, which is what lets the
//! storage backend discard bytes a failed earlier write left behind.
//!
//! Each lease is held under a name of its own, `<node name>/<random>`, so
//! two requests on one node exclude each other as requests on two nodes do,
//! and a node that restarts can release, by their common prefix, the leases
//! its earlier life held when it died ([`Registry::release_dead_upload_leases`]).
//!
//! A session's record never outlives its data: the data is created before
//! the record (`start_upload`) and the record is deleted before the data
//! (finishing, cancelling, purging). A crash between the two steps leaves
//! data without a record, which no client can name and the upload purge
//! sweeps (`jobs.rs`); never a record that answers for bytes that are gone.
//!
//! Finishing claims the session rather than leasing it: one statement
//! deletes the record if no other request holds its lease
//! ([`UploadStore::claim_upload`](berth_meta::UploadStore::claim_upload)),
//! which excludes other writers as a lease would (a claimed session is
//! unknown to them) and keeps the record-before-data order with one commit
//! fewer per blob. A crash after the claim leaves data without a record, as
//! a crash after the delete did; the claim is therefore taken only when
//! that loses no acknowledged bytes (see [`Registry::finish_upload`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use berth_meta::{Actor, UploadCaps, UploadOpening, UploadRecord};
use berth_oci::{ByteRange, Digest, RepoName, UploadId};
use berth_storage::{ByteStream, StorageError, UploadProgress};
use bytes::Bytes;
use futures::Stream;

use crate::{Registry, RegistryError};

/// Where an upload session stands, for the `Location` and `Range` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: UploadId,
    /// Bytes received so far.
    pub size: u64,
}

impl Registry {
    /// Opens a new upload session in `repository` for `actor`, unless the repository or the
    /// principal has as many sessions open as the configuration allows
    /// (`TooManyUploads`; the principal is the authenticated caller,
    /// [`Actor::principal`]). Sessions idle for longer than `upload_ttl` do not
    /// count: they are as good as purged.
    pub async fn start_upload(
        &self,
        actor: &Actor,
        repository: &RepoName,
    ) -> Result<UploadStatus, RegistryError> {
        let principal = actor.principal();
        let now = self.now();
        let config = self.config();
        let caps = UploadCaps {
            per_repository: config.max_uploads_per_repository,
            per_principal: config.max_uploads_per_principal,
            since: now.saturating_sub(config.upload_ttl.as_secs() as i64),
        };
        let id = UploadId::new_random();
        let progress = self.blobs().begin_upload(&id).await?;
        let record = UploadRecord {
            id: id.to_string(),
            repository: repository.clone(),
            created_at: now,
            updated_at: now,
            progress: encode_progress(&progress)?,
            principal: principal.map(str::to_string),
        };
        // The caps are checked as the record is written, in one statement;
        // a refused session's fresh storage state is dropped again.
        let opened = self
            .meta()
            .open_upload(&self.change(actor), &record, &caps)
            .await;
        let live = match opened {
            Ok(UploadOpening::Opened) => None,
            Ok(UploadOpening::Full(live)) => Some(live),
            Err(e) => {
                let _ = self.blobs().abort_upload(&id, Some(&progress)).await;
                return Err(e.into());
            }
        };
        if let Some(live) = live {
            let _ = self.blobs().abort_upload(&id, Some(&progress)).await;
            return Err(match principal {
                Some(principal) if live.in_repository < caps.per_repository => {
                    RegistryError::TooManyUploads {
                        who: principal.to_string(),
                        limit: caps.per_principal,
                    }
                }
                _ => RegistryError::TooManyUploads {
                    who: format!("repository {repository}"),
                    limit: caps.per_repository,
                },
            });
        }
        Ok(UploadStatus {
            id,
            size: progress.size,
        })
    }

    /// Reports how many bytes a session holds.
    pub async fn upload_status(
        &self,
        repository: &RepoName,
        id: &UploadId,
    ) -> Result<UploadStatus, RegistryError> {
        let record = self
            .meta()
            .get_upload(repository, &id.to_string())
            .await?
            .ok_or(RegistryError::UploadUnknown)?;
        let progress = decode_progress(&record)?;
        Ok(UploadStatus {
            id: id.clone(),
            size: progress.size,
        })
    }

    /// Appends a chunk. `range`, from `Content-Range`, must start at the
    /// bytes already received, and the chunk must be exactly as long as it
    /// says (a chunk that is not leaves the session as it was); without a
    /// range the chunk is appended wherever the session ends (the spec's
    /// streamed upload).
    pub async fn append_chunk(
        &self,
        repository: &RepoName,
        id: &UploadId,
        range: Option<ByteRange>,
        data: ByteStream,
    ) -> Result<UploadStatus, RegistryError> {
        let lease = self
            .with_upload_lease(repository, id, |progress| check_start(range, progress))
            .await?;
        lease.write(self, data, range).await
    }

    /// Completes a session with an optional last chunk (which, like any
    /// chunk, must start where `range` says and be as long, if a range is
    /// given; without a last chunk only its start is checked): the bytes
    /// must hash to `digest`, after which the blob is linked into the
    /// repository.
    ///
    /// The session is claimed first: its record is deleted, in the one
    /// statement that also checks no other request holds its lease (see
    /// the module documentation for why the record goes before the data).
    /// A claim replaces the lease and the delete that finishing used to
    /// take, one metadata commit instead of two. It is taken only where
    /// losing the session to a crash loses nothing a client was told is
    /// stored: when no last chunk comes (nothing is written between the
    /// claim and the storage finish, as nothing was between the lease and
    /// the delete before) or when the session holds no bytes yet (the
    /// common `POST` then `PUT` with the whole blob, and the monolithic
    /// `POST`). A session holding acknowledged bytes that is finished with
    /// one more chunk is put back and finished under its lease instead, so
    /// that a crash while that chunk streams in leaves it to be resumed.
    pub async fn finish_upload(
        &self,
        actor: &Actor,
        repository: &RepoName,
        id: &UploadId,
        digest: &Digest,
        range: Option<ByteRange>,
        last_chunk: Option<ByteStream>,
    ) -> Result<u64, RegistryError> {
        let record = self
            .meta()
            .claim_upload(repository, &id.to_string(), self.now())
            .await?;
        // Until the storage finish, a failure puts the record back as it
        // was: the session stands as before, as a released lease left it.
        let checked = decode_progress(&record)
            .and_then(|progress| check_start(range, &progress).map(|()| progress));
        let progress = match checked {
            Ok(progress) => progress,
            Err(e) => {
                let _ = self.restore_record(actor, record).await;
                return Err(e);
            }
        };
        let progress = match last_chunk {
            None => progress,
            Some(data) if progress.size == 0 => {
                match write_held(self, id, &progress, data, range, Some(digest)).await {
                    Ok(written) => written,
                    Err(e) => {
                        // A failed write leaves the data as its progress
                        // says (the storage contract), so the old record
                        // is right for it.
                        let _ = self.restore_record(actor, record).await;
                        return Err(e);
                    }
                }
            }
            Some(data) => {
                self.restore_record(actor, record).await?;
                return self
                    .finish_under_lease(actor, repository, id, digest, range, data)
                    .await;
            }
        };
        self.finish_claimed(actor, repository, id, digest, record, progress)
            .await
    }

    /// Finishes a session whose record is deleted already (claimed, or
    /// deleted under its lease): makes the bytes the blob `digest` in
    /// storage, then links it with its events. A storage finish that fails
    /// restores the record with `progress`.
    async fn finish_claimed(
        &self,
        actor: &Actor,
        repository: &RepoName,
        id: &UploadId,
        digest: &Digest,
        record: UploadRecord,
        progress: UploadProgress,
    ) -> Result<u64, RegistryError> {
        let size = match self.blobs().finish_upload(id, &progress, digest).await {
            Ok(size) => size,
            Err(e) => {
                // Nothing became visible. After a mismatch the data is
                // there and durable (the storage contract), so the session
                // comes back with it, for the client to finish with the
                // right digest or more data. After any other failure a last
                // chunk's bytes may not be durable (`write_last_chunk`), so
                // the session comes back as it stood before that chunk, whose
                // request fails; the next write discards the bytes.
                let restored = match &e {
                    StorageError::DigestMismatch { .. } => {
                        encode_progress(&progress).ok().map(|text| UploadRecord {
                            progress: text,
                            updated_at: self.now(),
                            ..record
                        })
                    }
                    _ => Some(UploadRecord {
                        updated_at: self.now(),
                        ..record
                    }),
                };
                if let Some(restored) = restored {
                    let _ = self.restore_record(actor, restored).await;
                }
                return Err(e.into());
            }
        };
        // The session's record is gone already; the link is made, with the
        // `blob.linked` and `upload.finished` events, in one transaction.
        let change = self.change(actor);
        let linked = self
            .meta()
            .finish_upload(&change, repository, &record.id, digest, size)
            .await
            .map_err(RegistryError::from);
        self.check_linked_bytes(&change, repository, digest, linked)
            .await?;
        Ok(size)
    }

    /// Finishes a session with a last chunk under the session's lease, so
    /// that its record, and with it the bytes acknowledged before, survive
    /// a crash while the chunk streams in; the record is deleted once the
    /// chunk is written, before the storage finish.
    async fn finish_under_lease(
        &self,
        actor: &Actor,
        repository: &RepoName,
        id: &UploadId,
        digest: &Digest,
        range: Option<ByteRange>,
        last_chunk: ByteStream,
    ) -> Result<u64, RegistryError> {
        let lease = self
            .with_upload_lease(repository, id, |progress| check_start(range, progress))
            .await?;
        let progress = lease.write_keep(self, last_chunk, range).await?;
        if let Err(e) = self.meta().delete_upload(&lease.key).await {
            self.release_lease(&lease.key, &lease.holder).await;
            return Err(e.into());
        }
        self.finish_claimed(actor, repository, id, digest, lease.record, progress)
            .await
    }

    /// Stores a whole blob sent in one request (`POST ?digest=` with a body)
    /// for `actor`; it opens a session like [`Registry::start_upload`],
    /// and is refused the same way.
    pub async fn upload_monolithic(
        &self,
        actor: &Actor,
        repository: &RepoName,
        digest: &Digest,
        data: ByteStream,
    ) -> Result<u64, RegistryError> {
        // A session record is written even here, so that a crash mid-body
        // leaves a session the purge job finds and removes.
        let status = self.start_upload(actor, repository).await?;
        self.finish_monolithic(actor, repository, &status.id, digest, data)
            .await
    }

    /// Ends a monolithic upload begun by [`Registry::start_upload`]: writes
    /// `data` as its only chunk and finishes it, or cancels it when that
    /// fails.
    pub(crate) async fn finish_monolithic(
        &self,
        actor: &Actor,
        repository: &RepoName,
        id: &UploadId,
        digest: &Digest,
        data: ByteStream,
    ) -> Result<u64, RegistryError> {
        match self
            .finish_upload(actor, repository, id, digest, None, Some(data))
            .await
        {
            Ok(size) => Ok(size),
            Err(e) => {
                let _ = self.cancel_upload(repository, id).await;
                Err(e)
            }
        }
    }

    /// Cancels a session and removes its data.
    pub async fn cancel_upload(
        &self,
        repository: &RepoName,
        id: &UploadId,
    ) -> Result<(), RegistryError> {
        let record = self
            .meta()
            .get_upload(repository, &id.to_string())
            .await?
            .ok_or(RegistryError::UploadUnknown)?;
        let progress = decode_progress(&record).ok();
        self.meta().delete_upload(&record.id).await?;
        self.blobs().abort_upload(id, progress.as_ref()).await?;
        Ok(())
    }

    /// Releases the upload leases this node held before it last stopped
    /// (crashed, killed, or stopped mid-request), and returns how many.
    ///
    /// Call it once as the node starts, before it serves: every lease held
    /// under this node's name then belongs to a process that is gone. The
    /// node name must therefore be used by one process at a time (the
    /// binary keeps it in the data directory under a lock, or takes it
    /// from the configuration of a stateless node). Without this, a session
    /// whose chunk was being written at the crash answered 416 "being
    /// written by another request" until its lease expired.
    pub async fn release_dead_upload_leases(&self) -> Result<u64, RegistryError> {
        Ok(self
            .meta()
            .release_upload_leases(&lease_holder_prefix(&self.config().node_name))
            .await?)
    }

    /// Takes the session's write lease and checks `precondition` against its
    /// progress; the lease is released again if the check fails.
    async fn with_upload_lease(
        &self,
        repository: &RepoName,
        id: &UploadId,
        precondition: impl FnOnce(&UploadProgress) -> Result<(), RegistryError>,
    ) -> Result<Lease, RegistryError> {
        let key = id.to_string();
        let holder = format!(
            "{}{}",
            lease_holder_prefix(&self.config().node_name),
            uuid::Uuid::new_v4().simple()
        );
        let lease_secs = self.config().upload_lease.as_secs() as i64;
        let record = self
            .meta()
            .lock_upload(repository, &key, &holder, self.now(), lease_secs)
            .await?;
        let checked = decode_progress(&record)
            .and_then(|progress| precondition(&progress).map(|()| progress));
        match checked {
            Ok(progress) => Ok(Lease {
                id: id.clone(),
                key,
                holder,
                progress,
                record,
            }),
            Err(e) => {
                self.release_lease(&key, &holder).await;
                Err(e)
            }
        }
    }

    /// Stores the progress a write reached and releases the lease. If the
    /// database does not take it, the write is not acknowledged: the
    /// session keeps its earlier progress (the bytes beyond it are
    /// discarded by the next write), and the lease is released as soon as
    /// the database answers again.
    async fn store_progress_and_unlock(
        &self,
        lease: &Lease,
        progress: &UploadProgress,
    ) -> Result<(), RegistryError> {
        let text = match encode_progress(progress) {
            Ok(text) => text,
            Err(e) => {
                self.release_lease(&lease.key, &lease.holder).await;
                return Err(e);
            }
        };
        match self
            .meta()
            .update_upload(&lease.key, &lease.holder, &text, self.now())
            .await
        {
            Ok(()) => Ok(()),
            Err(e) => {
                self.release_lease(&lease.key, &lease.holder).await;
                Err(e.into())
            }
        }
    }

    /// Releases a lease without changing the session. When the database
    /// cannot be reached the release is retried in the background until it
    /// succeeds or the lease runs out on its own, so a session whose write
    /// failed during an outage is free again once the database is back,
    /// not only after the lease time.
    async fn release_lease(&self, key: &str, holder: &str) {
        let Err(error) = self.meta().unlock_upload(key, holder).await else {
            return;
        };
        tracing::warn!(upload = %key, %error, "cannot release an upload lease; retrying");
        let registry = self.clone();
        let key = key.to_string();
        let holder = holder.to_string();
        let give_up = tokio::time::Instant::now() + self.config().upload_lease;
        tokio::spawn(async move {
            let mut pause = LEASE_RELEASE_RETRY;
            while tokio::time::Instant::now() < give_up {
                tokio::time::sleep(pause).await;
                if registry.meta().unlock_upload(&key, &holder).await.is_ok() {
                    return;
                }
                pause = (pause * 2).min(LEASE_RELEASE_RETRY_MAX);
            }
        });
    }

    /// Puts back the record of a session whose finishing failed after its
    /// record was deleted. A failure is logged and returned: the data stays
    /// without a record and the purge sweeps it; the client, refused
    /// anyway, starts the upload again.
    async fn restore_record(
        &self,
        actor: &Actor,
        record: UploadRecord,
    ) -> Result<(), RegistryError> {
        let restored = self
            .meta()
            .create_upload(&self.change(actor), &record)
            .await
            .map_err(RegistryError::from);
        if let Err(error) = &restored {
            tracing::warn!(upload = %record.id, %error, "cannot restore an upload session");
        }
        restored
    }
}

/// The first pause before retrying a lease release that failed.
const LEASE_RELEASE_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

/// The longest pause between retries of a lease release.
const LEASE_RELEASE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// What every upload lease name of the node called `node_name` starts with.
fn lease_holder_prefix(node_name: &str) -> String {
    format!("{node_name}/")
}

/// A held upload lease with the progress read under it.
struct Lease {
    id: UploadId,
    key: String,
    /// The name the lease is held under, unique to this request.
    holder: String,
    progress: UploadProgress,
    /// The session's record as the lease found it, to restore it from.
    record: UploadRecord,
}

impl Lease {
    /// Writes a chunk (held to `range`'s length, if given), stores the new
    /// progress and releases the lease.
    async fn write(
        self,
        registry: &Registry,
        data: ByteStream,
        range: Option<ByteRange>,
    ) -> Result<UploadStatus, RegistryError> {
        let progress = self.write_keep(registry, data, range).await?;
        registry.store_progress_and_unlock(&self, &progress).await?;
        Ok(UploadStatus {
            id: self.id.clone(),
            size: progress.size,
        })
    }

    /// Writes a chunk and keeps the lease (for a final chunk that is finished
    /// right after). On failure the lease is released with the old progress,
    /// so the session stays as it was; that includes a chunk that turns out
    /// not to be as long as `range` declares.
    async fn write_keep(
        &self,
        registry: &Registry,
        data: ByteStream,
        range: Option<ByteRange>,
    ) -> Result<UploadProgress, RegistryError> {
        let written = write_held(registry, &self.id, &self.progress, data, range, None).await;
        if written.is_err() {
            registry.release_lease(&self.key, &self.holder).await;
        }
        written
    }
}

/// Writes a chunk after `progress`, held to `range`'s length if given (a
/// chunk that is not as long as its range declares fails with
/// `ChunkSizeMismatch`). The caller excludes other writers of the session,
/// by its lease or by having claimed it. With `last`, the chunk is the last
/// one of an upload the caller finishes next with that digest
/// ([`BlobStore::write_last_chunk`](berth_storage::BlobStore::write_last_chunk)).
async fn write_held(
    registry: &Registry,
    id: &UploadId,
    progress: &UploadProgress,
    data: ByteStream,
    range: Option<ByteRange>,
    last: Option<&Digest>,
) -> Result<UploadProgress, RegistryError> {
    let mismatch = Arc::new(AtomicBool::new(false));
    let data = match range {
        Some(range) => Box::pin(DeclaredLength {
            inner: data,
            declared: range.len(),
            seen: 0,
            done: false,
            mismatch: Arc::clone(&mismatch),
        }),
        None => data,
    };
    let written = match last {
        Some(digest) => {
            registry
                .blobs()
                .write_last_chunk(id, progress, data, digest)
                .await
        }
        None => registry.blobs().write_chunk(id, progress, data).await,
    };
    match written {
        Ok(progress) => Ok(progress),
        Err(e) => match range {
            Some(range) if mismatch.load(Ordering::Relaxed) => {
                Err(RegistryError::ChunkSizeMismatch {
                    declared: range.len(),
                    size: progress.size,
                })
            }
            _ => Err(e.into()),
        },
    }
}

/// A chunk's body held to the length its `Content-Range` declares: it fails
/// (and raises `mismatch`) as soon as the body runs past that length, or
/// when it ends short of it. The error makes the blob store's write fail,
/// and a failed write leaves the upload's recorded progress unchanged.
struct DeclaredLength {
    inner: ByteStream,
    declared: u64,
    seen: u64,
    done: bool,
    mismatch: Arc<AtomicBool>,
}

impl DeclaredLength {
    fn refuse(&mut self) -> Poll<Option<std::io::Result<Bytes>>> {
        self.done = true;
        self.mismatch.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the chunk's body is not the {} bytes its range declares",
                self.declared
            ),
        ))))
    }
}

impl Stream for DeclaredLength {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.declared {
                    return self.refuse();
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
            Poll::Ready(None) if self.seen != self.declared => self.refuse(),
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

/// Refuses a chunk whose claimed start is not where the upload ends.
fn check_start(range: Option<ByteRange>, progress: &UploadProgress) -> Result<(), RegistryError> {
    match range {
        Some(range) if range.start != progress.size => Err(RegistryError::ChunkOutOfOrder {
            given: range.start,
            expected: progress.size,
        }),
        _ => Ok(()),
    }
}

fn encode_progress(progress: &UploadProgress) -> Result<String, RegistryError> {
    serde_json::to_string(progress).map_err(|e| {
        RegistryError::Meta(berth_meta::MetaError::Corrupt(format!(
            "encoding upload progress: {e}"
        )))
    })
}

fn decode_progress(record: &UploadRecord) -> Result<UploadProgress, RegistryError> {
    serde_json::from_str(&record.progress).map_err(|e| {
        RegistryError::Meta(berth_meta::MetaError::Corrupt(format!(
            "upload {}: {e}",
            record.id
        )))
    })
}
