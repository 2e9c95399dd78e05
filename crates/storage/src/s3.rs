//! The S3 backend: blobs and uploads as objects in an S3-compatible store
//! (AWS S3, Ceph RGW, SeaweedFS, MinIO, Garage, R2), through `object_store`.
//!
//! # Layout
//!
//! ```text
//! <bucket>/<prefix>/
//! ├── blobs/
//! │   ├── sha256/<64 hex digits>      committed blobs, named by their digest
//! │   └── sha512/<128 hex digits>
//! └── uploads/<upload uuid>/
//!     ├── info                        marks the upload as begun (empty)
//!     ├── multipart-<uuid>            one per multipart upload begun for it:
//!     │                               holds its id, so aborting finds every one
//!     ├── tail-<size>                 the received bytes beyond the last whole
//!     │                               part, when the upload's size is <size>;
//!     │                               older tails go with the next write
//!     ├── data                        the assembled upload (the multipart
//!     │                               upload's key), only while finishing
//!     └── assembled                   which progress `data` was assembled from
//! ```
//!
//! # How an upload travels between nodes
//!
//! Nothing is kept in a node's memory or disk between calls: everything the
//! next call needs is in the objects above or in `UploadProgress`, whose
//! `backend_state` holds an `UploadState`: the part size, the multipart
//! upload id, the ETag of every part sent so far and the ETag of the current
//! tail. Every part but the last is exactly `part_size` bytes (S3 wants at least
//! 5 MiB; R2 wants them equal), so `parts × part_size + tail` is the size, and a
//! progress claiming anything else is refused as a conflict.
//!
//! A chunk is appended by reading the tail back, adding the chunk's bytes, and
//! sending every whole part as it fills; what is left becomes the new tail.
//! Parts sent by a call that later failed are past the caller's progress: a
//! retry sends new parts under the same numbers, and completion names only the
//! parts the progress lists, so they are discarded as the contract requires.
//!
//! # Why it is safe
//!
//! - A blob object is only ever written by copying an upload's `data` object
//!   after its digest was verified, either from the saved hash state over the
//!   very bytes that were sent, or by reading `data` back. (Above S3's 5 GiB
//!   copy limit the copy streams through this node into a multipart upload at
//!   the blob's key, which becomes visible only when complete.) Identical
//!   content may be copied over an existing blob by concurrent finishes, which
//!   readers cannot tell apart.
//! - Every multipart upload is recorded in its upload's directory before its
//!   first part is sent, so `abort_upload` (and hence the purge of expired
//!   sessions) aborts them all, even those a crashed call left out of the
//!   progress; stores charge for, and keep, unaborted multipart uploads. Only a
//!   crash between beginning a multipart upload and recording it (one request)
//!   escapes this; a bucket lifecycle rule aborting incomplete multipart
//!   uploads after some days is the backstop, as for every S3 client.
//! - Memory is bounded by about two parts per upload (the one being sent and
//!   the one filling): a stream is never gathered whole.
//!
//! # Limits
//!
//! A finish that had to assemble `data` to hash it (a sha512 digest, or a
//! progress without hash state) completes the multipart upload; if the digest
//! then mismatches, the upload can still be finished or aborted, but further
//! writes fail with `ProgressConflict`.

use std::time::Duration;

use berth_oci::{Algorithm, ByteRange, Digest, Hasher, UploadId};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};

use crate::{
    BlobBody, BlobStore, ByteStream, StorageError, StoredBlob, StoredUpload, UploadProgress,
};

/// The part size used unless configured otherwise: above S3's 5 MiB minimum
/// with room to spare, and small enough that many concurrent uploads fit in
/// memory, since one part is buffered per upload.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// S3's limit on CopyObject.
pub const DEFAULT_MAX_COPY_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// S3's minimum size of every part but the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

/// How long connecting to the store may take. A store that is up accepts
/// a connection in milliseconds and one that is down refuses it at once, but
/// a store on a machine whose cores are all busy (a CI runner, a node under
/// load) can take a second or more to accept; 2 s failed a write there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the store may stay silent, waiting for an answer or between
/// two reads of one, on calls that the store answers at once whatever the
/// data's size: looking up, listing, reading, deleting, writing the small
/// bookkeeping objects. A store slower than this is reported unavailable
/// (a `503` the client retries) instead of holding the request. Five
/// seconds, not two: SeaweedFS on a 2-core machine busy with other work took
/// just over 2 s to store a small bookkeeping object, and the push failed.
const QUICK_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The same for calls whose answer may take long by nature: sending a part
/// (up to the part size), completing a multipart upload, copying a blob,
/// all of which a store may work on for seconds before it answers.
const PATIENT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Retries of a quick call: one more try soon after a refused connection
/// or a `5xx`, and none once this long has passed since the first, so a
/// store that is down fails a request within about [`QUICK_READ_TIMEOUT`].
const QUICK_RETRY: Duration = Duration::from_secs(2);

