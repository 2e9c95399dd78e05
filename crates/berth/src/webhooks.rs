//! Webhook delivery workers: take due deliveries from the queue in the
//! metadata store (with a lease, so one node sends each), POST them and
//! record the outcome (see `berth_registry::webhooks`).
//!
//! Outbound safety: webhook URLs are chosen by namespace owners, so a
//! delivery must not become a way into the operator's network. Only http
//! and https (checked when the webhook is created); no redirect is
//! followed; connect and read timeouts; at most [`RESPONSE_EXCERPT`] bytes
//! of an answer are read; and, unless `[server] outbound_allow_private`,
//! every address a host name resolves to (or an address in the URL) must
//! be public: the resolver below refuses loopback, private, link-local and
//! other special addresses, and the connection goes to the address it
//! checked, so a name cannot resolve to a public address for the check and
//! a private one for the connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use berth_auth::key_encryption::{unseal, KeyEncryptionKey};
use berth_registry::webhooks::WebhookOptions;
use berth_registry::{DeliveryAttempt, DeliveryJob, Registry};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// The header carrying a delivery's signature: `sha256=` and the hex
/// HMAC-SHA256 of the body under the webhook's secret.
pub const SIGNATURE_HEADER: &str = "X-Berth-Signature-256";

/// Bytes of an answer read and kept in the delivery log.
const RESPONSE_EXCERPT: usize = 1024;

/// Deliveries one pass sends at most before it looks at its cancellation.
const DELIVERIES_PER_PASS: usize = 100;

/// Deliveries taken (and recorded) together. Their lease (2 minutes by
/// default) covers two rounds of [`CONCURRENT_SENDS`] attempts of at most
/// 30 s each.
const BATCH: usize = 16;

/// Attempts of a batch in flight at once.
const CONCURRENT_SENDS: usize = 8;

