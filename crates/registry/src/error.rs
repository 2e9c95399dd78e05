//! Errors of the registry domain and their spec error codes.
//!
//! The registry names what went wrong (a variant, with the facts the edge
//! needs, such as where an upload ends) and its spec [`ErrorCode`]; which
//! HTTP status that becomes is the server's business (`server/src/error.rs`).

use berth_meta::MetaError;
use berth_oci::{Digest, ErrorCode};
use berth_storage::{StorageError, Unavailability};

/// What the registry depends on, for saying which one is unavailable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    /// The metadata store.
    Database,
    /// The blob store.
    Storage,
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dependency::Database => "database",
            Dependency::Storage => "storage",
        })
    }
}

/// Everything a registry operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob unknown to registry")]
    BlobUnknown,
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("upload unknown to registry")]
    UploadUnknown,
    #[error("namespace unknown to registry")]
    NamespaceUnknown,
    #[error("the namespace exists already")]
    NamespaceExists,
    /// The same rule (scope and pattern) exists already.
    #[error("the rule exists already")]
    RuleExists,
    /// A namespace is deleted only once it holds no repositories, unless the
    /// deletion is forced.
    /// No replication rule has this name.
    #[error("no replication rule is named {0:?}")]
    ReplicationRuleUnknown(String),
    /// Another run of the rule holds its lease (on this node or another).
    #[error("replication rule {0:?} is running already; try again when it finishes")]
    ReplicationBusy(String),
    /// A sync of the advisory sources runs already (on this node or another).
    #[error("an advisory sync is running already; try again when it finishes")]
    AdvisorySyncBusy,
    #[error("the namespace holds repositories")]
    NamespaceNotEmpty,
    /// The chunk does not start where the upload ends: HTTP 416.
    #[error("chunk starts at {given}, but the upload holds {expected} bytes")]
    ChunkOutOfOrder { given: u64, expected: u64 },
    /// The chunk's body is not as long as its `Content-Range` says; nothing
    /// of it was kept. `size` is what the upload holds, unchanged.
    #[error("the chunk's body is not the {declared} bytes its range declares")]
    ChunkSizeMismatch { declared: u64, size: u64 },
    /// Another request is writing to this upload right now.
    #[error("upload is being written by another request")]
    UploadBusy,
    #[error("upload invalid: {0}")]
    UploadInvalid(String),
    /// No new upload session may open: `who` (a repository or a principal)
    /// has `limit` open already.
    #[error("{who} has {limit} open upload sessions, the most allowed; finish or cancel some, or let them expire")]
    TooManyUploads { who: String, limit: u64 },
    #[error("provided digest did not match uploaded content (computed {computed})")]
    DigestMismatch { computed: Digest },
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest is larger than the {0} bytes allowed")]
    ManifestTooLarge(usize),
    #[error("manifest references unknown blobs or manifests: {0:?}")]
    ManifestBlobUnknown(Vec<Digest>),
    /// The manifest (or a referrer that would go with it) is listed by an
    /// index of the same repository: the index must be deleted first.
    #[error("the manifest is listed by index {0} in this repository; delete that index first")]
    ManifestReferenced(Digest),
    /// The change would move or delete a tag an immutable-tag rule covers;
    /// `rule` is the rule as `berth immutable list` shows it.
    #[error("tag {tag} is immutable: rule \"{rule}\" forbids moving or deleting it")]
    ImmutableTag { tag: berth_oci::Tag, rule: String },
    /// The push would take the namespace beyond its storage quota; nothing
    /// was stored.
    #[error(
        "storage quota exceeded: namespace {} holds {} bytes of its {} byte limit, and this push would add {}",
        .0.namespace, .0.usage, .0.limit, .0.adding
    )]
    StorageQuotaExceeded(Box<berth_meta::QuotaExceeded>),
    /// The namespace has served its monthly pull-traffic limit; the month
    /// ends (UTC) in `retry_after` seconds.
    #[error("pull traffic quota exceeded: namespace {namespace} has served {used} bytes this month, its limit is {limit}; the quota resets at the start of next month (UTC)")]
    TrafficQuotaExceeded {
        namespace: String,
        used: u64,
        limit: u64,
        retry_after: u64,
    },
    /// Garbage collection was deleting the bytes this upload was deduplicated
    /// against; nothing was linked and the client should push the blob again.
    #[error("the blob was being garbage-collected while it was pushed; push it again")]
    BlobBeingCollected,
    /// A client tried to change a proxy namespace (the namespace named),
    /// whose content only comes from its upstream.
    #[error("namespace {0} is a pull-through cache of an upstream registry: it is read-only (push to another namespace)")]
    ProxyReadOnly(String),
    /// The upstream of a proxy namespace asked to slow down and nothing
    /// was cached; its `Retry-After` (seconds) if it gave one.
    #[error("the upstream registry asks to slow down and nothing is cached; retry later")]
    UpstreamTooManyRequests { retry_after: Option<u64> },
    /// The upstream of a proxy namespace failed and nothing was cached:
    /// HTTP 502. The message names no credentials.
    #[error("the upstream registry cannot serve it and nothing is cached: {0}")]
    UpstreamFailed(String),
    #[error("the manifest is not available in a media type the client accepts")]
    NotAcceptable,
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// A dependency cannot serve now: HTTP 503. `detail` names files and
    /// hosts, so it is logged, never sent.
    #[error("{dependency} unavailable ({reason}): {detail}")]
    Unavailable {
        dependency: Dependency,
        reason: Unavailability,
        detail: String,
    },
    #[error("storage failure: {0}")]
    Storage(StorageError),
    #[error("metadata failure: {0}")]
    Meta(MetaError),
    /// An event consumer failed to handle a batch (its message).
    #[error("event consumer failed: {0}")]
    Consumer(String),
}

