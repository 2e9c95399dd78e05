//! The closed-loop request-rate generator behind `manifest_get` and
//! `head_blob`, built to cost the load generator as little CPU as `wrk` or
//! `oha` would: every connection is opened before the clock starts and kept
//! alive, the request's parts are built once and only cloned per request, and
//! latencies go into a fixed-size HDR histogram per connection (merged at the
//! end, so connections never contend on a shared recorder).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use tokio::sync::Barrier;

use crate::client::{drain, Connection, Result, Target};

/// What one run of the generator measured.
pub struct RateResult {
    /// Requests answered with the expected status within the run.
    pub completed: u64,
    /// Requests that failed (wrong status or broken connection); any error
    /// makes the scenario fail, because a fast wrong answer is no result.
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency in microseconds of every completed request.
    pub latency_micros: Histogram<u64>,
}

impl RateResult {
    pub fn requests_per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_millis(&self, percentile: f64) -> f64 {
        self.latency_micros.value_at_percentile(percentile) as f64 / 1000.0
    }
}

/// The request each connection sends over and over.
#[derive(Clone)]
pub struct RequestTemplate {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl RequestTemplate {
    pub fn new(
        target: &Target,
        method: Method,
        path: &str,
        accept: Option<&str>,
    ) -> Result<RequestTemplate> {
        let mut builder = target.request(method.clone(), path);
        if let Some(accept) = accept {
            builder = builder.header(http::header::ACCEPT, accept);
        }
        let request = builder.body(())?;
        Ok(RequestTemplate {
            method,
            uri: request.uri().clone(),
            headers: request.headers().clone(),
        })
    }

    fn build(&self) -> Request<Full<bytes::Bytes>> {
        // Cloning a `Uri` and a small `HeaderMap` copies reference-counted
        // bytes, which is all the per-request work hyper needs from us.
        let mut request = Request::new(Full::default());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Runs `connections` closed loops of `template` for `duration` and expects
/// every response to be `200 OK`.
pub async fn run(
    target: &Target,
    template: RequestTemplate,
    connections: usize,
    duration: Duration,
) -> Result<RateResult> {
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(Connection::open(target).await?);
    }
    // The barrier lets every task start its clock together, after all
    // connections exist, so connection setup is not part of the rate.
    let barrier = Arc::new(Barrier::new(connections + 1));
    let template = Arc::new(template);
    let mut tasks = Vec::with_capacity(connections);
    for connection in opened {
        let barrier = barrier.clone();
        let template = template.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            one_connection(connection, &template, Instant::now() + duration).await
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut total = RateResult {
        completed: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency_micros: new_histogram(),
    };
    for task in tasks {
        let (completed, errors, histogram) = task.await?;
        total.completed += completed;
        total.errors += errors;
        total.latency_micros.add(&histogram)?;
    }
    // Requests in flight at the deadline still complete and are counted, so
    // the rate divides by the time until the last one ended.
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn one_connection(
    mut connection: Connection,
    template: &RequestTemplate,
    deadline: Instant,
) -> (u64, u64, Histogram<u64>) {
    let mut histogram = new_histogram();
    let mut completed = 0u64;
    let mut errors = 0u64;
    while Instant::now() < deadline {
        let sent = Instant::now();
        match send_one(&mut connection, template).await {
            Ok(true) => {
                histogram.saturating_record(sent.elapsed().as_micros() as u64);
                completed += 1;
            }
            Ok(false) => errors += 1,
            Err(_) => {
                errors += 1;
                // A broken connection is replaced so one failure does not
                // silence the rest of the run; if even that fails, stop.
                if connection.reconnect().await.is_err() {
                    break;
                }
            }
        }
    }
    (completed, errors, histogram)
}

async fn send_one(connection: &mut Connection, template: &RequestTemplate) -> Result<bool> {
    let response = connection.send(template.build()).await?;
    let ok = response.status() == StatusCode::OK;
    // The body is read even for HEAD (where it is empty) so the connection is
    // ready for the next request.
    drain(response.into_body()).await?;
    Ok(ok)
}

/// Microseconds from 1 µs to 60 s at three significant digits: about 0.1%
/// resolution, in a few tens of kilobytes per connection.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}
