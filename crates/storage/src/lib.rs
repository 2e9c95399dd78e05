//! Content-addressed blob storage.
//!
//! # Layout
//!
//! - [`BlobStore`]: the trait every backend implements, with its contract.
//! - [`fs`]: the filesystem backend (the default, single-node).
//! - `s3` (feature `s3`): the S3-compatible object store backend, for several
//!   stateless nodes on one bucket.
//! - `suite`: the shared test suite every backend must pass.
//!
//! A backend stores bytes under their digest and holds in-progress uploads. It
//! knows nothing of repositories, manifests, tags or HTTP: which repository may
//! see which blob is the metadata store's business. It never makes a blob
//! visible under a digest it has not itself verified over the exact bytes.

use std::pin::Pin;
use std::sync::Arc;

use berth_oci::{ByteRange, Digest, UploadId};
use bytes::Bytes;
use futures::Stream;

pub mod fs;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite;

/// A stream of bytes flowing into or out of the store.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// How far an upload has come. The caller persists it (in the metadata store)
/// between requests and hands the latest one back with the next call, so that
/// any node can continue an upload another node started.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadProgress {
    /// Bytes received so far.
    pub size: u64,
    /// The serialized sha256 state over those bytes (see `berth_oci::Hasher::to_state`),
    /// so finishing never re-reads the data when the client's digest is sha256.
    pub hash_state: Vec<u8>,
    /// Backend-specific state (for S3: the multipart upload id and parts), opaque
    /// to callers.
    #[serde(default)]
    pub backend_state: serde_json::Value,
}

/// A blob (or part of one) being read.
pub struct BlobBody {
    /// Bytes in `stream`.
    pub len: u64,
    pub stream: ByteStream,
    /// The same `len` bytes as a region of a local file, when the backend
    /// keeps the blob in one: a server may hand them from the file to its
    /// socket (`sendfile`) instead of reading `stream`. A caller reads one
    /// or the other, never both.
    pub file: Option<FileRegion>,
}

impl BlobBody {
    /// A body that is only a stream.
    pub fn streamed(len: u64, stream: ByteStream) -> BlobBody {
        BlobBody {
            len,
            stream,
            file: None,
        }
    }
}

/// Where a blob's bytes lie in a local file. Either the file is a committed
/// blob, which nothing writes or truncates while it exists (an `unlink`
/// leaves an open file intact), so the region reads back exactly the blob's
/// bytes; or it is still being written (`growing`), and only the bytes its
/// [`Growing`] says are readable may be read.
#[derive(Clone, Debug)]
pub struct FileRegion {
    pub file: Arc<std::fs::File>,
    /// Where the bytes start in the file.
    pub offset: u64,
    /// `None` for a committed blob; for one still arriving (a pull-through
    /// fetch served while it is stored), how far it may be read.
    pub growing: Option<Arc<dyn Growing>>,
}

impl FileRegion {
    /// The region of a committed blob's file from `offset` on.
    pub fn committed(file: Arc<std::fs::File>, offset: u64) -> FileRegion {
        FileRegion {
            file,
            offset,
            growing: None,
        }
    }
}

/// A blob file still being written, read while it grows: an upload's file
/// (see [`BlobStore::open_upload_file`]) that its writer reports on.
pub trait Growing: Send + Sync + std::fmt::Debug {
    /// Waits until more than `have` bytes of the region may be read, and
    /// returns how many may, counted from the region's offset. It returns
    /// the body's whole length only once every byte is written and the
    /// digest verified, so a reader never completes a body that turns out
    /// wrong. Fails when the write failed; the bytes read so far must then
    /// be treated as a broken transfer.
    fn readable(&self, have: u64) -> futures::future::BoxFuture<'static, std::io::Result<u64>>;

    /// [`Growing::readable`], holding the implementation to its word: an
    /// answer of no more than `have` bytes is an error, so that a reader
    /// never waits in a loop on a file that stopped growing.
    fn more(&self, have: u64) -> futures::future::BoxFuture<'static, std::io::Result<u64>> {
        let readable = self.readable(have);
        Box::pin(async move {
            match readable.await? {
                now if now > have => Ok(now),
                _ => Err(std::io::Error::other("a growing file stopped growing")),
            }
        })
    }
}

