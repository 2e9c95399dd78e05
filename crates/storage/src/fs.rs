//! The filesystem backend: blobs and uploads as plain files under one root.
//!
//! # Layout
//!
//! ```text
//! root/
//! ├── blobs/                  committed blobs, named by their digest
//! │   ├── sha256/
//! │   │   └── ab/             fan-out directory: the first two hex digits
//! │   │       └── ab12…ef     one file per blob, named by the 64 hex digits
//! │   └── sha512/
//! │       └── cd/
//! │           └── cd34…01     named by the 128 hex digits
//! ├── uploads/
//! │   └── <upload uuid>       one file per upload: the bytes received so far
//! └── tmp/                    scratch: probes, and files being moved or removed
//! ```
//!
//! # Why it is safe
//!
//! - A file appears under `blobs/` only by hard-linking an upload's data file
//!   there after its digest was verified and the data fsynced, so a blob file
//!   always holds exactly the bytes its name promises. The link fails when the
//!   blob exists already, which keeps the first copy and makes concurrent
//!   uploads of the same content harmless. On a filesystem without hard links
//!   (detected once by [`FsBlobStore::open`]) a rename takes the link's place.
//! - An upload is one file, created empty (`O_EXCL`, so an id is never
//!   reused) and removed by one `unlink`: `uploads/` never holds a half-created
//!   or half-removed upload. Each upload used to be a directory holding a
//!   `data` file, which cost a `mkdir`, an `rmdir` and two renames through
//!   `tmp/` per blob; on ext4 a small push spent most of its server CPU in
//!   allocating those directories' inodes. [`FsBlobStore::open`] converts
//!   uploads left in that older layout. A drop guard removes what an error
//!   leaves in `tmp/`; what a crash leaves there is removed by
//!   [`FsBlobStore::open`] once it is an hour old (younger entries may belong
//!   to another process sharing the root).
//! - A directory is fsynced after every link or rename that makes a blob
//!   visible or removes one, and an upload's data after every chunk, so a
//!   blob or chunk that was reported as stored survives a power loss. The
//!   last chunk of an upload (`write_last_chunk`) is the exception: it is
//!   fsynced by the finish, before the link, and not at all when the blob
//!   is stored already, so that many uploads of one blob at once write it
//!   to the disk once (see `Durability`). Creating
//!   an upload session is not made durable: a session lost to a power failure
//!   (whose metadata row is not synced either) is restarted by its client.
//!   Nor is removing a finished upload's file: its session record is gone
//!   before the finish, so a file a power loss brings back is upload data
//!   without a session, which the upload purge removes.
//! - Every filesystem call runs on tokio's blocking pool, and uploads stream
//!   through at most two batches of about [`WRITE_BATCH_SIZE`] bytes (one
//!   being written, one being received), never a whole body; a few large
//!   uploads at a time use [`LARGE_WRITE_BATCH_SIZE`] instead.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_oci::{Algorithm, ByteRange, Digest, Hasher, UploadId};
use bytes::Bytes;
use futures::StreamExt;
use memmap2::{Advice, MmapOptions};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::{
    BlobBody, BlobStore, ByteStream, FileRegion, Growing, StorageError, StoredBlob, StoredUpload,
    UploadProgress,
};

/// Incoming bytes gathered before one write to disk. The batch holds the
/// request body's own pieces (shared, never copied) and goes to the file in
/// one vectored write, so the size only trades blocking-pool round trips
/// (one per batch) against memory per concurrent upload (two batches).
pub const WRITE_BATCH_SIZE: usize = 128 * 1024;

/// The batch of an upload that has already brought this much and holds one
/// of [`LARGE_BATCH_UPLOADS`] slots. Each batch costs a hand-off to the
/// blocking pool and back, whose wake-ups dominated a large push's CPU at
/// 128 KiB: 512 KiB batches took a 512 MiB push from about 480 to 680 MB/s on
/// the 2-core benchmark machine (256 KiB gave 600, 1 MiB no more than 512).
/// The slots bound what that costs in memory: many concurrent uploads (32 in
/// the `same_blob` benchmark) keep the small batch, so at most
/// `2 × LARGE_BATCH_UPLOADS` large batches are held at once.
pub const LARGE_WRITE_BATCH_SIZE: usize = 512 * 1024;

/// How many uploads of one store may use large batches at the same time.
pub const LARGE_BATCH_UPLOADS: usize = 4;

/// The size of the pieces a blob is sent in: each is one slice of the
/// blob's memory map handed to the socket, so the size only sets how often
/// the stream yields and how far ahead the kernel is asked to read.
pub const READ_CHUNK_SIZE: usize = 1024 * 1024;

/// Reads shorter than this are copied into memory in one `read`; longer ones
/// are served from a memory map. A map costs two system calls and page
/// faults, which only pay off when they replace several reads and copies.
const MAP_THRESHOLD: u64 = 64 * 1024;

/// The buffer used when a finished upload has to be hashed again from disk.
const REHASH_BUFFER_SIZE: usize = 1024 * 1024;

/// How old an entry in `tmp/` must be before `open` treats it as a crash's
/// remains. Operations keep entries there for milliseconds, so an hour is far
/// beyond any live use by another process sharing the root.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The mode of upload files, and so of blobs, which are the same files
/// hard-linked (or renamed) into `blobs/`: readable and writable by the
/// account the registry runs as, by nobody else, whatever the umask. A
/// registry holds private images.
const DATA_FILE_MODE: u32 = 0o600;

/// The data file inside an upload directory of the older layout (see the
/// module documentation), which [`FsBlobStore::open`] converts.
const LEGACY_UPLOAD_DATA_FILE: &str = "data";

/// A [`BlobStore`] keeping everything in one directory tree (see the module
/// documentation for the layout).
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    /// The directory holding `blobs/`, `uploads/` and `tmp/`.
    root: PathBuf,
    /// How verified upload data becomes a blob; decided once by `open` because
    /// it depends on the filesystem, not on the request.
    commit_mode: CommitMode,
    /// Slots for uploads writing in large batches (see
    /// [`LARGE_WRITE_BATCH_SIZE`]), shared by the clones of one store.
    large_batches: Arc<Semaphore>,
    /// The uploads of each digest writing their last chunk (see
    /// [`FsBlobStore::write_last_chunk`]): the first of them is the one
    /// whose bytes are written back early.
    closing: PerDigest<()>,
    /// One turn per digest for finishing uploads whose last chunk is not
    /// synced (see [`Finishing`]).
    finishing: PerDigest<tokio::sync::Mutex<()>>,
}

/// How [`FsBlobStore::finish_upload`] puts verified data under its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommitMode {
    /// `link(2)`, which refuses to replace an existing blob: the normal case.
    HardLink,
    /// `rename(2)` after checking the blob is absent, for filesystems without
    /// hard links. A racing commit may replace a blob with identical verified
    /// bytes, which readers cannot tell apart.
    Rename,
}

