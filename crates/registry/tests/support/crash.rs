//! Simulated crashes at exact points of a registry operation.
//!
//! [`CrashingBlobs`] wraps a blob store and counts every step it takes: the
//! moment before each call reaches the real store and the moment after it
//! returned. Armed with a step number, it panics at that step, in the task
//! running the registry operation, so nothing of the operation after that
//! point runs, just as if the process had been killed there; what the real
//! store did before (a file created, a blob linked) stays done. A test then
//! builds a new registry on the same stores, as a restarted process would.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use berth_oci::{ByteRange, Digest, UploadId};
use berth_storage::{
    BlobBody, BlobStore, ByteStream, StorageError, StoredBlob, StoredUpload, UploadProgress,
};

/// The text of the panic that stands for a crash, recognised by the panic
/// hook installed by [`quiet_simulated_crashes`].
pub const CRASH: &str = "simulated crash";

/// A blob store that crashes its caller at a chosen step.
pub struct CrashingBlobs {
    pub inner: Arc<dyn BlobStore>,
    /// Steps taken so far.
    steps: AtomicUsize,
    /// The step that crashes; `usize::MAX` never does.
    crash_at: AtomicUsize,
    /// Whether `finish_upload` fails, with an error rather than a crash,
    /// without reaching the real store.
    pub fail_finishes: AtomicBool,
}

impl CrashingBlobs {
    pub fn new(inner: Arc<dyn BlobStore>) -> CrashingBlobs {
        CrashingBlobs {
            inner,
            steps: AtomicUsize::new(0),
            crash_at: AtomicUsize::new(usize::MAX),
            fail_finishes: AtomicBool::new(false),
        }
    }

    /// Makes step `step` (counting from zero, from now on) crash.
    pub fn arm(&self, step: usize) {
        self.steps.store(0, Ordering::SeqCst);
        self.crash_at.store(step, Ordering::SeqCst);
    }

    /// Stops crashing and returns how many steps were taken since arming.
    pub fn disarm(&self) -> usize {
        self.crash_at.store(usize::MAX, Ordering::SeqCst);
        self.steps.load(Ordering::SeqCst)
    }

    fn step(&self, what: &str) {
        let step = self.steps.fetch_add(1, Ordering::SeqCst);
        if step == self.crash_at.load(Ordering::SeqCst) {
            panic!("{CRASH} at step {step} ({what})");
        }
    }
}

/// Silences the panic message of simulated crashes (they are expected and
/// would bury a real failure's message); other panics print as usual.
pub fn quiet_simulated_crashes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.starts_with(CRASH) {
                default(info);
            }
        }));
    });
}

/// Each call is two steps: before it reaches the real store, and after.
macro_rules! stepped {
    ($self:ident, $name:literal, $call:expr) => {{
        $self.step(concat!("before ", $name));
        let result = $call.await;
        $self.step(concat!("after ", $name));
        result
    }};
}

#[async_trait::async_trait]
impl BlobStore for CrashingBlobs {
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        stepped!(self, "blob_size", self.inner.blob_size(digest))
    }

    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody, StorageError> {
        stepped!(self, "read_blob", self.inner.read_blob(digest, range))
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<(), StorageError> {
        stepped!(self, "delete_blob", self.inner.delete_blob(digest))
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        stepped!(self, "list_blobs", self.inner.list_blobs(after, limit))
    }

    async fn list_uploads(
        &self,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<StoredUpload>, StorageError> {
        stepped!(self, "list_uploads", self.inner.list_uploads(after, limit))
    }

    async fn begin_upload(&self, id: &UploadId) -> Result<UploadProgress, StorageError> {
        stepped!(self, "begin_upload", self.inner.begin_upload(id))
    }

    async fn write_chunk(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        data: ByteStream,
    ) -> Result<UploadProgress, StorageError> {
        stepped!(
            self,
            "write_chunk",
            self.inner.write_chunk(id, progress, data)
        )
    }

    async fn write_last_chunk(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        data: ByteStream,
        expected: &Digest,
    ) -> Result<UploadProgress, StorageError> {
        stepped!(
            self,
            "write_last_chunk",
            self.inner.write_last_chunk(id, progress, data, expected)
        )
    }

    async fn finish_upload(
        &self,
        id: &UploadId,
        progress: &UploadProgress,
        expected: &Digest,
    ) -> Result<u64, StorageError> {
        if self.fail_finishes.load(Ordering::SeqCst) {
            return Err(StorageError::Backend("simulated failure".into()));
        }
        stepped!(
            self,
            "finish_upload",
            self.inner.finish_upload(id, progress, expected)
        )
    }

    async fn abort_upload(
        &self,
        id: &UploadId,
        progress: Option<&UploadProgress>,
    ) -> Result<(), StorageError> {
        stepped!(self, "abort_upload", self.inner.abort_upload(id, progress))
    }

    async fn check_ready(&self) -> Result<(), StorageError> {
        stepped!(self, "check_ready", self.inner.check_ready())
    }
}