/// Retries of a patient call, within the same kind of bound.
const PATIENT_RETRY: Duration = Duration::from_secs(10);

/// Where and how to reach the bucket. Built by the binary from its settings;
/// the library never reads the environment unless `from_env` says so.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket, which must exist: object stores create buckets through
    /// their own administration, not through a registry.
    pub bucket: String,
    /// The key prefix everything is stored under, without leading or trailing
    /// slash; empty for the bucket's root. Lets several registries share a
    /// bucket.
    pub prefix: String,
    /// The service URL for stores other than AWS (`http://127.0.0.1:8333`);
    /// `None` means AWS S3 in `region`.
    pub endpoint: Option<String>,
    /// The region requests are signed for; S3-compatible stores mostly accept
    /// anything, and `us-east-1` is their usual default.
    pub region: String,
    /// `true` addresses the bucket as `endpoint/bucket/key`, which most
    /// self-hosted stores need; `false` as `bucket.endpoint/key`, which AWS
    /// prefers.
    pub path_style: bool,
    /// Static credentials. Without them (and without `from_env`), object_store
    /// falls back to instance metadata, as on EC2.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// A session token accompanying temporary credentials.
    pub session_token: Option<String>,
    /// Allows a plain `http://` endpoint; off by default because credentials
    /// and blobs would cross the network in the clear.
    pub allow_http: bool,
    /// Starts from the `AWS_*` environment variables (explicit fields above
    /// still win). Off by default because library code never reads the
    /// environment on its own: the binary decides.
    pub from_env: bool,
    /// The size of every multipart part but the last, at least
    /// [`MIN_PART_SIZE`]. One part per upload in progress is held in memory.
    pub part_size: usize,
    /// Blobs up to this size are committed by a server-side copy; larger ones
    /// are streamed through this node into a multipart upload, because S3's
    /// CopyObject refuses objects above 5 GiB.
    pub max_copy_size: u64,
}

impl S3Config {
    /// A configuration for `s3://BUCKET/PREFIX` (the prefix may be empty or
    /// absent), with every other setting at its default.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        let invalid = |why: &str| StorageError::Backend(format!("invalid S3 URL {url:?}: {why}"));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it must start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("the bucket name is missing"));
        }
        let config = S3Config {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            ..S3Config::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks what can be checked without asking the store.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return Err(StorageError::Backend(format!(
                "invalid S3 bucket name {:?}",
                self.bucket
            )));
        }
        Path::parse(&self.prefix).map_err(|error| {
            StorageError::Backend(format!("invalid S3 prefix {:?}: {error}", self.prefix))
        })?;
        if self.part_size < MIN_PART_SIZE {
            return Err(StorageError::Backend(format!(
                "the S3 part size must be at least {MIN_PART_SIZE} bytes"
            )));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(StorageError::Backend(
                "an S3 access key id needs its secret access key, and the other way round".into(),
            ));
        }
        Ok(())
    }
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            allow_http: false,
            from_env: false,
            part_size: DEFAULT_PART_SIZE,
            max_copy_size: DEFAULT_MAX_COPY_SIZE,
        }
    }
}

/// Shows everything but the secrets, so a configuration can be logged.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "<hidden>");
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("from_env", &self.from_env)
            .field("part_size", &self.part_size)
            .field("max_copy_size", &self.max_copy_size)
            .finish()
    }
}

/// A [`BlobStore`] on an S3-compatible object store (see the module
/// documentation for the layout and the upload protocol).
#[derive(Clone, Debug)]
pub struct S3BlobStore {
    /// The client for quick calls (see [`QUICK_READ_TIMEOUT`]), cheap to
    /// clone; it keeps a connection pool.
    store: std::sync::Arc<AmazonS3>,
    /// The client for calls that may take long (see
    /// [`PATIENT_READ_TIMEOUT`]): parts, completions, copies.
    patient: std::sync::Arc<AmazonS3>,
    /// The key prefix, already validated, `""` for the bucket's root.
    prefix: String,
    /// The part size for uploads begun by this node; uploads keep the size
    /// they were begun with in their state, so nodes may differ.
    part_size: usize,
    /// The largest blob committed by a server-side copy.
    max_copy_size: u64,
}