/// Errors of a storage backend.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob not found")]
    BlobNotFound,
    #[error("upload not found")]
    UploadNotFound,
    /// The bytes received do not hash to the digest the client claimed.
    #[error("digest mismatch: computed {computed}")]
    DigestMismatch { computed: Digest },
    /// The upload's stored data does not agree with the progress handed in:
    /// another writer advanced it, or a crash lost data.
    #[error("upload progress conflict")]
    ProgressConflict,
    /// Reading the request body failed (client went away, body limit exceeded).
    #[error("reading the incoming data failed: {0}")]
    Incoming(std::io::Error),
    /// The store cannot do the work now, for a reason outside the request
    /// (see [`Unavailability`]). A write that fails so leaves nothing
    /// behind beyond what was there before it; the same call may succeed
    /// once the condition clears.
    #[error("storage unavailable ({reason}): {detail}")]
    Unavailable {
        reason: Unavailability,
        detail: String,
    },
    #[error("storage I/O error: {0}")]
    Io(std::io::Error),
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// Why a store is unavailable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailability {
    /// No space left (or a quota reached): an operator must make room.
    Full,
    /// The store refuses writes (a read-only filesystem or directory).
    ReadOnly,
    /// The object store does not answer, answers too slowly, or fails.
    NotAnswering,
}

impl std::fmt::Display for Unavailability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unavailability::Full => "full",
            Unavailability::ReadOnly => "read-only",
            Unavailability::NotAnswering => "not answering",
        })
    }
}

/// Filesystem errors that say the disk, not the request, is the problem
/// become `Unavailable`; the rest stay `Io`.
impl From<std::io::Error> for StorageError {
    fn from(error: std::io::Error) -> Self {
        use std::io::ErrorKind;
        let reason = match error.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Some(Unavailability::Full),
            // EROFS, and a data directory this process may not write to.
            ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
                Some(Unavailability::ReadOnly)
            }
            _ => None,
        };
        match reason {
            Some(reason) => StorageError::Unavailable {
                reason,
                detail: error.to_string(),
            },
            None => StorageError::Io(error),
        }
    }
}

/// A stored object found by [`BlobStore::list_blobs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    /// Seconds since the Unix epoch when the object was last written.
    pub modified: i64,
}

/// An upload found by [`BlobStore::list_uploads`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredUpload {
    pub id: UploadId,
    /// Seconds since the Unix epoch when the upload's data was last written.
    pub modified: i64,
}