impl FsBlobStore {
    /// Opens the store at `root`, creating its directories if needed.
    ///
    /// This blocks on the filesystem; call it at startup, not on a request path.
    pub fn open(root: PathBuf) -> Result<Self, StorageError> {
        let store = FsBlobStore {
            root,
            commit_mode: CommitMode::HardLink,
            large_batches: Arc::new(Semaphore::new(LARGE_BATCH_UPLOADS)),
            closing: PerDigest::default(),
            finishing: PerDigest::default(),
        };
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            fs::create_dir_all(store.algorithm_dir(algorithm))?;
        }
        fs::create_dir_all(store.uploads_dir())?;
        fs::create_dir_all(store.tmp_dir())?;
        sync_dir(&store.root.join("blobs"))?;
        sync_dir(&store.root)?;
        store.remove_stale_temporaries();
        store.convert_legacy_uploads()?;
        let commit_mode = detect_commit_mode(&store.tmp_dir())?;
        Ok(FsBlobStore {
            commit_mode,
            ..store
        })
    }

    fn algorithm_dir(&self, algorithm: Algorithm) -> PathBuf {
        self.root.join("blobs").join(algorithm.as_str())
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let encoded = digest.encoded();
        self.algorithm_dir(digest.algorithm())
            .join(&encoded[..2])
            .join(encoded)
    }

    fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    fn upload_data_path(&self, id: &UploadId) -> PathBuf {
        self.uploads_dir().join(id.to_string())
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh, unused name in `tmp/`.
    fn temp_path(&self) -> PathBuf {
        self.tmp_dir().join(uuid::Uuid::new_v4().to_string())
    }

    /// Removes what a crash left in `tmp/`. Failures are only logged: stale
    /// scratch space wastes disk but never affects correctness.
    fn remove_stale_temporaries(&self) {
        let entries = match fs::read_dir(self.tmp_dir()) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, "cannot list the temporary directory");
                return;
            }
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let path = entry.path();
            let is_stale =
                entry
                    .metadata()
                    .and_then(|meta| meta.modified())
                    .is_ok_and(|modified| {
                        now.duration_since(modified)
                            .is_ok_and(|age| age >= STALE_TEMP_AGE)
                    });
            if is_stale {
                if let Err(error) = remove_path(&path) {
                    tracing::warn!(%error, path = %path.display(), "cannot remove a stale temporary");
                }
            }
        }
    }

    /// Creates the upload's empty data file. `create_new` refuses an
    /// existing one: an id is random, so a clash is a caller bug worth
    /// reporting, never a reason to reuse someone's data.
    ///
    /// Nothing here is fsynced: a new session holds no data yet, and one
    /// that a power failure takes away (with its metadata row, which is not
    /// synced either) only makes the client start its upload again. What a
    /// session receives is synced by `write_chunk` before it is acknowledged.
    fn begin_upload_blocking(&self, id: &UploadId) -> Result<(), StorageError> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(DATA_FILE_MODE)
            .open(self.upload_data_path(id))?;
        Ok(())
    }

    /// Converts uploads of the older layout, `uploads/<id>/data`, into
    /// `uploads/<id>`, so that sessions open during an upgrade go on. The data
    /// moves through `tmp/` because a file cannot be renamed onto the
    /// directory that holds it; a crash halfway leaves it there, where it is
    /// removed as stale, and that one session's client starts again.
    ///
    /// The store may be opened while servers use it (`berth gc` does), so
    /// the listing is only a snapshot: an upload that finishes meanwhile
    /// takes its file away, and an entry that is gone is simply not
    /// converted.
    fn convert_legacy_uploads(&self) -> Result<(), StorageError> {
        for name in sorted_names(&self.uploads_dir())? {
            self.convert_legacy_upload(&name)?;
        }
        sync_dir(&self.uploads_dir())?;
        Ok(())
    }

    /// Converts `uploads/<name>` if it is a directory of the older layout;
    /// a file (an upload of the current layout) or a vanished entry is left
    /// alone.
    fn convert_legacy_upload(&self, name: &str) -> Result<(), StorageError> {
        let dir = self.uploads_dir().join(name);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        let data = dir.join(LEGACY_UPLOAD_DATA_FILE);
        let parked = self.temp_path();
        let has_data = match fs::rename(&data, &parked) {
            Ok(()) => true,
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            Err(error) => return Err(error.into()),
        };
        remove_path(&dir)?;
        if has_data {
            fs::rename(&parked, &dir)?;
        }
        tracing::info!(upload = %name, "converted an upload to the one-file layout");
        Ok(())
    }

    /// Opens an upload's data file positioned at `size`, after discarding what
    /// a failed earlier write left beyond it.
    fn open_upload_at(&self, id: &UploadId, size: u64) -> Result<File, StorageError> {
        let mut file = open_upload_data(&self.upload_data_path(id))?;
        // A truncation here is made durable with the chunk's own sync.
        truncate_to_progress(&file, size)?;
        file.seek(SeekFrom::Start(size))?;
        Ok(file)
    }

    fn finish_upload_blocking(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        expected: &Digest,
    ) -> Result<u64, StorageError> {
        let data_path = self.upload_data_path(id);
        let mut file = open_upload_data(&data_path)?;
        let truncated = truncate_to_progress(&file, progress.size)?;
        // The saved state spares re-reading the data, but only when it hashes
        // with the algorithm the client chose; a missing or unreadable state
        // falls back to reading the file, which is always correct.
        let saved_hasher = Hasher::from_state(&progress.hash_state)
            .filter(|hasher| hasher.algorithm() == expected.algorithm());
        let computed = match saved_hasher {
            Some(hasher) => hasher.finish(),
            None => hash_file(&mut file, expected.algorithm())?,
        };
        let unsynced = is_unsynced(progress);
        if computed != *expected {
            // The session stands after a mismatch, so its bytes must be
            // as durable as any acknowledged chunk's.
            if unsynced {
                file.sync_data()?;
            }
            return Err(StorageError::DigestMismatch { computed });
        }
        let blob_path = self.blob_path(expected);
        if unsynced && blob_path.try_exists()? {
            // A copy of a stored blob: its bytes are discarded unwritten
            // (the page cache drops dirty pages of a removed file), and
            // linking them is skipped, since a link that succeeded because
            // the blob was deleted in between would publish bytes that are
            // not durable. The stored blob may have been linked by a finish
            // that has not made its link durable yet; this one reports
            // success only once it is.
            sync_dir(parent_of(&blob_path)?)?;
        } else {
            // Chunks written by `write_chunk` were fsynced already; a last
            // chunk, or a truncation above, is not.
            if truncated {
                file.sync_all()?;
            } else if unsynced {
                file.sync_data()?;
            }
            drop(file);
            self.commit_blob(&data_path, &blob_path)?;
        }
        // The removal is not fsynced, unlike an abort's: the session's
        // record is deleted before the storage finish (the registry's
        // order), so an upload file that a power loss brings back is data
        // without a record, which the upload purge removes once it is idle
        // for the upload TTL, and the blob holds its own, fsynced link to
        // the bytes. A directory fsync per pushed blob bought only that.
        if let Err(error) = self.unlink_upload(id) {
            // The blob is stored, which is what the caller asked for; the upload
            // purge removes what is left of the session.
            tracing::warn!(%error, upload = %id, "cannot remove a finished upload");
        }
        Ok(progress.size)
    }

    /// Makes the verified file at `data_path` visible as `blob_path`, keeping an
    /// existing blob if there is one.
    fn commit_blob(&self, data_path: &Path, blob_path: &Path) -> Result<(), StorageError> {
        let fan_out_dir = parent_of(blob_path)?;
        match fs::create_dir(fan_out_dir) {
            Ok(()) => sync_dir(parent_of(fan_out_dir)?)?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error.into()),
        }
        match self.commit_mode {
            // When the blob exists already, another finish may have linked
            // it and not yet synced the directory; syncing it here too means
            // no finish reports success for a link a power loss can undo.
            CommitMode::HardLink => match fs::hard_link(data_path, blob_path) {
                Ok(()) => sync_dir(fan_out_dir)?,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    sync_dir(fan_out_dir)?
                }
                Err(error) => return Err(error.into()),
            },
            CommitMode::Rename => {
                if !blob_path.try_exists()? {
                    fs::rename(data_path, blob_path)?;
                }
                sync_dir(fan_out_dir)?;
            }
        }
        Ok(())
    }

    /// Removes an upload's data file (an already committed blob keeps its
    /// own link to the same inode) and makes the removal durable, so a
    /// crash does not bring back a session nobody will finish. Returns
    /// whether the upload existed.
    fn remove_upload_blocking(&self, id: &UploadId) -> Result<bool, StorageError> {
        if !self.unlink_upload(id)? {
            return Ok(false);
        }
        sync_dir(&self.uploads_dir())?;
        Ok(true)
    }

    /// Removes an upload's data file without making the removal durable;
    /// returns whether the upload existed.
    fn unlink_upload(&self, id: &UploadId) -> Result<bool, StorageError> {
        match fs::remove_file(self.upload_data_path(id)) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    fn delete_blob_blocking(&self, digest: &Digest) -> Result<(), StorageError> {
        let path = self.blob_path(digest);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(parent_of(&path)?)?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    fn list_uploads_blocking(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<StoredUpload>, StorageError> {
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        let mut ids: Vec<UploadId> = sorted_names(&self.uploads_dir())?
            .iter()
            .filter_map(|name| UploadId::parse(name))
            .filter(|id| after.is_none_or(|after| id > after))
            .collect();
        // Names sort as ids do (lowercase hyphenated UUIDs), but sorting the
        // parsed ids keeps that an implementation detail.
        ids.sort();
        for id in ids {
            let meta = match fs::metadata(self.upload_data_path(&id)) {
                Ok(meta) => meta,
                // Finished or aborted while we were listing.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error.into()),
            };
            found.push(StoredUpload {
                id,
                modified: unix_seconds(meta.modified()?),
            });
            if found.len() == limit {
                break;
            }
        }
        Ok(found)
    }

    fn list_blobs_blocking(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        let after = after.map(Digest::as_str);
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        // "sha256:" sorts before "sha512:", so walking the algorithms in this
        // order and each directory in name order yields digest-text order.
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let algorithm_dir = self.algorithm_dir(algorithm);
            for fan_out in sorted_names(&algorithm_dir)? {
                if !is_fan_out_name(&fan_out) {
                    continue;
                }
                // Every digest in this directory starts with `key`; when `key`
                // sorts before the same-length start of `after`, all of them do.
                let key = format!("{}:{fan_out}", algorithm.as_str());
                if after
                    .is_some_and(|after| after.get(..key.len()).is_some_and(|p| key.as_str() < p))
                {
                    continue;
                }
                let fan_out_dir = algorithm_dir.join(&fan_out);
                for name in sorted_names(&fan_out_dir)? {
                    if !name.starts_with(&fan_out) {
                        continue;
                    }
                    let Ok(digest) = Digest::parse(&format!("{}:{name}", algorithm.as_str()))
                    else {
                        continue;
                    };
                    if after.is_some_and(|after| digest.as_str() <= after) {
                        continue;
                    }
                    let meta = match fs::metadata(fan_out_dir.join(&name)) {
                        Ok(meta) if meta.is_file() => meta,
                        Ok(_) => continue,
                        // Deleted while we were listing: it is no longer stored.
                        Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                        Err(error) => return Err(error.into()),
                    };
                    found.push(StoredBlob {
                        digest,
                        size: meta.len(),
                        modified: unix_seconds(meta.modified()?),
                    });
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
        }
        Ok(found)
    }
}

#[async_trait::async_trait]
impl BlobStore for FsBlobStore {
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            // A directory where a blob belongs is debris, not a blob.
            Ok(_) => Ok(None),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, StorageError> {
        let path = self.blob_path(digest);
        run_blocking(move || open_blob_body(&path, range)).await
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<(), StorageError> {
        let store = self.clone();
        let digest = digest.clone();
        run_blocking(move || store.delete_blob_blocking(&digest)).await
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        let store = self.clone();
        let after = after.cloned();
        run_blocking(move || store.list_blobs_blocking(after.as_ref(), limit)).await
    }

    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<StoredUpload>, StorageError> {
        let store = self.clone();
        let after = after.cloned();
        run_blocking(move || store.list_uploads_blocking(after.as_ref(), limit)).await
    }

    async fn begin_upload(&self, id: &UploadId) -> Result<UploadProgress, StorageError> {
        let store = self.clone();
        let id_owned = id.clone();
        run_blocking(move || store.begin_upload_blocking(&id_owned)).await?;
        Ok(UploadProgress {
            size: 0,
            hash_state: Algorithm::Sha256.hasher().to_state(),
            backend_state: serde_json::Value::Null,
        })
    }

    async fn write_chunk(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        data: ByteStream,
    ) -> Result<UploadProgress, StorageError> {
        self.append(id, progress, data, Durability::Now).await
    }

    /// Writes the last chunk without its `fdatasync`, which
    /// `finish_upload` does only if these bytes become the blob. Many
    /// uploads of one blob at once (a base layer pushed by a fleet of
    /// builders) would otherwise each write the whole blob to the disk,
    /// where only one copy is kept: only the first of them starts the
    /// kernel's writeback early, and the others, finished once the blob is
    /// stored, are removed before their bytes leave the page cache.
    async fn write_last_chunk(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        data: ByteStream,
        expected: &Digest,
    ) -> Result<UploadProgress, StorageError> {
        let (closing, first) = self.closing.hold(expected);
        let mode = Durability::AtFinish {
            first,
            blob: self.blob_path(expected),
        };
        let written = self.append(id, progress, data, mode).await;
        drop(closing);
        written
    }

    async fn finish_upload(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        expected: &Digest,
    ) -> Result<u64, StorageError> {
        // Uploads of one blob that finish at once take turns when their
        // bytes are not synced: the first syncs and links them, and the
        // others then find the blob stored and discard theirs unwritten,
        // where each would otherwise sync a whole copy it then removes.
        let _turn = if is_unsynced(progress) {
            Some(Finishing::wait_turn(&self.finishing, expected).await)
        } else {
            None
        };
        let store = self.clone();
        let id = id.clone();
        let progress = progress.clone();
        let expected = expected.clone();
        run_blocking(move || store.finish_upload_blocking(&id, &progress, &expected)).await
    }

    async fn abort_upload(
        &self,
        id: &UploadId,
        _progress: Option<&UploadProgress>,
    ) -> Result<(), StorageError> {
        let store = self.clone();
        let id = id.clone();
        run_blocking(move || store.remove_upload_blocking(&id).map(|_| ())).await
    }

    async fn open_upload_file(&self, id: &UploadId) -> Result<Option<File>, StorageError> {
        let path = self.upload_data_path(id);
        run_blocking(move || match File::open(&path) {
            Ok(file) => Ok(Some(file)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Err(StorageError::UploadNotFound)
            }
            Err(error) => Err(error.into()),
        })
        .await
    }

    async fn check_ready(&self) -> Result<(), StorageError> {
        for dir in [self.root.join("blobs"), self.uploads_dir(), self.tmp_dir()] {
            if !tokio::fs::metadata(&dir).await?.is_dir() {
                return Err(StorageError::Backend(format!(
                    "{} is not a directory",
                    dir.display()
                )));
            }
        }
        // The directories being there says nothing about whether a push
        // would succeed: a full or read-only disk still lists them. A small
        // write, the size of a filesystem block, finds out.
        let probe = TempGuard::new(self.temp_path());
        run_blocking(move || {
            let mut file = File::create(probe.path())?;
            file.write_all(&[0; READY_PROBE_SIZE])?;
            drop(file);
            drop(probe);
            Ok(())
        })
        .await
    }
}

/// The bytes the readiness check writes: one filesystem block, so that a
/// disk without a free block fails it.
const READY_PROBE_SIZE: usize = 4096;

impl FsBlobStore {
    /// Appends `data` after `progress` with the durability `mode` asks for.
    async fn append(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        data: ByteStream,
        mode: Durability,
    ) -> Result<UploadProgress, StorageError> {
        // An upload without a hash state keeps going without one once it has
        // bytes: a state over only the later bytes would be wrong, and an
        // absent one makes finishing hash the stored data instead.
        let hasher = match (progress.hash_state.is_empty(), progress.size) {
            (true, 0) => Some(Algorithm::Sha256.hasher()),
            (true, _) => None,
            (false, _) => Some(Hasher::from_state(&progress.hash_state).ok_or_else(|| {
                StorageError::Backend(format!("upload {id} has an unreadable hash state"))
            })?),
        };
        // Opened by the first write, in its task on the blocking pool: a
        // task of its own was one more hand-off per chunk.
        let file = UploadFile::Closed {
            store: self.clone(),
            id: id.clone(),
            size: progress.size,
        };
        let written = self
            .write_chunk_to(file, progress, hasher, data, mode)
            .await;
        // A file that could not be opened (or was shorter than the
        // progress says) got nothing written.
        if written.as_ref().is_err_and(|error| {
            !matches!(
                error,
                StorageError::UploadNotFound | StorageError::ProgressConflict
            )
        }) {
            // Nothing past the caller's progress is of use, and on a full
            // disk it is what takes the space: give it back now, not at the
            // next write (which may never come). Only ever shortened: the
            // body may have failed before the first write opened the file,
            // and a file shorter than the progress must stay so, for the
            // next write to refuse it (zeros would pass for the bytes the
            // hash state covers).
            let path = self.upload_data_path(id);
            let size = progress.size;
            let cut = run_blocking(move || {
                let file = match OpenOptions::new().write(true).open(&path) {
                    Ok(file) => file,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(error) => return Err(error.into()),
                };
                if file.metadata()?.len() > size {
                    file.set_len(size)?;
                }
                Ok(())
            })
            .await;
            if let Err(error) = cut {
                tracing::warn!(%error, upload = %id, "cannot cut a failed write back");
            }
        }
        written
    }

    /// Streams `data` into the upload's `file`, positioned at
    /// `progress.size` once open, and returns the new progress.
    async fn write_chunk_to(
        &self,
        file: UploadFile,
        progress: &UploadProgress,
        hasher: Option<Hasher>,
        mut data: ByteStream,
        mode: Durability,
    ) -> Result<UploadProgress, StorageError> {
        let start = progress.size;
        let synced = mode == Durability::Now;
        let mut writer = ChunkWriter::new(file, start, hasher, mode);
        let mut batch = Batch::default();
        let mut batch_size = WRITE_BATCH_SIZE;
        // Held until this chunk is written, when the upload earns one.
        let mut large_batch_slot = None;
        let mut received: u64 = 0;
        while let Some(item) = data.next().await {
            let bytes = match item {
                Ok(bytes) => bytes,
                Err(error) => {
                    // Wait for the write in flight so that nothing touches the
                    // file after we return and the caller retries. What was
                    // written lies beyond `progress.size`, so the caller's
                    // progress stays valid and the retry discards it.
                    let _ = writer.settle().await;
                    return Err(StorageError::Incoming(error));
                }
            };
            received += bytes.len() as u64;
            // A piece is kept as it came (a reference into the connection's
            // read buffer), not copied: the batch is written straight from
            // the pieces, which removes a copy of every uploaded byte.
            batch.push(bytes);
            if batch.len >= batch_size {
                batch = writer.submit(batch).await?;
                // Only an upload that has already brought a large batch's
                // worth asks for a slot: small blobs never need one.
                if large_batch_slot.is_none() && received >= LARGE_WRITE_BATCH_SIZE as u64 {
                    large_batch_slot = self.large_batches.clone().try_acquire_owned().ok();
                    if large_batch_slot.is_some() {
                        batch_size = LARGE_WRITE_BATCH_SIZE;
                    }
                }
            }
        }
        let hasher = writer.finish(batch).await?;
        Ok(UploadProgress {
            size: progress.size + received,
            hash_state: hasher.map(|hasher| hasher.to_state()).unwrap_or_default(),
            // A synced chunk makes everything before it durable too.
            backend_state: match synced {
                true => serde_json::Value::Null,
                false => serde_json::json!({ UNSYNCED: true }),
            },
        })
    }
}

/// Writes buffers to an upload's file and hashes them on the blocking pool,
/// one buffer at a time, while the caller fills the next one from the network.
///
/// If the owning future is dropped mid-upload, the one write in flight still
/// completes in the background; the caller's lease on the upload is what keeps
/// a retry from racing it.
struct ChunkWriter {
    state: WriterState,
    /// Whether the chunk is fsynced when it ends.
    sync: bool,
}

enum WriterState {
    /// No write in flight. Boxed because a sha512 hasher makes the parts large
    /// and they move between the runtime and the blocking pool on every write.
    Idle(Box<WriterParts>),
    /// A write in flight, which hands the parts back with an emptied buffer.
    Busy(JoinHandle<io::Result<Box<WriterParts>>>),
    /// A write failed or the writer was settled; nothing more may be written.
    Done,
}

struct WriterParts {
    file: UploadFile,
    /// `None` when the upload has no usable hash state (see `write_chunk`).
    hasher: Option<Hasher>,
    /// The emptied batch handed back to the caller for refilling.
    spare: Batch,
    /// Writeback of the data written so far, so that the `fdatasync` which
    /// ends every chunk finds little left to do.
    writeback: Writeback,
}

/// An upload's data file, for a chunk's writes.
enum UploadFile {
    /// Not opened yet: opened, and cut back to `size` (what a failed
    /// earlier write left beyond it), by the first write.
    Closed {
        store: FsBlobStore,
        id: UploadId,
        size: u64,
    },
    /// Open, positioned after the bytes written so far.
    Open(File),
}

impl UploadFile {
    /// The file, opened now if it was not. A failure to open it is the
    /// `StorageError` inside the `io::Error` ([`writer_error`] takes it
    /// out).
    fn open(&mut self) -> io::Result<&mut File> {
        if let UploadFile::Closed { store, id, size } = self {
            let file = store.open_upload_at(id, *size).map_err(io::Error::other)?;
            *self = UploadFile::Open(file);
        }
        match self {
            UploadFile::Open(file) => Ok(file),
            UploadFile::Closed { .. } => unreachable!("opened above"),
        }
    }
}

/// A chunk writer's error: the storage error an [`UploadFile`] failed to
/// open with, or the I/O error of a write.
fn writer_error(error: io::Error) -> StorageError {
    if !error
        .get_ref()
        .is_some_and(|inner| inner.is::<StorageError>())
    {
        return error.into();
    }
    let inner = error.into_inner().expect("checked above");
    *inner.downcast::<StorageError>().expect("checked above")
}

/// Starts the kernel's writeback of an upload's data every
/// [`WRITEBACK_STEP`] bytes, while the rest is still arriving.
///
/// Without it, a large upload leaves hundreds of megabytes dirty in the page
/// cache (below the kernel's own background threshold) and the closing
/// `fdatasync` writes all of them at once, after the last byte was received:
/// on a fast disk that was a third of a 512 MiB push's wall time. Only the
/// range written since the previous call is handed to the kernel, so each
/// call costs the same however large the file already is (a whole-file
/// `sync_file_range` walks every page written so far, and was slower).
/// `SYNC_FILE_RANGE_WRITE` only starts the writes; durability still comes
/// from the `fdatasync` at the end of the chunk.
struct Writeback {
    /// The file offset the next write lands at.
    written: u64,
    /// The offset up to which writeback has been started.
    started: u64,
    /// Off for bytes likely to be discarded (see [`Durability::AtFinish`]).
    enabled: bool,
    /// The blob the bytes are to become, looked up once before the first
    /// writeback: when it is stored already, the bytes are a copy that the
    /// finish discards, and writeback stays off.
    blob: Option<PathBuf>,
}

/// How much data accumulates before its writeback is started.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

impl Writeback {
    fn at(offset: u64, enabled: bool, blob: Option<PathBuf>) -> Self {
        Writeback {
            written: offset,
            started: offset,
            enabled,
            blob,
        }
    }

    fn wrote(&mut self, file: &File, len: usize) {
        self.written += len as u64;
        if self.enabled && self.written - self.started >= WRITEBACK_STEP {
            // A small blob never gets here, so it pays for no lookup.
            if self.blob.take().is_some_and(|blob| blob.exists()) {
                self.enabled = false;
                return;
            }
            start_writeback(file, self.started, self.written - self.started);
            self.started = self.written;
        }
    }
}

#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and
    // the call reads no memory of ours.
    let result = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if result != 0 {
        // Only an optimisation fails here: the closing fdatasync still
        // writes the range and reports a real I/O error.
        tracing::debug!(error = %io::Error::last_os_error(), "sync_file_range failed");
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// When a chunk's bytes are made durable.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Durability {
    /// Before the write returns (`write_chunk`).
    Now,
    /// By `finish_upload`, and only if the bytes become the blob at `blob`
    /// (`write_last_chunk`). The kernel's writeback is started while they
    /// arrive only for the copy likely to be kept: the `first` of the
    /// uploads of that blob writing at once, and only while the blob is
    /// not stored yet.
    AtFinish { first: bool, blob: PathBuf },
}

/// The key of `UploadProgress::backend_state` that marks bytes written by
/// `write_last_chunk` and not yet fsynced; `finish_upload` syncs them
/// before it links them.
const UNSYNCED: &str = "unsynced";

fn is_unsynced(progress: &UploadProgress) -> bool {
    progress.backend_state.get(UNSYNCED) == Some(&serde_json::Value::Bool(true))
}

/// Something the uploads of one digest share while any of them holds it:
/// the first to ask makes the entry, and the last to let go removes it, so
/// the map only ever holds the digests in use. Shared by the clones of one
/// store.
struct PerDigest<T>(Arc<Mutex<HashMap<Digest, Arc<T>>>>);

impl<T> Default for PerDigest<T> {
    fn default() -> Self {
        PerDigest(Arc::default())
    }
}

impl<T> Clone for PerDigest<T> {
    fn clone(&self) -> Self {
        PerDigest(Arc::clone(&self.0))
    }
}

impl<T> std::fmt::Debug for PerDigest<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerDigest").finish_non_exhaustive()
    }
}

impl<T: Default> PerDigest<T> {
    /// Holds `digest`'s entry until the returned value is dropped; the flag
    /// says whether nobody else held it.
    fn hold(&self, digest: &Digest) -> (Held<T>, bool) {
        let mut map = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        // An entry exists exactly while someone holds it (the last hold
        // removes it), so whoever makes it is the only holder.
        let (value, first) = match map.entry(digest.clone()) {
            Entry::Occupied(entry) => (Arc::clone(entry.get()), false),
            Entry::Vacant(entry) => (Arc::clone(entry.insert(Arc::default())), true),
        };
        drop(map);
        let held = Held {
            map: self.clone(),
            digest: digest.clone(),
            value: Some(value),
        };
        (held, first)
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }
}

/// A hold on one digest's entry of a [`PerDigest`].
struct Held<T> {
    map: PerDigest<T>,
    digest: Digest,
    /// Taken in `drop`, so that the count is read without this reference.
    value: Option<Arc<T>>,
}

impl<T> Held<T> {
    fn value(&self) -> &Arc<T> {
        self.value.as_ref().expect("held until dropped")
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        let mut map = self
            .map
            .0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        drop(self.value.take());
        // Any other reference (another hold, or a turn being waited for or
        // held, which keeps an `Arc` of its own) keeps the entry.
        if map
            .get(&self.digest)
            .is_some_and(|value| Arc::strong_count(value) == 1)
        {
            map.remove(&self.digest);
        }
    }
}

/// An upload's turn to finish among the uploads of its digest whose last
/// chunk is not synced, held until dropped.
struct Finishing {
    /// Declared first so that it is dropped first: the turn's `Arc`, which
    /// the guard holds, must be gone before `_held` looks at the count.
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _held: Held<tokio::sync::Mutex<()>>,
}

impl Finishing {
    /// Waits until no other upload of `digest` is finishing.
    async fn wait_turn(turns: &PerDigest<tokio::sync::Mutex<()>>, digest: &Digest) -> Self {
        // Held before the wait, so that a caller that gives up while
        // waiting still lets go of the entry it may have made.
        let (held, _) = turns.hold(digest);
        let guard = Arc::clone(held.value()).lock_owned().await;
        Finishing {
            _guard: guard,
            _held: held,
        }
    }
}

/// Pieces of a request body waiting to be written, in order.
#[derive(Default)]
struct Batch {
    pieces: Vec<Bytes>,
    /// Bytes in `pieces`.
    len: usize,
}

impl Batch {
    fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push(piece);
        }
    }

    /// Writes every piece to `file` with as few `writev`s as the pieces
    /// allow, hashes them, and empties the batch (keeping its capacity).
    fn write_to(&mut self, file: &mut File, hasher: Option<&mut Hasher>) -> io::Result<()> {
        let mut slices: Vec<io::IoSlice<'_>> = self
            .pieces
            .iter()
            .map(|piece| io::IoSlice::new(piece))
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => io::IoSlice::advance_slices(&mut rest, written),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        drop(slices);
        if let Some(hasher) = hasher {
            for piece in &self.pieces {
                hasher.update(piece);
            }
        }
        self.pieces.clear();
        self.len = 0;
        Ok(())
    }
}