/// What an upload's `UploadProgress::backend_state` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct UploadState {
    /// The size of every part but the last, fixed when the upload begins.
    part_size: u64,
    /// The multipart upload, begun when the first whole part is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart_id: Option<String>,
    /// The ETag of each part sent, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<String>,
    /// The bytes after the last whole part, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<TailState>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct TailState {
    /// Its length, always below the part size.
    len: u64,
    /// Its ETag, checked on every read, so a tail overwritten by a later call
    /// from an older progress is noticed instead of silently used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e_tag: Option<String>,
}

/// What the `assembled` object records: that `data` was assembled from the
/// progress with this fingerprint, so a finish repeated after a mismatch need
/// not (and, once the multipart upload is completed, cannot) assemble again.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct AssembledRecord {
    fingerprint: String,
    data_e_tag: Option<String>,
}

impl S3BlobStore {
    /// Builds the client. This does not contact the store; `check_ready` does.
    pub fn new(config: &S3Config) -> Result<Self, StorageError> {
        config.validate()?;
        Ok(S3BlobStore {
            store: std::sync::Arc::new(Self::client(config, QUICK_READ_TIMEOUT, QUICK_RETRY)?),
            patient: std::sync::Arc::new(Self::client(
                config,
                PATIENT_READ_TIMEOUT,
                PATIENT_RETRY,
            )?),
            prefix: config.prefix.clone(),
            part_size: config.part_size,
            max_copy_size: config.max_copy_size,
        })
    }

    /// A client whose calls fail when the store stays silent for
    /// `read_timeout`, retried until `retry_for` has passed.
    fn client(
        config: &S3Config,
        read_timeout: Duration,
        retry_for: Duration,
    ) -> Result<AmazonS3, StorageError> {
        let mut builder = if config.from_env {
            AmazonS3Builder::from_env()
        } else {
            AmazonS3Builder::new()
        };
        // object_store's default limits a whole request to 30 seconds, which
        // would cut off a large blob streamed to a slow client or a part sent
        // over a slow link. Instead, a request fails when the store sends
        // nothing for `read_timeout` while we wait for it.
        let client_options = object_store::ClientOptions::new()
            .with_timeout_disabled()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_read_timeout(read_timeout);
        // object_store retries ten times within three minutes by default,
        // which kept a request waiting that long on a store that was down.
        let retry = object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: retry_for,
            ..object_store::RetryConfig::default()
        };
        builder = builder
            .with_retry(retry)
            // First, because it replaces every client option set before it.
            .with_client_options(client_options)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_allow_http(config.allow_http);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let (Some(key), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        builder.build().map_err(backend)
    }

    fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    fn blob_key(&self, digest: &Digest) -> Path {
        self.key(&format!(
            "blobs/{}/{}",
            digest.algorithm().as_str(),
            digest.encoded()
        ))
    }

    fn blobs_key(&self) -> Path {
        self.key("blobs")
    }

    fn upload_key(&self, id: &UploadId, name: &str) -> Path {
        self.key(&format!("uploads/{id}/{name}"))
    }

    fn upload_dir(&self, id: &UploadId) -> Path {
        self.key(&format!("uploads/{id}"))
    }

    fn tail_key(&self, id: &UploadId, size: u64) -> Path {
        self.upload_key(id, &format!("tail-{size}"))
    }