/// Content-addressed blob storage with resumable uploads.
///
/// Contract common to all methods: they are safe to call concurrently from
/// several tasks and several processes sharing the same store, except that the
/// caller serializes calls that take the same upload's `UploadProgress` (the
/// metadata store holds a lease on the upload while a chunk is written).
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Returns the size of the blob stored under `digest`, or `None`.
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError>;

    /// Streams the blob, or the given part of it. `range` must lie within the
    /// blob (the caller checks it against the size it knows). Fails with
    /// `BlobNotFound` if absent.
    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, StorageError>;

    /// Removes the blob. Removing an absent blob succeeds.
    async fn delete_blob(&self, digest: &Digest) -> Result<(), StorageError>;

    /// Lists stored blobs whose digest text sorts after `after`, at most `limit`,
    /// in digest-text order. Used by the sweep that removes objects the metadata
    /// does not know, never on a request path.
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError>;

    /// Lists uploads (begun and neither finished nor aborted) whose id sorts
    /// after `after`, at most `limit`, in id order. Used by the upload purge
    /// to find upload data that no session owns any more, never on a
    /// request path.
    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<StoredUpload>, StorageError>;

    /// Starts an empty upload and returns its initial progress.
    async fn begin_upload(&self, id: &UploadId) -> Result<UploadProgress, StorageError>;

    /// Appends `data` at `progress.size` and returns the new progress. Data a
    /// failed earlier call left beyond `progress.size` is discarded first. The
    /// appended bytes are durable when this returns. On error the caller's
    /// `progress` is still valid.
    async fn write_chunk(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        data: ByteStream,
    ) -> Result<UploadProgress, StorageError>;

    /// Appends `data` like [`write_chunk`], as the last chunk of an upload
    /// that the caller finishes next with `finish_upload(…, expected)`. The
    /// appended bytes need not be durable when this returns: `finish_upload`
    /// makes them durable before it makes them a blob and before it reports
    /// a `DigestMismatch`, and need not when the blob exists already (the
    /// same bytes, pushed twice). A caller that does not go on to finish
    /// must treat the upload as it stood before this call: its `progress`
    /// stays valid, as after a failed write. The default writes a durable
    /// chunk; a backend overrides it when deferring the durability saves
    /// work, as the filesystem store does for uploads of a blob that is
    /// stored already or being uploaded by another request.
    ///
    /// [`write_chunk`]: BlobStore::write_chunk
    async fn write_last_chunk(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        data: ByteStream,
        expected: &Digest,
    ) -> Result<UploadProgress, StorageError> {
        let _ = expected;
        self.write_chunk(id, progress, data).await
    }

    /// Verifies that the upload's bytes hash to `expected` and makes them
    /// visible as that blob, atomically and durably; then removes the upload.
    /// If the blob already exists the upload is discarded and the existing blob
    /// kept. On `DigestMismatch` nothing becomes visible, the bytes are
    /// durable, and the upload remains finishable and abortable (a backend may
    /// refuse further writes to it with `ProgressConflict`, as S3 does once it
    /// assembled the data to hash it). Returns the blob's size.
    ///
    /// The outcomes, and what each leaves when the last chunk was written by
    /// [`write_last_chunk`] (whose bytes may not be durable yet):
    ///
    /// | outcome | the blob | the upload | the caller goes on from |
    /// |---|---|---|---|
    /// | `Ok`, blob absent before | the upload's bytes, durable | removed | nothing: done |
    /// | `Ok`, blob stored already | kept; the upload's bytes are discarded (the filesystem store never syncs them) | removed | nothing: done |
    /// | `DigestMismatch` | unchanged | kept, its bytes durable | the progress after the last chunk |
    /// | any other error | unchanged | kept, the last chunk's bytes perhaps lost | the progress before the last chunk |
    ///
    /// [`write_last_chunk`]: BlobStore::write_last_chunk
    async fn finish_upload(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        expected: &Digest,
    ) -> Result<u64, StorageError>;

    /// Removes an upload and its data. Removing an absent upload succeeds.
    async fn abort_upload(
        &self,
        id: &UploadId,
        progress: Option<&UploadProgress>,
    ) -> Result<(), StorageError>;

    /// The file an upload's data is written to, opened for reading, when
    /// the backend keeps uploads in local files; `None` when it does not
    /// (the default). The data is appended in order, so the bytes below the
    /// file's current length are the upload's first bytes; they stay so
    /// until a failed write cuts the file back (see [`write_chunk`]'s
    /// errors), the upload is aborted, or it is finished, when the same
    /// file becomes the blob's. Fails with `UploadNotFound` when absent.
    ///
    /// [`write_chunk`]: BlobStore::write_chunk
    async fn open_upload_file(
        &self,
        _id: &UploadId,
    ) -> Result<Option<std::fs::File>, StorageError> {
        Ok(None)
    }

    /// Whether the store answers and takes writes (used by `/readyz`);
    /// fails with `Unavailable` saying why not.
    async fn check_ready(&self) -> Result<(), StorageError>;

    /// A URL from which anyone holding it may `GET` the blob's bytes until
    /// `expires_in` has passed, for answering blob reads with a redirect
    /// (`redirect = true`) so that clients fetch straight from the object
    /// store. `None` when the backend cannot hand out such URLs (the
    /// filesystem), and the caller then serves the bytes itself. The blob's
    /// existence is not checked: the caller knows it from the metadata store,
    /// and a URL for an absent blob merely answers 404 when used.
    async fn presigned_get(
        &self,
        _digest: &Digest,
        _expires_in: std::time::Duration,
    ) -> Result<Option<url::Url>, StorageError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A growing file whose `readable` always answers `answer`.
    #[derive(Debug)]
    struct Answers(std::io::Result<u64>);

    impl Growing for Answers {
        fn readable(
            &self,
            _have: u64,
        ) -> futures::future::BoxFuture<'static, std::io::Result<u64>> {
            let answer = match &self.0 {
                Ok(n) => Ok(*n),
                Err(error) => Err(std::io::Error::other(error.to_string())),
            };
            Box::pin(async move { answer })
        }
    }

    #[tokio::test]
    async fn more_holds_a_growing_file_to_more_than_the_reader_has() {
        // (answer, bytes the reader has, what `more` gives)
        let cases: &[(std::io::Result<u64>, u64, Option<u64>)] = &[
            (Ok(10), 4, Some(10)),
            (Ok(5), 4, Some(5)),
            (Ok(4), 4, None),
            (Ok(3), 4, None),
            (Ok(0), 0, None),
            (Err(std::io::Error::other("the fetch failed")), 4, None),
        ];
        for (answer, have, expected) in cases {
            let answer = match answer {
                Ok(n) => Ok(*n),
                Err(error) => Err(std::io::Error::other(error.to_string())),
            };
            let got = Answers(answer).more(*have).await.ok();
            assert_eq!(got, *expected, "have {have}");
        }
    }
}