impl ChunkWriter {
    fn new(file: UploadFile, offset: u64, hasher: Option<Hasher>, mode: Durability) -> Self {
        let (sync, writeback) = match mode {
            Durability::Now => (true, Writeback::at(offset, true, None)),
            Durability::AtFinish { first, blob } => {
                (false, Writeback::at(offset, first, Some(blob)))
            }
        };
        ChunkWriter {
            state: WriterState::Idle(Box::new(WriterParts {
                file,
                hasher,
                spare: Batch::default(),
                writeback,
            })),
            sync,
        }
    }

    /// Starts writing `batch` and returns an empty batch to fill next.
    async fn submit(&mut self, mut batch: Batch) -> Result<Batch, StorageError> {
        let mut parts = self.wait_idle().await?;
        std::mem::swap(&mut parts.spare, &mut batch);
        self.state = WriterState::Busy(tokio::task::spawn_blocking(move || {
            let WriterParts {
                file,
                hasher,
                spare,
                writeback,
            } = &mut *parts;
            let file = file.open()?;
            let len = spare.len;
            spare.write_to(file, hasher.as_mut())?;
            writeback.wrote(file, len);
            Ok(parts)
        }));
        Ok(batch)
    }

    /// Writes the last `batch` (which may be empty) after the write in
    /// flight, then `fdatasync`s the file unless the chunk's durability is
    /// left to the finish, and returns the hasher. The last
    /// write and the sync are one task on the blocking pool: a small blob
    /// is a single batch, and a task of its own for the sync was one more
    /// hand-off to a blocking thread and back per chunk.
    async fn finish(&mut self, mut batch: Batch) -> Result<Option<Hasher>, StorageError> {
        let mut parts = self.wait_idle().await?;
        let sync = self.sync;
        let handle = tokio::task::spawn_blocking(move || {
            let WriterParts {
                file,
                hasher,
                writeback,
                ..
            } = &mut *parts;
            // Opened even for no bytes: a chunk to an upload that is gone
            // fails, and leftovers of a failed write are cut back.
            let file = file.open()?;
            if batch.len > 0 {
                let len = batch.len;
                batch.write_to(file, hasher.as_mut())?;
                writeback.wrote(file, len);
            }
            if sync {
                file.sync_data()?;
            }
            Ok::<_, io::Error>(parts)
        });
        let parts = join_blocking(handle).await?.map_err(writer_error)?;
        Ok(parts.hasher)
    }