    /// Fails with `UploadNotFound` unless the upload was begun and not yet
    /// finished or aborted.
    async fn require_upload(&self, id: &UploadId) -> Result<(), StorageError> {
        match self.store.head(&self.upload_key(id, "info")).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Err(StorageError::UploadNotFound),
            Err(error) => Err(backend(error)),
        }
    }

    /// Reads the state out of a progress and checks that it accounts for
    /// exactly `progress.size` bytes.
    fn upload_state(&self, progress: &UploadProgress) -> Result<UploadState, StorageError> {
        let state: UploadState = if progress.backend_state.is_null() {
            // A progress made up by a caller that never began this upload
            // here: an empty one, which `require_upload` will judge.
            UploadState {
                part_size: self.part_size as u64,
                ..UploadState::default()
            }
        } else {
            serde_json::from_value(progress.backend_state.clone()).map_err(|error| {
                StorageError::Backend(format!("unreadable S3 upload state: {error}"))
            })?
        };
        if state.part_size < MIN_PART_SIZE as u64 {
            return Err(StorageError::Backend(
                "the S3 upload state has no valid part size".into(),
            ));
        }
        let accounted = state.parts.len() as u64 * state.part_size
            + state.tail.as_ref().map_or(0, |tail| tail.len);
        if accounted != progress.size {
            return Err(StorageError::ProgressConflict);
        }
        Ok(state)
    }

    /// Reads the tail the state names, refusing one that changed since.
    async fn read_tail(
        &self,
        id: &UploadId,
        size: u64,
        tail: &TailState,
    ) -> Result<Bytes, StorageError> {
        let options = GetOptions {
            if_match: tail.e_tag.clone(),
            ..GetOptions::default()
        };
        let bytes = match self.store.get_opts(&self.tail_key(id, size), options).await {
            Ok(result) => result.bytes().await.map_err(backend)?,
            Err(
                object_store::Error::NotFound { .. } | object_store::Error::Precondition { .. },
            ) => return Err(StorageError::ProgressConflict),
            Err(error) => return Err(backend(error)),
        };
        if bytes.len() as u64 != tail.len {
            return Err(StorageError::ProgressConflict);
        }
        Ok(bytes)
    }

    /// Deletes the tails of progresses older than `size`. The caller wrote
    /// from the progress of `size`, so it holds no older one (it may still use
    /// this one again, whose tail is kept). Failures are only logged: a stale
    /// tail costs space until the upload ends, never correctness.
    async fn remove_older_tails(&self, id: &UploadId, size: u64) {
        let objects = match self.upload_objects(id).await {
            Ok(objects) => objects,
            Err(error) => {
                tracing::warn!(%error, upload = %id, "cannot list an upload's tails");
                return;
            }
        };
        for object in objects {
            let older = object
                .filename()
                .and_then(|name| name.strip_prefix("tail-"))
                .and_then(|end| end.parse::<u64>().ok())
                .is_some_and(|end| end < size);
            if older {
                if let Err(error) = delete_object(&self.store, &object).await {
                    tracing::warn!(%error, upload = %id, "cannot delete a superseded tail");
                }
            }
        }
    }

    /// Begins a multipart upload for `id`, first recording it in the upload's
    /// directory so that aborting finds it whatever happens to this call.
    async fn begin_multipart(&self, id: &UploadId) -> Result<String, StorageError> {
        let data = self.upload_key(id, "data");
        let multipart_id = self.store.create_multipart(&data).await.map_err(backend)?;
        let record = self.upload_key(id, &format!("multipart-{}", uuid::Uuid::new_v4()));
        if let Err(error) = self
            .store
            .put(&record, PutPayload::from(multipart_id.clone().into_bytes()))
            .await
        {
            // Unrecorded, it could leak: abort it while we still know its id.
            let _ = self.store.abort_multipart(&data, &multipart_id).await;
            return Err(backend(error));
        }
        Ok(multipart_id)
    }

    /// Puts the upload's bytes together as its `data` object, unless that was
    /// done already for this very progress, and checks the result's size.
    async fn assemble(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        state: &UploadState,
    ) -> Result<Path, StorageError> {
        let data = self.upload_key(id, "data");
        let record_key = self.upload_key(id, "assembled");
        let fingerprint = fingerprint(progress);
        if let Some(record) = self.read_assembled_record(&record_key).await? {
            if record.fingerprint == fingerprint && record.data_e_tag.is_some() {
                match self.store.head(&data).await {
                    Ok(meta) if meta.e_tag == record.data_e_tag && meta.size == progress.size => {
                        return Ok(data)
                    }
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(error) => return Err(backend(error)),
                }
            }
        }
        let tail = match &state.tail {
            Some(tail) => self.read_tail(id, progress.size, tail).await?,
            None => Bytes::new(),
        };
        let result = match &state.multipart_id {
            None => self
                .patient
                .put(&data, PutPayload::from(tail))
                .await
                .map_err(backend)?,
            Some(multipart_id) => {
                let mut parts: Vec<PartId> = state
                    .parts
                    .iter()
                    .map(|content_id| PartId {
                        content_id: content_id.clone(),
                    })
                    .collect();
                if !tail.is_empty() {
                    // The last part may be short.
                    parts.push(
                        self.patient
                            .put_part(&data, multipart_id, parts.len(), PutPayload::from(tail))
                            .await
                            .map_err(part_error)?,
                    );
                }
                self.patient
                    .complete_multipart(&data, multipart_id, parts)
                    .await
                    .map_err(part_error)?
            }
        };
        let stored = self.store.head(&data).await.map_err(backend)?;
        if stored.size != progress.size {
            return Err(StorageError::ProgressConflict);
        }
        let record = AssembledRecord {
            fingerprint,
            data_e_tag: stored.e_tag.or(result.e_tag),
        };
        let record = serde_json::to_vec(&record).map_err(|error| {
            StorageError::Backend(format!("cannot record the assembly: {error}"))
        })?;
        self.store
            .put(&record_key, PutPayload::from(record))
            .await
            .map_err(backend)?;
        Ok(data)
    }

    async fn read_assembled_record(
        &self,
        key: &Path,
    ) -> Result<Option<AssembledRecord>, StorageError> {
        match self.store.get(key).await {
            Ok(result) => {
                let bytes = result.bytes().await.map_err(backend)?;
                // An unreadable record only costs a fresh assembly.
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(backend(error)),
        }
    }

    /// Copies an object too large for a server-side copy by streaming it into
    /// a multipart upload at `to`, one part in memory at a time. The copy only
    /// becomes visible when the upload completes, whole.
    async fn copy_through(
        &self,
        from: &Path,
        to: &Path,
        part_size: usize,
    ) -> Result<(), StorageError> {
        let multipart_id = self.store.create_multipart(to).await.map_err(backend)?;
        let result = async {
            let mut stream = self.patient.get(from).await.map_err(backend)?.into_stream();
            let mut buffer = BytesMut::with_capacity(part_size);
            let mut parts = Vec::new();
            loop {
                let piece = stream.next().await.transpose().map_err(backend)?;
                let done = piece.is_none();
                let mut rest = piece.as_deref().unwrap_or_default();
                while !rest.is_empty() {
                    let take = (part_size - buffer.len()).min(rest.len());
                    buffer.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if buffer.len() == part_size {
                        let part = buffer.split().freeze();
                        buffer.reserve(part_size);
                        parts.push(
                            self.patient
                                .put_part(to, &multipart_id, parts.len(), PutPayload::from(part))
                                .await
                                .map_err(backend)?,
                        );
                    }
                }
                if done {
                    break;
                }
            }
            if !buffer.is_empty() || parts.is_empty() {
                parts.push(
                    self.patient
                        .put_part(
                            to,
                            &multipart_id,
                            parts.len(),
                            PutPayload::from(buffer.freeze()),
                        )
                        .await
                        .map_err(backend)?,
                );
            }
            self.patient
                .complete_multipart(to, &multipart_id, parts)
                .await
                .map_err(backend)
        }
        .await;
        if result.is_err() {
            // Nothing records this multipart upload: end it now.
            let _ = self.store.abort_multipart(to, &multipart_id).await;
        }
        result.map(|_| ())
    }

    /// Hashes an object by streaming it.
    async fn hash_object(&self, key: &Path, algorithm: Algorithm) -> Result<Digest, StorageError> {
        let mut stream = self.patient.get(key).await.map_err(backend)?.into_stream();
        let mut hasher = algorithm.hasher();
        while let Some(piece) = stream.next().await {
            hasher.update(&piece.map_err(backend)?);
        }
        Ok(hasher.finish())
    }

    /// Every object in the upload's directory.
    async fn upload_objects(&self, id: &UploadId) -> Result<Vec<Path>, StorageError> {
        self.store
            .list(Some(&self.upload_dir(id)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(backend)
    }

    /// Aborts every multipart upload of `id` (but `keep`) and deletes the
    /// upload's objects, the `info` marker last so that an interrupted removal
    /// can be repeated.
    async fn remove_upload(
        &self,
        id: &UploadId,
        also_abort: Option<&str>,
        keep: Option<&str>,
    ) -> Result<(), StorageError> {
        let data = self.upload_key(id, "data");
        let objects = self.upload_objects(id).await?;
        let mut multipart_ids: Vec<String> = also_abort.into_iter().map(String::from).collect();
        for object in &objects {
            if object
                .filename()
                .is_some_and(|name| name.starts_with("multipart-"))
            {
                match self.store.get(object).await {
                    Ok(result) => {
                        let bytes = result.bytes().await.map_err(backend)?;
                        multipart_ids.push(String::from_utf8_lossy(&bytes).into_owned());
                    }
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(error) => return Err(backend(error)),
                }
            }
        }
        multipart_ids.sort();
        multipart_ids.dedup();
        for multipart_id in multipart_ids {
            if Some(multipart_id.as_str()) == keep {
                continue;
            }
            match self.store.abort_multipart(&data, &multipart_id).await {
                // Aborted already, or completed: either way nothing is pending.
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(backend(error)),
            }
        }
        let info = self.upload_key(id, "info");
        for object in objects.iter().filter(|object| **object != info) {
            delete_object(&self.store, object).await?;
        }
        delete_object(&self.store, &info).await
    }

    /// Parses a key under `blobs/` back into its digest; `None` for anything
    /// that is not a well-formed blob key.
    fn digest_of_key(&self, key: &Path) -> Option<Digest> {
        let blobs = self.blobs_key();
        let mut parts = key.prefix_match(&blobs)?;
        let algorithm = parts.next()?;
        let encoded = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        Digest::parse(&format!("{}:{}", algorithm.as_ref(), encoded.as_ref())).ok()
    }
}

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match self.store.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(backend(error)),
        }
    }

    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, StorageError> {
        let key = self.blob_key(digest);
        let not_found = |error: object_store::Error| match error {
            object_store::Error::NotFound { .. } => StorageError::BlobNotFound,
            error => backend(error),
        };
        let options = match range {
            None => GetOptions::default(),
            Some(range) if range.start >= range.end => {
                // An empty range cannot be asked of S3; the blob only has to exist.
                self.store.head(&key).await.map_err(not_found)?;
                return Ok(BlobBody::streamed(0, Box::pin(futures::stream::empty())));
            }
            Some(range) => GetOptions {
                range: Some(GetRange::Bounded(range.start..range.end)),
                ..GetOptions::default()
            },
        };
        let result = self
            .store
            .get_opts(&key, options)
            .await
            .map_err(not_found)?;
        let len = result.range.end - result.range.start;
        let stream = result
            .into_stream()
            .map_err(|error| std::io::Error::other(error.to_string()));
        Ok(BlobBody::streamed(len, Box::pin(stream)))
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<(), StorageError> {
        delete_object(&self.store, &self.blob_key(digest)).await
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        // Keys `blobs/<algorithm>/<hex>` sort as digest texts `<algorithm>:<hex>`
        // do, because every algorithm's hex has one length.
        let prefix = self.blobs_key();
        let mut listing = match after {
            Some(after) => self
                .store
                .list_with_offset(Some(&prefix), &self.blob_key(after)),
            None => self.store.list(Some(&prefix)),
        };
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(backend)?;
            let Some(digest) = self.digest_of_key(&meta.location) else {
                continue;
            };
            if after.is_some_and(|after| digest.as_str() <= after.as_str()) {
                continue;
            }
            found.push(StoredBlob {
                digest,
                size: meta.size,
                modified: meta.last_modified.timestamp(),
            });
            if found.len() == limit {
                break;
            }
        }
        Ok(found)
    }

    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<StoredUpload>, StorageError> {
        let mut found: Vec<StoredUpload> = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        // An upload is the objects under `uploads/<id>/`, listed in key order
        // and so one upload after another. Starting after `uploads/<id>0`
        // skips every object of `<id>` ('/' sorts before '0') and nothing of
        // a later id, which differs from `<id>` within the id itself.
        let prefix = self.key("uploads");
        let mut listing = match after {
            Some(after) => self
                .store
                .list_with_offset(Some(&prefix), &self.key(&format!("uploads/{after}0"))),
            None => self.store.list(Some(&prefix)),
        };
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(backend)?;
            let Some(id) = meta
                .location
                .prefix_match(&prefix)
                .and_then(|mut parts| parts.next())
                .and_then(|part| UploadId::parse(part.as_ref()))
            else {
                continue;
            };
            if after.is_some_and(|after| id <= *after) {
                continue;
            }
            let modified = meta.last_modified.timestamp();
            if let Some(last) = found.last_mut().filter(|last| last.id == id) {
                last.modified = last.modified.max(modified);
                continue;
            }
            if found.len() == limit {
                break;
            }
            found.push(StoredUpload { id, modified });
        }
        Ok(found)
    }

    async fn begin_upload(&self, id: &UploadId) -> Result<UploadProgress, StorageError> {
        self.store
            .put(&self.upload_key(id, "info"), PutPayload::new())
            .await
            .map_err(backend)?;
        let state = UploadState {
            part_size: self.part_size as u64,
            ..UploadState::default()
        };
        Ok(UploadProgress {
            size: 0,
            hash_state: Algorithm::Sha256.hasher().to_state(),
            backend_state: state_value(&state)?,
        })
    }

    async fn write_chunk(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        mut data: ByteStream,
    ) -> Result<UploadProgress, StorageError> {
        let mut state = self.upload_state(progress)?;
        self.require_upload(id).await?;
        // An upload without a hash state keeps going without one once it has
        // bytes: a state over only the later bytes would be wrong, and an
        // absent one makes finishing hash the assembled data instead.
        let mut hasher = match (progress.hash_state.is_empty(), progress.size) {
            (true, 0) => Some(Algorithm::Sha256.hasher()),
            (true, _) => None,
            (false, _) => Some(Hasher::from_state(&progress.hash_state).ok_or_else(|| {
                StorageError::Backend(format!("upload {id} has an unreadable hash state"))
            })?),
        };
        let part_size = state.part_size as usize;
        let old_tail = state.tail.take();
        // The next part, as the request body's own pieces: a part goes to
        // the store as a list of shared buffers, so no byte is copied into a
        // part buffer, and a call holds at most one part in memory (parts
        // are sent one at a time, before more of the body is read).
        let mut pending = PendingPart::default();
        if let Some(tail) = &old_tail {
            pending.push(self.read_tail(id, progress.size, tail).await?);
        }
        let mut received: u64 = 0;
        // A multipart upload begun by this call: aborted if the call fails,
        // because the caller's progress will not name it.
        let mut begun_here: Option<String> = None;
        let result = async {
            while let Some(item) = data.next().await {
                let mut bytes = item.map_err(StorageError::Incoming)?;
                received += bytes.len() as u64;
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(&bytes);
                }
                while !bytes.is_empty() {
                    // Every part but the last is exactly `part_size` bytes,
                    // so a piece that crosses the boundary is split (the two
                    // halves share one buffer).
                    let take = (part_size - pending.len).min(bytes.len());
                    pending.push(bytes.split_to(take));
                    if pending.len == part_size {
                        let part = std::mem::take(&mut pending).into_payload();
                        let multipart_id = match &state.multipart_id {
                            Some(multipart_id) => multipart_id.clone(),
                            None => {
                                let multipart_id = self.begin_multipart(id).await?;
                                begun_here = Some(multipart_id.clone());
                                state.multipart_id = Some(multipart_id.clone());
                                multipart_id
                            }
                        };
                        let part_id = self
                            .patient
                            .put_part(
                                &self.upload_key(id, "data"),
                                &multipart_id,
                                state.parts.len(),
                                part,
                            )
                            .await
                            .map_err(part_error)?;
                        state.parts.push(part_id.content_id);
                    }
                }
            }
            Ok::<(), StorageError>(())
        }
        .await;
        if let Err(error) = result {
            if let Some(multipart_id) = begun_here {
                let _ = self
                    .store
                    .abort_multipart(&self.upload_key(id, "data"), &multipart_id)
                    .await;
            }
            return Err(error);
        }
        let size = progress.size + received;
        if received == 0 {
            // Nothing changed: the old tail is still the tail.
            state.tail = old_tail;
        } else if pending.len > 0 {
            let len = pending.len as u64;
            let put = self
                .patient
                .put(&self.tail_key(id, size), pending.into_payload())
                .await
                .map_err(backend)?;
            state.tail = Some(TailState {
                len,
                e_tag: put.e_tag,
            });
        }
        if received > 0 {
            self.remove_older_tails(id, progress.size).await;
        }
        Ok(UploadProgress {
            size,
            hash_state: hasher.map(|hasher| hasher.to_state()).unwrap_or_default(),
            backend_state: state_value(&state)?,
        })
    }

    async fn finish_upload(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        expected: &Digest,
    ) -> Result<u64, StorageError> {
        let state = self.upload_state(progress)?;
        self.require_upload(id).await?;
        // The saved state spares reading the data back, and lets a mismatch be
        // reported before anything is assembled.
        let saved_hasher = Hasher::from_state(&progress.hash_state)
            .filter(|hasher| hasher.algorithm() == expected.algorithm());
        let verified_by_state = match saved_hasher {
            Some(hasher) => {
                let computed = hasher.finish();
                if computed != *expected {
                    return Err(StorageError::DigestMismatch { computed });
                }
                true
            }
            None => false,
        };
        let data = self.assemble(id, progress, &state).await?;
        if !verified_by_state {
            let computed = self.hash_object(&data, expected.algorithm()).await?;
            if computed != *expected {
                return Err(StorageError::DigestMismatch { computed });
            }
        }
        let blob = self.blob_key(expected);
        let exists = match self.store.head(&blob).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(error) => return Err(backend(error)),
        };
        if !exists {
            if progress.size <= self.max_copy_size {
                self.patient.copy(&data, &blob).await.map_err(backend)?;
            } else {
                self.copy_through(&data, &blob, state.part_size as usize)
                    .await?;
            }
        }
        if let Err(error) = self
            .remove_upload(id, None, state.multipart_id.as_deref())
            .await
        {
            // The blob is stored, which is what the caller asked for; the upload
            // purge removes what is left of the session.
            tracing::warn!(%error, upload = %id, "cannot remove a finished upload");
        }
        Ok(progress.size)
    }

    async fn abort_upload(
        &self,
        id: &UploadId,
        progress: Option<&UploadProgress>,
    ) -> Result<(), StorageError> {
        // A progress that does not parse still must not stop the removal.
        let multipart_id = progress
            .and_then(|progress| {
                serde_json::from_value::<UploadState>(progress.backend_state.clone()).ok()
            })
            .and_then(|state| state.multipart_id);
        self.remove_upload(id, multipart_id.as_deref(), None).await
    }

    async fn check_ready(&self) -> Result<(), StorageError> {
        self.store
            .list_with_delimiter(Some(&self.key("")))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn presigned_get(
        &self,
        digest: &Digest,
        expires_in: Duration,
    ) -> Result<Option<url::Url>, StorageError> {
        let url = self
            .store
            .signed_url(http::Method::GET, &self.blob_key(digest), expires_in)
            .await
            .map_err(backend)?;
        Ok(Some(url))
    }
}

