//! Every configuration key, declared once.
//!
//! To add a key, add one line to its section below: a doc comment (the
//! meaning, shown in `--help` and the README table), the field and its type,
//! the default as you would write it in the file, and the flag name. The
//! TOML key (`[section] field`), the flag (`--flag-name`), the environment
//! variable (`BERTH_FLAG_NAME`) and its line in `berth config check` follow.
//! Then run `BERTH_UPDATE_README=1 cargo test -p berth readme` to regenerate
//! the README's table, and read the value where it is used
//! (`config.section.field`). CONTRIBUTING.md has the whole recipe.
//!
//! Options after the flag:
//! - `Legacy`: the key existed before sections, so the top-level spelling
//!   (`listen = …`) is still accepted (with a warning). New keys never get it.
//! - `Switch`: the flag takes no value (`--auth`); the variable and the file
//!   still take `true`/`false`.
//! - `FallbackEnv(&[…])`: standard variables of other tools that supply the
//!   value when neither the file nor a `BERTH_*` variable nor a flag does.
//!
//! A section of its own (`[events]`, `[scanner]`) is one more block; an array
//! of tables (`[[upstream]]`) needs a reader of its own in `mod.rs`, next to
//! `read_file`, because its entries are not keys but records.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth_server::Sendfile;

use super::values::{
    AdvisoryUrl, ByteSize, DatabaseUrl, LogFilter, LogFormat, SecretText, StorageUrl,
};
use super::KeyOption::{FallbackEnv, Legacy, Switch};