    /// Waits for the write in flight.
    async fn settle(&mut self) -> Result<(), StorageError> {
        self.wait_idle().await.map(drop)
    }

    async fn wait_idle(&mut self) -> Result<Box<WriterParts>, StorageError> {
        match std::mem::replace(&mut self.state, WriterState::Done) {
            WriterState::Idle(parts) => Ok(parts),
            WriterState::Busy(handle) => join_blocking(handle).await?.map_err(writer_error),
            WriterState::Done => Err(StorageError::Backend(
                "the upload writer was used after it failed".into(),
            )),
        }
    }
}

/// The body of a blob read from `file` while it is still being written:
/// its first `len` bytes, each read once `growing` says it may be. A server
/// may send the region (see [`FileRegion::growing`]); the stream reads the
/// file in pieces on the blocking pool.
pub fn growing_body(file: Arc<File>, len: u64, growing: Arc<dyn Growing>) -> BlobBody {
    /// The most one piece of the stream holds.
    const PIECE: u64 = 256 * 1024;
    let region = FileRegion {
        file: Arc::clone(&file),
        offset: 0,
        growing: Some(Arc::clone(&growing)),
    };
    // (bytes read, bytes known readable); `None` once it failed.
    let stream = futures::stream::unfold(Some((0u64, 0u64)), move |at| {
        let (file, growing) = (Arc::clone(&file), Arc::clone(&growing));
        async move {
            let (read, mut readable) = at?;
            if read == len {
                return None;
            }
            if readable == read {
                match growing.more(read).await {
                    Ok(now) => readable = now.min(len),
                    Err(error) => return Some((Err(error), None)),
                }
            }
            let n = (readable - read).min(PIECE) as usize;
            let piece = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut bytes = vec![0; n];
                file.read_exact_at(&mut bytes, read)?;
                Ok::<_, io::Error>(Bytes::from(bytes))
            })
            .await
            .unwrap_or_else(|error| Err(io::Error::other(error)));
            match piece {
                Ok(piece) => Some((Ok(piece), Some((read + n as u64, readable)))),
                Err(error) => Some((Err(error), None)),
            }
        }
    });
    BlobBody {
        len,
        stream: Box::pin(stream),
        file: Some(region),
    }
}