/// What the shared suite checks after each scenario: every object under
/// `uploads/` and anything under the prefix that is neither a blob nor an
/// upload. Multipart uploads in progress are invisible to object_store, so the
/// S3 tests look for those themselves.
#[cfg(any(test, feature = "test-suite"))]
#[async_trait::async_trait]
impl crate::suite::Leftovers for S3BlobStore {
    async fn leftovers(&self) -> Vec<String> {
        let listing: Result<Vec<_>, _> = self.store.list(Some(&self.key(""))).try_collect().await;
        match listing {
            Ok(objects) => {
                let uploads = self.key("uploads");
                objects
                    .into_iter()
                    .filter(|meta| {
                        meta.location.prefix_match(&uploads).is_some()
                            || self.digest_of_key(&meta.location).is_none()
                    })
                    .map(|meta| meta.location.to_string())
                    .collect()
            }
            // An unlistable store fails the check rather than hiding remains.
            Err(error) => vec![format!("cannot list the bucket: {error}")],
        }
    }
}

/// Maps an object store error: the store failing to answer, answering with
/// an error of its own (a `5xx` that retries did not clear, a timeout, a
/// refused connection) or refusing our credentials makes the store
/// unavailable; anything else is a bug or a misuse, reported as such.
fn backend(error: object_store::Error) -> StorageError {
    match error {
        object_store::Error::Generic { .. }
        | object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => StorageError::Unavailable {
            reason: crate::Unavailability::NotAnswering,
            detail: error.to_string(),
        },
        error => StorageError::Backend(error.to_string()),
    }
}