/// The signature header's value for `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether calls to `address` are refused without `outbound_allow_private`:
/// loopback, private, link-local, unique-local, shared, unspecified,
/// broadcast, documentation and multicast addresses.
pub fn is_private(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                // 100.64.0.0/10, carrier-grade NAT; 0.0.0.0/8, "this network".
                || (a == 100 && (64..128).contains(&b))
                || a == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves host names and refuses those that reach a private address.
pub(crate) struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(private) = addresses.iter().find(|a| is_private(a.ip())) {
                return Err(format!(
                    "{host} resolves to {}, a private address (set [server] \
                     outbound_allow_private to allow it)",
                    private.ip()
                )
                .into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// Sends webhook deliveries from this node.
pub struct DeliveryWorker {
    registry: Registry,
    client: reqwest::Client,
    key: Option<KeyEncryptionKey>,
    allow_private: bool,
    options: WebhookOptions,
    /// The holder name of this node's delivery leases.
    holder: String,
    poll_interval: Duration,
}

impl DeliveryWorker {
    pub fn new(
        registry: Registry,
        key: Option<KeyEncryptionKey>,
        allow_private: bool,
        options: WebhookOptions,
        poll_interval: Duration,
    ) -> Result<DeliveryWorker, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            // Proxies from the environment would reach what the address
            // check refuses; webhooks go straight out.
            .no_proxy()
            .user_agent(concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        let client = builder
            .build()
            .map_err(|e| format!("the webhook HTTP client: {e}"))?;
        let holder = format!("{}/webhooks", registry.config().node_name);
        Ok(DeliveryWorker {
            registry,
            client,
            key,
            allow_private,
            options,
            holder,
            poll_interval,
        })
    }

    /// Sends every due delivery (at most a bounded number); returns how
    /// many attempts it made. Deliveries are taken [`BATCH`] at a time and
    /// sent [`CONCURRENT_SENDS`] at once, so a slow endpoint delays the
    /// others of its batch by at most its timeout, and a batch's attempts
    /// are recorded in one commit.
    pub async fn run_once(&self) -> Result<usize, berth_registry::RegistryError> {
        use futures::StreamExt;
        let mut attempted = 0;
        while attempted < DELIVERIES_PER_PASS {
            let jobs = self
                .registry
                .take_webhook_deliveries(&self.holder, &self.options, BATCH)
                .await?;
            if jobs.is_empty() {
                break;
            }
            attempted += jobs.len();
            let sent: Vec<(DeliveryJob, DeliveryAttempt, bool)> = futures::stream::iter(jobs)
                .map(|job| async move {
                    let (attempt, delivered) = self.attempt(&job).await;
                    if let Some(error) = &attempt.error {
                        tracing::info!(webhook = job.webhook_id, delivery = job.id, %error,
                            "webhook delivery failed");
                    }
                    (job, attempt, delivered)
                })
                .buffer_unordered(CONCURRENT_SENDS)
                .collect()
                .await;
            let nexts = self
                .registry
                .finish_webhook_deliveries(&self.holder, &sent, &self.options)
                .await?;
            for ((job, _, _), next) in sent.iter().zip(nexts) {
                tracing::debug!(
                    webhook = job.webhook_id,
                    delivery = job.id,
                    ?next,
                    "webhook delivery attempted"
                );
            }
        }
        Ok(attempted)
    }

    /// Runs passes until `shutdown` fires, waiting `poll_interval` after a
    /// pass that found nothing due.
    pub async fn run(&self, shutdown: CancellationToken) {
        loop {
            let idle = match self.run_once().await {
                Ok(attempted) => attempted == 0,
                Err(error) => {
                    tracing::warn!(%error, "webhook deliveries failed");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(self.poll_interval) => {}
                }
            } else if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// One attempt: what happened, and whether it counts as delivered.
    async fn attempt(&self, job: &DeliveryJob) -> (DeliveryAttempt, bool) {
        let failed = |error: String| {
            (
                DeliveryAttempt {
                    error: Some(error),
                    ..DeliveryAttempt::default()
                },
                false,
            )
        };
        let url = match reqwest::Url::parse(&job.url) {
            Ok(url) => url,
            Err(error) => return failed(format!("invalid URL: {error}")),
        };
        // An address in the URL is not resolved, so it is checked here.
        if !self.allow_private {
            let literal = match url.host() {
                Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
                Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
                _ => None,
            };
            if let Some(address) = literal.filter(|a| is_private(*a)) {
                return failed(format!(
                    "{address} is a private address (set [server] outbound_allow_private \
                     to allow it)"
                ));
            }
        }
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, job.envelope.content_type())
            .body(job.payload.clone());
        if let Some(stored) = &job.secret {
            let binding = berth_server::api::webhooks::secret_binding(&job.url);
            match unseal(self.key.as_ref(), &binding, stored) {
                Ok(secret) => {
                    request =
                        request.header(SIGNATURE_HEADER, signature(&secret, job.payload.as_bytes()))
                }
                Err(error) => return failed(format!("the webhook's secret: {error}")),
            }
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => return failed(describe(&error)),
        };
        let status = response.status();
        let mut excerpt = Vec::new();
        while excerpt.len() < RESPONSE_EXCERPT {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        excerpt.truncate(RESPONSE_EXCERPT);
        let response_text =
            (!excerpt.is_empty()).then(|| String::from_utf8_lossy(&excerpt).into_owned());
        let delivered = status.is_success();
        (
            DeliveryAttempt {
                status: Some(status.as_u16()),
                response: response_text,
                error: (!delivered).then(|| format!("the endpoint answered {status}")),
            },
            delivered,
        )
    }
}

/// A send error with its causes (reqwest's own message is only the outermost).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for (address, private) in [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("0.0.0.0", true),
            ("::1", true),
            ("fe80::1", true),
            ("fd00::1", true),
            ("::ffff:127.0.0.1", true),
            ("93.184.216.34", false),
            ("2606:4700::1111", false),
            ("100.128.0.1", false),
        ] {
            assert_eq!(is_private(address.parse().unwrap()), private, "{address}");
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