/// Removes a path in `tmp/` when dropped, so that an error or a panic while a
/// temporary is in use leaves nothing behind.
struct TempGuard {
    path: Option<PathBuf>,
}

impl TempGuard {
    fn new(path: PathBuf) -> Self {
        TempGuard { path: Some(path) }
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(error) = remove_path(&path) {
                tracing::warn!(%error, path = %path.display(), "cannot remove a temporary");
            }
        }
    }
}

/// Runs filesystem work on the blocking pool so it never stalls the runtime.
/// Opens a committed blob and prepares the body of a read of `range` (the
/// whole blob when `None`).
///
/// Large reads are served from a read-only memory map: the stream's pieces
/// are slices of the map, so the bytes go from the page cache to the socket
/// with one copy, in the kernel, instead of a `read` into a buffer and a
/// `write` out of it (two copies and a blocking-pool round trip per piece).
/// This is as close to `sendfile` as a body that goes through hyper can get.
///
/// Mapping is sound here because a blob file is never written after it is
/// committed: it appears by a link or rename of a fully written, fsynced
/// file, and it disappears by `unlink`, which leaves an existing map intact.
/// Only a file truncated behind Berth's back (by hand, or a broken disk)
/// could fault a reader, as it would corrupt any reader's answer.
///
/// Page faults on the map happen where the socket write touches the pages,
/// on a runtime thread; a `MADV_WILLNEED` on each window, mapped one window
/// ahead of the one being sent, starts the disk reads early, so a cold blob
/// mostly costs asynchronous readahead rather than a blocked thread.
fn open_blob_body(path: &Path, range: Option<ByteRange>) -> Result<BlobBody, StorageError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(StorageError::BlobNotFound)
        }
        Err(error) => return Err(error.into()),
    };
    let size = file.metadata()?.len();
    let (start, len) = match range {
        None => (0, size),
        Some(range) if range.start <= range.end && range.end <= size => (range.start, range.len()),
        Some(range) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "range {}..{} lies outside a blob of {size} bytes",
                    range.start, range.end
                ),
            )
            .into())
        }
    };
    if len < MAP_THRESHOLD {
        let mut bytes = vec![0; len as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut bytes)?;
        let piece = Bytes::from(bytes);
        return Ok(BlobBody::streamed(
            len,
            Box::pin(futures::stream::once(async move { Ok(piece) })),
        ));
    }
    let file = Arc::new(file);
    let region = FileRegion::committed(Arc::clone(&file), start);
    // Nothing is mapped until the stream is polled, so a caller that sends
    // the region instead pays nothing for the stream.
    let pieces = MapWindows {
        file,
        start,
        len,
        offset: 0,
        ahead: None,
    };
    Ok(BlobBody {
        len,
        stream: Box::pin(futures::stream::iter(pieces)),
        file: Some(region),
    })
}