/// Pieces of a request body that make up the next part or tail, in order.
#[derive(Default)]
struct PendingPart {
    pieces: Vec<Bytes>,
    /// Bytes in `pieces`.
    len: usize,
}

impl PendingPart {
    fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push(piece);
        }
    }

    fn into_payload(self) -> PutPayload {
        self.pieces.into_iter().collect()
    }
}

/// A multipart upload that no longer exists means another call completed or
/// aborted it: the caller's progress is out of date.
fn part_error(error: object_store::Error) -> StorageError {
    match error {
        object_store::Error::NotFound { .. } => StorageError::ProgressConflict,
        error => backend(error),
    }
}

async fn delete_object(store: &AmazonS3, key: &Path) -> Result<(), StorageError> {
    match store.delete(key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(error) => Err(backend(error)),
    }
}

fn state_value(state: &UploadState) -> Result<serde_json::Value, StorageError> {
    serde_json::to_value(state)
        .map_err(|error| StorageError::Backend(format!("cannot save the S3 upload state: {error}")))
}

/// Identifies a progress exactly: its size, hash state and parts.
fn fingerprint(progress: &UploadProgress) -> String {
    let text = serde_json::to_vec(progress).unwrap_or_default();
    Algorithm::Sha256.digest_of(&text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_url() {
        let config = S3Config::from_url("s3://bucket/some/prefix/").expect("parses");
        assert_eq!(config.bucket, "bucket");
        assert_eq!(config.prefix, "some/prefix");
        assert!(!config.from_env);
        assert_eq!(config.part_size, DEFAULT_PART_SIZE);
        assert_eq!(
            S3Config::from_url("s3://bucket").expect("parses").prefix,
            ""
        );
        for bad in [
            "bucket/prefix",
            "s3:///prefix",
            "http://bucket",
            "s3://b/a//b",
        ] {
            assert!(S3Config::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let config = S3Config {
            access_key_id: Some("key".into()),
            secret_access_key: Some("very-secret".into()),
            session_token: Some("token-secret".into()),
            ..S3Config::from_url("s3://b").expect("parses")
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret\""), "{shown}");
        assert!(!shown.contains("very-secret") && !shown.contains("token-secret"));
    }

    #[test]
    fn too_small_parts_are_refused() {
        let config = S3Config {
            part_size: MIN_PART_SIZE - 1,
            ..S3Config::from_url("s3://b").expect("parses")
        };
        assert!(config.validate().is_err());
    }
}
