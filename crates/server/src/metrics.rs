//! Prometheus metrics: requests by endpoint, method and status; latency
//! histograms; bytes in and out.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;

use crate::v2::EndpointLabel;
use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    endpoint: &'static str,
    method: &'static str,
}

/// The server's metrics, registered once at start-up.
pub struct Metrics {
    registry: PromRegistry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    bytes_in: Counter<u64, AtomicU64>,
    bytes_out: Counter<u64, AtomicU64>,
    gc_bytes_reclaimed: Counter<u64, AtomicU64>,
    gc_objects_removed: Counter<u64, AtomicU64>,
    gc_pass_duration: Histogram,
    scan_queue_depth: Gauge<i64, AtomicI64>,
    advisory_data_age: Gauge<i64, AtomicI64>,
    scan_duration: Histogram,
    scan_failures: Counter<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = PromRegistry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        // Buckets from 50 µs to ~100 s: manifest reads sit at the low end,
        // large blob transfers at the high end.
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.00005, 4.0, 11,
            ))
        });
        let bytes_in = Counter::<u64, AtomicU64>::default();
        let bytes_out = Counter::<u64, AtomicU64>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to produce a response's headers",
            latency.clone(),
        );
        registry.register(
            "http_request_bytes",
            "Bytes received in request bodies",
            bytes_in.clone(),
        );
        registry.register(
            "http_response_bytes",
            "Bytes of blob and manifest bodies sent",
            bytes_out.clone(),
        );
        let gc_bytes_reclaimed = Counter::<u64, AtomicU64>::default();
        let gc_objects_removed = Counter::<u64, AtomicU64>::default();
        // Buckets from 10 ms to ~45 min: an idle pass reads a few index
        // pages, a pass after a mass deletion removes many thousands of files.
        let gc_pass_duration = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.01, 4.0, 10),
        );
        registry.register(
            "gc_bytes_reclaimed",
            "Bytes of blobs deleted by garbage collection",
            gc_bytes_reclaimed.clone(),
        );
        registry.register(
            "gc_objects_removed",
            "Manifests, blobs and orphaned objects removed by garbage collection",
            gc_objects_removed.clone(),
        );
        registry.register(
            "gc_pass_duration_seconds",
            "Duration of garbage-collection passes this node ran",
            gc_pass_duration.clone(),
        );
        let scan_queue_depth = Gauge::<i64, AtomicI64>::default();
        let advisory_data_age = Gauge::<i64, AtomicI64>::default();
        // Buckets from 10 ms to ~45 min: an image whose layers are all
        // indexed already takes milliseconds, a large new one minutes.
        let scan_duration = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.01, 4.0, 10),
        );
        let scan_failures = Counter::<u64, AtomicU64>::default();
        registry.register(
            "scan_queue_depth",
            "Images waiting to be indexed or being indexed (all nodes)",
            scan_queue_depth.clone(),
        );
        registry.register(
            "advisory_data_age_seconds",
            "Seconds since advisories were last imported (-1 before the first import)",
            advisory_data_age.clone(),
        );
        registry.register(
            "scan_duration_seconds",
            "Time this node's scan workers took per image",
            scan_duration.clone(),
        );
        registry.register(
            "scan_failures",
            "Image indexing jobs of this node that failed",
            scan_failures.clone(),
        );
        Metrics {
            registry,
            scan_queue_depth,
            advisory_data_age,
            scan_duration,
            scan_failures,
            requests,
            latency,
            bytes_in,
            bytes_out,
            gc_bytes_reclaimed,
            gc_objects_removed,
            gc_pass_duration,
        }
    }

    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    /// Records a garbage-collection pass. A pass skipped because another node
    /// held the lease did no work and is not recorded.
    pub fn record_gc(&self, report: &berth_registry::GcReport) {
        if report.lease_busy || report.dry_run {
            return;
        }
        self.gc_bytes_reclaimed.inc_by(report.bytes_reclaimed);
        self.gc_objects_removed.inc_by(report.objects_removed());
        self.gc_pass_duration.observe(report.duration.as_secs_f64());
    }

    /// Records one scan job's end.
    pub fn record_scan(&self, record: &berth_registry::advisor::ScanRecord) {
        self.scan_duration.observe(record.duration.as_secs_f64());
        if record.failed {
            self.scan_failures.inc();
        }
    }

    /// Records the scan queue's depth and the advisory data's age
    /// (`None` before the first import).
    pub fn record_advisor_state(&self, queue_depth: u64, advisory_age_secs: Option<i64>) {
        self.scan_queue_depth
            .set(i64::try_from(queue_depth).unwrap_or(i64::MAX));
        self.advisory_data_age.set(advisory_age_secs.unwrap_or(-1));
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("encoding metrics failed");
        }
        out
    }

    fn observe(&self, endpoint: &'static str, method: &'static str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                method,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels { endpoint, method })
            .observe(seconds);
    }
}

/// A static label per method, so recording a request allocates nothing.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Middleware recording every response, and stamping the API version header
/// that Docker clients look for on every answer.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let mut response = next.run(request).await;
    let endpoint = response
        .extensions()
        .get::<EndpointLabel>()
        .map_or("other", |l| l.0);
    state.metrics.observe(
        endpoint,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}