/// The pieces of a large read: consecutive windows of [`READ_CHUNK_SIZE`]
/// bytes, each mapped on its own and unmapped when the socket is done with
/// it. Mapping window by window (instead of the whole range at once) keeps
/// the pages a pull has touched from piling up in the server's resident
/// memory, and keeps address space bounded on 32-bit-sized budgets.
struct MapWindows {
    file: Arc<File>,
    /// Where the read starts in the file.
    start: u64,
    /// Bytes in the read.
    len: u64,
    /// Bytes of the read already handed out.
    offset: u64,
    /// The next window, mapped one step early so that the kernel reads it
    /// from disk while the current one is being sent.
    ahead: Option<io::Result<memmap2::Mmap>>,
}

impl MapWindows {
    /// Maps the window at `offset` within the read and asks the kernel to
    /// start reading it in. The advice is a hint: a kernel that ignores it
    /// serves the map all the same, by faulting pages in on first touch.
    fn map_window(&self, offset: u64) -> io::Result<memmap2::Mmap> {
        let length = (self.len - offset).min(READ_CHUNK_SIZE as u64) as usize;
        // SAFETY: the file is a committed blob, which nothing writes or
        // truncates (see `open_blob_body`); the map is read-only and lives as
        // long as the `Bytes` that points into it.
        let map = unsafe {
            MmapOptions::new()
                .offset(self.start + offset)
                .len(length)
                .map(&*self.file)?
        };
        let _ = map.advise(Advice::WillNeed);
        Ok(map)
    }
}