impl RegistryError {
    /// The spec error code the client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            RegistryError::BlobUnknown => ErrorCode::BlobUnknown,
            RegistryError::ManifestUnknown | RegistryError::NotAcceptable => {
                ErrorCode::ManifestUnknown
            }
            RegistryError::NameUnknown
            | RegistryError::NamespaceUnknown
            | RegistryError::ReplicationRuleUnknown(_) => ErrorCode::NameUnknown,
            RegistryError::UploadUnknown => ErrorCode::BlobUploadUnknown,
            RegistryError::ChunkOutOfOrder { .. }
            | RegistryError::ChunkSizeMismatch { .. }
            | RegistryError::UploadBusy
            | RegistryError::UploadInvalid(_)
            | RegistryError::BlobBeingCollected => ErrorCode::BlobUploadInvalid,
            RegistryError::DigestMismatch { .. } | RegistryError::DigestInvalid(_) => {
                ErrorCode::DigestInvalid
            }
            RegistryError::ManifestInvalid(_) | RegistryError::ManifestTooLarge(_) => {
                ErrorCode::ManifestInvalid
            }
            RegistryError::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            RegistryError::ManifestReferenced(_)
            | RegistryError::ImmutableTag { .. }
            | RegistryError::StorageQuotaExceeded(_)
            | RegistryError::NamespaceExists
            | RegistryError::RuleExists
            | RegistryError::ReplicationBusy(_)
            | RegistryError::AdvisorySyncBusy
            | RegistryError::NamespaceNotEmpty
            | RegistryError::ProxyReadOnly(_) => ErrorCode::Denied,
            RegistryError::UpstreamTooManyRequests { .. } => ErrorCode::TooManyRequests,
            RegistryError::UpstreamFailed(_) => ErrorCode::Unavailable,
            RegistryError::TooManyUploads { .. } | RegistryError::TrafficQuotaExceeded { .. } => {
                ErrorCode::TooManyRequests
            }
            RegistryError::InvalidParameter(_) => ErrorCode::Unsupported,
            RegistryError::Unavailable { .. } => ErrorCode::Unavailable,
            RegistryError::Storage(_) | RegistryError::Meta(_) | RegistryError::Consumer(_) => {
                ErrorCode::Internal
            }
        }
    }

    /// Whether this is a server-side failure whose details must be logged and
    /// not shown to the client.
    pub fn is_internal(&self) -> bool {
        self.code() == ErrorCode::Internal
    }
}

impl From<StorageError> for RegistryError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::BlobNotFound => RegistryError::BlobUnknown,
            StorageError::UploadNotFound => RegistryError::UploadUnknown,
            StorageError::DigestMismatch { computed } => RegistryError::DigestMismatch { computed },
            StorageError::Incoming(io) => {
                RegistryError::UploadInvalid(format!("reading request body: {io}"))
            }
            StorageError::Unavailable { reason, detail } => RegistryError::Unavailable {
                dependency: Dependency::Storage,
                reason,
                detail,
            },
            other => RegistryError::Storage(other),
        }
    }
}

impl From<MetaError> for RegistryError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::MissingBlobs(d) | MetaError::MissingManifests(d) => {
                RegistryError::ManifestBlobUnknown(d)
            }
            MetaError::BlobSizeMismatch(mismatches) => {
                let described: Vec<String> = mismatches
                    .iter()
                    .map(|m| format!("{} is {} bytes, not {}", m.digest, m.stored, m.declared))
                    .collect();
                RegistryError::ManifestInvalid(format!(
                    "descriptor sizes do not match the blobs: {}",
                    described.join("; ")
                ))
            }
            MetaError::UploadBusy => RegistryError::UploadBusy,
            MetaError::UploadNotFound => RegistryError::UploadUnknown,
            MetaError::ManifestReferenced(d) => RegistryError::ManifestReferenced(d),
            MetaError::BlobBeingDeleted => RegistryError::BlobBeingCollected,
            MetaError::ImmutableTag { tag, rule } => RegistryError::ImmutableTag {
                tag,
                rule: rule.to_string(),
            },
            MetaError::Unavailable(detail) => RegistryError::Unavailable {
                dependency: Dependency::Database,
                reason: Unavailability::NotAnswering,
                detail,
            },
            MetaError::NamespaceNotEmpty => RegistryError::NamespaceNotEmpty,
            MetaError::QuotaExceeded(exceeded) => RegistryError::StorageQuotaExceeded(exceeded),
            other => RegistryError::Meta(other),
        }
    }
}