declare_config! {
    /// The listener, TLS, logs and the process.
    [server] ServerSection {
        /// Address to listen on (`:0` picks a free port, printed as `listening on ADDR` on stdout).
        listen: SocketAddr = "127.0.0.1:5000", flag "listen", Legacy;
        /// Directory for blobs (`blobs/`), uploads (`uploads/`) and the SQLite database (`berth.db`); created with mode 0700.
        data_dir: PathBuf = "./berth-data", flag "data-dir", Legacy;
        /// Serve HTTPS with this PEM certificate chain (together with `tls_key`).
        tls_cert: Option<PathBuf> = "none", flag "tls-cert", Legacy;
        /// The PEM private key of `tls_cert`.
        tls_key: Option<PathBuf> = "none", flag "tls-key", Legacy;
        /// The host[:port] clients use for this registry, for the Kubernetes secrets `berth admin token create --k8s-secret` prints.
        public_host: Option<String> = "the listen address", flag "public-host", Legacy;
        /// Addresses or networks (`10.0.0.0/8`) of the reverse proxies in front, whose `Forwarded` (RFC 7239) or `X-Forwarded-For`, `-Proto` and `-Host` headers are believed (client address for throttling, logs and events; scheme and host of the token realm).
        trusted_proxies: Vec<ipnet::IpNet> = "none", flag "trusted-proxies";
        /// This node's name for its upload and job leases, so a restarted node frees the leases it held when it stopped; set it (e.g. to the pod's name) where the data directory does not survive a restart, one process per name.
        node_name: Option<String> = "kept in `DATA_DIR/node-name`", flag "node-name";
        /// Log filter: `warn`, `info`, `debug`, or per module (`berth_server=debug,info`).
        log: LogFilter = "info", flag "log", Legacy;
        /// Log format: `text` (coloured only on a terminal and without `NO_COLOR`) or `json`.
        log_format: LogFormat = "text", flag "log-format", Legacy;
        /// How long a node serves manifest and blob lookups from memory (`0s` disables).
        cache_ttl: Duration = "1s", flag "cache-ttl", Legacy;
        /// How often this node adds the pulls it counted in memory to the database (image and repository pull counts); also at shutdown.
        pull_stats_interval: Duration = "5s", flag "pull-stats-interval";
        /// After SIGTERM or SIGINT, how long requests in flight may take before the process exits anyway.
        shutdown_timeout: Duration = "30s", flag "shutdown-timeout";
        /// How long a connection may wait for the first byte of its next request (kept-alive or new).
        idle_timeout: Duration = "60s", flag "idle-timeout";
        /// How long a client may take to send a request's headers, from their first byte.
        header_timeout: Duration = "10s", flag "header-timeout";
        /// The longest pause between two reads of a request body (a slow upload that keeps sending is fine).
        body_timeout: Duration = "60s", flag "body-timeout";
        /// Open connections served at once; more are answered 503 and closed.
        max_connections: usize = "10000", flag "max-connections";
        /// Open connections served at once from one client address (trusted proxies exempt); more are answered 503 and closed.
        max_connections_per_address: usize = "256", flag "max-connections-per-address";
        /// Let webhooks and replication call loopback, private and link-local addresses (off: such targets are refused).
        outbound_allow_private: bool = "false", flag "outbound-allow-private", Switch;
        /// Send blobs from their files with `sendfile` on plain-HTTP/1 connections: `auto` for clients on other machines (not on loopback addresses), `true` for all, `false` for none. It takes about half the server's CPU per byte, but a client on the same machine (a TLS proxy in front) then copies the bytes from the page cache itself, which costs it more than the server saves.
        sendfile: Sendfile = "auto", flag "sendfile";
    }

    /// Where blob bytes live, and upload sessions.
    [storage] StorageSection {
        /// Blob storage: `fs:///PATH` or `s3://BUCKET/PREFIX`.
        url: Option<StorageUrl> = "fs://DATA_DIR", flag "storage", Legacy;
        /// S3 endpoint URL for stores other than AWS, e.g. `http://127.0.0.1:8333`; a plain `http://` endpoint is used as written.
        s3_endpoint: Option<String> = "AWS in `s3_region`", flag "s3-endpoint", Legacy,
            FallbackEnv(&["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]);
        /// S3 region requests are signed for.
        s3_region: String = "us-east-1", flag "s3-region", Legacy,
            FallbackEnv(&["AWS_REGION", "AWS_DEFAULT_REGION"]);
        /// Address buckets as `ENDPOINT/BUCKET` (most self-hosted stores need this) rather than `BUCKET.ENDPOINT`.
        s3_path_style: bool = "false", flag "s3-path-style", Legacy;
        /// S3 access key id; unset, the usual `AWS_*` variables and instance credentials apply.
        s3_access_key_id: Option<String> = "from `AWS_*`", flag "s3-access-key-id", Legacy;
        /// S3 secret access key, with `s3_access_key_id`.
        s3_secret_access_key: Option<SecretText> = "from `AWS_*`", flag "s3-secret-access-key", Legacy;
        /// The size of an S3 multipart part (at least 5MiB); each upload in progress holds one in memory.
        s3_part_size: ByteSize = "8MiB", flag "s3-part-size";
        /// Answer blob GETs with a redirect to a short-lived presigned URL of the object store (S3 only).
        redirect: bool = "false", flag "redirect", Legacy;
        /// Idle time after which an upload session and its data are purged.
        upload_ttl: Duration = "24h", flag "upload-ttl", Legacy;
        /// How often expired upload sessions are purged.
        upload_purge_interval: Duration = "10m", flag "upload-purge-interval", Legacy;
    }

    /// Where metadata lives.
    [database] DatabaseSection {
        /// Metadata database: `sqlite:///PATH` or `postgres://USER:PASSWORD@HOST/DB`.
        url: Option<DatabaseUrl> = "sqlite://DATA_DIR/berth.db", flag "database", Legacy;
    }

    /// Access control: users, namespaces, tokens.
    [auth] AuthSection {
        /// Turn access control on (users, namespaces, tokens).
        enabled: bool = "false", flag "auth", Legacy, Switch;
        /// Token endpoint URL put in challenges, e.g. `https://registry.example.com/auth/token`; unset, it is derived from each request.
        realm: Option<String> = "from the request's `Host`", flag "auth-realm", Legacy;
        /// The token `service` of challenges and the audience of registry tokens.
        service: String = "berth", flag "auth-service", Legacy;
        /// The issuer of registry tokens.
        issuer: String = "berth", flag "auth-issuer", Legacy;
        /// Any user may create a namespace by pushing to it (personal namespaces always work).
        users_may_create_namespaces: bool = "false", flag "users-may-create-namespaces", Legacy, Switch;
        /// How long a login's refresh token (the identity token `docker login` stores) lives, rotations included; between 1m and 365d.
        refresh_token_lifetime: Duration = "30d", flag "refresh-token-lifetime";
        /// The longest expiry a new access (robot) token may have; unset, tokens may never expire.
        max_token_lifetime: Option<Duration> = "no limit", flag "max-token-lifetime";
        /// A file holding the key (32 bytes, 64 hex digits or base64) that encrypts the token signing keys in the database.
        key_encryption_key_file: Option<PathBuf> = "none: keys stored in plain text", flag "key-encryption-key-file";
        /// The key-encryption key itself (prefer the variable `BERTH_KEY_ENCRYPTION_KEY` or the file to a flag).
        key_encryption_key: Option<SecretText> = "none", flag "key-encryption-key";
    }

    /// Deletion and garbage collection.
    [gc] GcSection {
        /// How often the server runs a garbage-collection pass.
        interval: Duration = "1h", flag "gc-interval", Legacy;
        /// How long an unreferenced blob is kept before it is reclaimed (a layer pushed ahead of its manifest: at least `upload_ttl`).
        grace_period: Duration = "1h", flag "gc-grace-period", Legacy;
        /// How often a pass also walks storage for objects the database does not know (left by crashes).
        orphan_sweep_interval: Duration = "7d", flag "gc-orphan-sweep-interval", Legacy;
        /// Also delete untagged manifests that no index lists and that are not referrers of a stored manifest.
        untagged: bool = "false", flag "gc-untagged", Legacy;
        /// With `untagged`, how old such a manifest must be.
        untagged_age: Duration = "24h", flag "gc-untagged-age", Legacy;
        /// Candidates per garbage-collection batch (bounds memory and transaction length).
        batch_size: usize = "500", flag "gc-batch-size", Legacy;
        /// Deleting a manifest by digest also deletes its referrers (signatures, SBOMs), recursively.
        delete_referrers: bool = "true", flag "delete-referrers", Legacy;
    }

    /// The event stream: the record of every change, read by `berth events tail` and the consumers.
    [events] EventsSection {
        /// How long events are kept before a background job deletes them; a consumer stopped for longer misses what was deleted.
        retention: Duration = "7d", flag "event-retention";
        /// Record pulls as `image.pulled` events (one per image and puller each `pull_stats_interval`, with the count) for webhooks (`pull`) and the audit trail; off keeps pulls in the statistics only.
        pulls: bool = "true", flag "event-pulls", Switch;
    }

    /// Image lifecycle: the trash deleted images wait in, restorable, and the retention policies that fill it.
    [lifecycle] LifecycleSection {
        /// How long a deleted image stays in the trash, restorable with `berth image restore`, before it is deleted for good; `0s` makes deletions final at once.
        trash_retention: Duration = "30d", flag "trash-retention";
        /// How often every namespace's retention policy runs (one node at a time), moving what it selects to the trash; `0s` runs them only on demand (`berth retention run`).
        retention_interval: Duration = "24h", flag "retention-interval";
    }

    /// Quotas: the limits of namespaces that have none of their own (`berth quota set` gives a namespace its own).
    [quota] QuotaSection {
        /// Bytes a namespace may hold (each blob and manifest once however many of its repositories hold it; trashed images count until they expire); a push beyond it is refused.
        default_storage: Option<ByteSize> = "unlimited", flag "quota-default-storage";
        /// Bytes of blobs a namespace may serve per calendar month (UTC); pulls beyond it are refused until the month ends.
        default_traffic: Option<ByteSize> = "unlimited", flag "quota-default-traffic";
    }

    /// The Vulnerability Advisor: indexing pushed images and assessing them against the stored advisories.
    [scanner] ScannerSection {
        /// Index every tagged image after its push (a consumer of the event stream queues it, background workers read its layers).
        enabled: bool = "true", flag "scanner-enabled";
        /// Scan workers on this node, each indexing one image at a time.
        workers: usize = "2", flag "scanner-workers";
        /// How long a worker may hold an image's job; a node killed mid-scan leaves the job to another after this.
        lease: Duration = "10m", flag "scanner-lease";
        /// Decompressed bytes read from one layer at most; past it the image is indexed as partial.
        max_layer_bytes: ByteSize = "32GiB", flag "scanner-max-layer-bytes";
        /// The largest file read into memory to be parsed (package databases, archives, binaries).
        max_file_size: ByteSize = "32MiB", flag "scanner-max-file-size";
        /// Attach each indexed image's SBOM (CycloneDX) to it as an OCI referrer; a namespace's policy may turn it off there (`berth va policy set NS --sbom off`).
        attach_sbom: bool = "true", flag "scanner-attach-sbom";
        /// OSV advisory sources `berth serve` syncs on a schedule: URLs of OSV `all.zip` files (as osv.dev publishes per ecosystem) or of single OSV JSON records; none by default, so the server works offline from `berth advisories import`.
        advisory_urls: Vec<AdvisoryUrl> = "none", flag "scanner-advisory-urls";
        /// How often each advisory source is synced, at least 1m (once per interval across the cluster; a failed sync is retried at the next interval).
        advisory_sync_interval: Duration = "6h", flag "scanner-advisory-sync-interval";
    }

    /// Webhooks: events of a namespace, or of the registry, POSTed as signed CloudEvents.
    [webhooks] WebhooksSection {
        /// The wait after a delivery's first failed attempt; it doubles with each further failure, up to an hour.
        retry_delay: Duration = "10s", flag "webhook-retry-delay";
        /// Attempts before a delivery is given up as failed.
        max_attempts: usize = "8", flag "webhook-max-attempts";
        /// How often an idle delivery worker looks for due deliveries.
        poll_interval: Duration = "1s", flag "webhook-poll-interval";
        /// How long finished deliveries stay in the delivery log.
        log_retention: Duration = "7d", flag "webhook-log-retention";
    }

    /// The audit trail: who did what, on which resource, when, with what outcome (`berth audit`).
    [audit] AuditSection {
        /// How long audit records are kept.
        retention: Duration = "90d", flag "audit-retention";
    }
}