impl Iterator for MapWindows {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.offset >= self.len {
            return None;
        }
        let current = match self.ahead.take() {
            Some(mapped) => mapped,
            None => self.map_window(self.offset),
        };
        let current = match current {
            Ok(map) => map,
            Err(error) => {
                // A failed map ends the body: the client sees a short read
                // and retries, as after any I/O error mid-stream.
                self.offset = self.len;
                return Some(Err(error));
            }
        };
        self.offset += current.len() as u64;
        if self.offset < self.len {
            self.ahead = Some(self.map_window(self.offset));
        }
        Some(Ok(Bytes::from_owner(current)))
    }
}

async fn run_blocking<T, F>(work: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    join_blocking(tokio::task::spawn_blocking(work)).await?
}

/// Awaits a blocking task, passing a panic on to the caller as the panic it was.
async fn join_blocking<T>(handle: JoinHandle<T>) -> Result<T, StorageError> {
    match handle.await {
        Ok(value) => Ok(value),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(StorageError::Backend(format!(
            "a filesystem task was cancelled: {error}"
        ))),
    }
}

fn open_upload_data(path: &Path) -> Result<File, StorageError> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => Ok(file),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(StorageError::UploadNotFound),
        Err(error) => Err(error.into()),
    }
}

/// Cuts what a failed earlier write left beyond `size`; a file shorter than
/// `size` means the caller's progress is not what is stored.
fn truncate_to_progress(file: &File, size: u64) -> Result<bool, StorageError> {
    let len = file.metadata()?.len();
    if len < size {
        return Err(StorageError::ProgressConflict);
    }
    if len > size {
        file.set_len(size)?;
        return Ok(true);
    }
    Ok(false)
}

/// Hashes a whole file from its start, streaming.
fn hash_file(file: &mut File, algorithm: Algorithm) -> Result<Digest, StorageError> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = algorithm.hasher();
    let mut buffer = vec![0u8; REHASH_BUFFER_SIZE];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => hasher.update(&buffer[..n]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error.into()),
        }
    }
}

/// Finds out whether hard links work under `tmp_dir` by making one.
fn detect_commit_mode(tmp_dir: &Path) -> Result<CommitMode, StorageError> {
    let probe_name = format!("{}.link-probe", uuid::Uuid::new_v4());
    let probe = TempGuard::new(tmp_dir.join(&probe_name));
    let link = TempGuard::new(tmp_dir.join(format!("{probe_name}.link")));
    File::create(probe.path())?;
    match fs::hard_link(probe.path(), link.path()) {
        Ok(()) => Ok(CommitMode::HardLink),
        // Filesystems without hard links answer EPERM (FAT, some FUSE) or
        // EOPNOTSUPP; anything else is a real problem with the directory.
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::Unsupported
            ) =>
        {
            tracing::info!(%error, "hard links unavailable; committing blobs by rename");
            Ok(CommitMode::Rename)
        }
        Err(error) => Err(error.into()),
    }
}

/// Flushes a directory's entries to disk, which makes a rename, link or
/// unlink in it durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(path)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Other platforms offer no portable way to sync a directory.
        let _ = path;
        Ok(())
    }
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent directory", path.display()),
        )
    })
}

/// Removes a file or a directory tree; an absent path is not an error.
fn remove_path(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(error) => Err(error),
    };
    match result {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The names in a directory, sorted; an absent directory has none. Names that
/// are not UTF-8 cannot be digests and are left out.
fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

fn is_fan_out_name(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// What the shared suite checks after each scenario: every upload and temporary
/// the store still holds.
#[cfg(any(test, feature = "test-suite"))]
#[async_trait::async_trait]
impl crate::suite::Leftovers for FsBlobStore {
    async fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for dir in [self.uploads_dir(), self.tmp_dir()] {
            match sorted_names(&dir) {
                Ok(names) => found.extend(
                    names
                        .into_iter()
                        .map(|name| dir.join(name).display().to_string()),
                ),
                // An unlistable directory fails the check rather than hiding remains.
                Err(error) => found.push(format!("cannot list {}: {error}", dir.display())),
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request body of one piece.
    fn chunk(bytes: &'static [u8]) -> ByteStream {
        crate::suite::stream_of(vec![Bytes::from_static(bytes)])
    }

    /// An entry listed in `uploads/` and gone before it is looked at (an
    /// upload that finished meanwhile) is not an error: the store opens.
    #[test]
    fn vanished_upload_entry_is_not_converted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path().to_path_buf()).expect("open");
        let gone = UploadId::new_random().to_string();
        store
            .convert_legacy_upload(&gone)
            .expect("a vanished entry is skipped");
        assert!(!store.uploads_dir().join(&gone).exists());
    }

    /// Of the uploads of one digest writing their last chunks at once, only
    /// the first starts early writeback; once all are done, the next one is
    /// first again, and other digests are counted apart.
    #[test]
    fn only_the_first_last_chunk_of_a_digest_is_written_back_early() {
        let uploads = PerDigest::<()>::default();
        let one = Algorithm::Sha256.digest_of(b"one");
        let two = Algorithm::Sha256.digest_of(b"two");
        let (a, first) = uploads.hold(&one);
        assert!(first);
        let (b, first) = uploads.hold(&one);
        assert!(!first);
        let (c, first) = uploads.hold(&two);
        assert!(first, "another digest is counted apart");
        drop(a);
        let (d, first) = uploads.hold(&one);
        assert!(!first, "b is still writing");
        drop((b, d, c));
        assert!(uploads.is_empty(), "entries are removed");
        let (_e, first) = uploads.hold(&one);
        assert!(first);
    }

    /// Finishes of one digest take turns, finishes of others do not wait,
    /// and the turns are forgotten once nobody holds or awaits them.
    #[tokio::test]
    async fn finishes_of_one_digest_take_turns() {
        let turns = PerDigest::default();
        let one = Algorithm::Sha256.digest_of(b"one");
        let two = Algorithm::Sha256.digest_of(b"two");
        let first = Finishing::wait_turn(&turns, &one).await;
        let other = Finishing::wait_turn(&turns, &two).await;
        let waiting = tokio::spawn({
            let (turns, one) = (turns.clone(), one.clone());
            async move {
                let _second = Finishing::wait_turn(&turns, &one).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the second finish waits");
        drop(first);
        waiting.await.expect("the second finish gets its turn");
        drop(other);
        assert!(turns.is_empty(), "turns are removed");

        // A finish given up while it waits (its request went away) leaves
        // nothing behind either.
        let first = Finishing::wait_turn(&turns, &one).await;
        let given_up = tokio::spawn({
            let (turns, one) = (turns.clone(), one.clone());
            async move {
                let _never = Finishing::wait_turn(&turns, &one).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        given_up.abort();
        assert!(given_up.await.unwrap_err().is_cancelled());
        drop(first);
        assert!(turns.is_empty(), "a waiter gave up");
    }

    /// A last chunk's progress says its bytes are not synced, so the finish
    /// syncs them; a chunk written by `write_chunk` after it syncs the file
    /// and clears the mark.
    #[tokio::test]
    async fn last_chunk_progress_is_marked_unsynced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path().to_path_buf()).expect("open");
        let id = UploadId::new_random();
        let begun = store.begin_upload(&id).await.expect("begin");
        assert!(!is_unsynced(&begun));
        let data = Bytes::from_static(b"last");
        let digest = Algorithm::Sha256.digest_of(&data);
        let last = store
            .write_last_chunk(&id, &begun, crate::suite::stream_of(vec![data]), &digest)
            .await
            .expect("last chunk");
        assert!(is_unsynced(&last));
        let more = store
            .write_chunk(&id, &last, chunk(b" more"))
            .await
            .expect("chunk");
        assert!(!is_unsynced(&more));
        store.abort_upload(&id, Some(&more)).await.expect("abort");
    }

    /// A body that fails before its first write never lengthens the file:
    /// a file shorter than the progress stays shorter, and the next write
    /// still refuses the progress (zeros would pass for bytes the hash
    /// state covers). One longer than the progress is cut back to it.
    #[tokio::test]
    async fn a_body_failing_before_its_first_write_only_ever_shortens_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path().to_path_buf()).expect("open");
        let id = UploadId::new_random();
        let begun = store.begin_upload(&id).await.expect("begin");
        let written = store
            .write_chunk(&id, &begun, chunk(b"0123456789"))
            .await
            .expect("chunk");
        let failing = || -> ByteStream {
            Box::pin(futures::stream::once(async {
                Err(io::Error::other("the client went away"))
            }))
        };
        let file_len = || {
            std::fs::metadata(store.upload_data_path(&id))
                .expect("the upload's file")
                .len()
        };
        // (the progress's size, the file's length after the failed body)
        for (size, after) in [(14, 10), (4, 4)] {
            let progress = UploadProgress {
                size,
                ..written.clone()
            };
            let failed = store.write_chunk(&id, &progress, failing()).await;
            assert!(
                matches!(failed, Err(StorageError::Incoming(_))),
                "{size}: {failed:?}"
            );
            assert_eq!(file_len(), after, "{size}");
        }
        let ahead = UploadProgress {
            size: 14,
            ..written.clone()
        };
        let refused = store.write_chunk(&id, &ahead, chunk(b"x")).await;
        assert!(
            matches!(refused, Err(StorageError::ProgressConflict)),
            "{refused:?}"
        );
        assert_eq!(file_len(), 4, "a refused write changes nothing");
        store.abort_upload(&id, None).await.expect("abort");
    }

    /// The rename fallback is only chosen on exotic filesystems, so the suite
    /// runs against it here by forcing the mode.
    #[tokio::test]
    async fn suite_passes_when_committing_by_rename() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = FsBlobStore::open(dir.path().to_path_buf()).expect("open");
        assert_eq!(store.commit_mode, CommitMode::HardLink);
        store.commit_mode = CommitMode::Rename;
        crate::suite::run_all(&store, &store).await;
    }
}
