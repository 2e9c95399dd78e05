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
    /// CPU seconds the generator's threads used, read by each thread just
    /// before it ends (a thread's counters vanish with it).
    pub generator_cpu_seconds: f64,
}

impl RateResult {
    pub fn requests_per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_millis(&self, percentile: f64) -> f64 {
        self.latency_micros.value_at_percentile(percentile) as f64 / 1000.0
    }
}

/// The request each connection sends over and over, and the node it goes to.
#[derive(Clone)]
pub struct RequestTemplate {
    /// The node this request is for: its `Host` header is part of `headers`,
    /// so a template is built once per node rather than patched per request.
    pub target: Target,
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
            target: target.clone(),
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

/// The name of the generator's threads (at most 15 bytes, the kernel's limit
/// for a thread name), so their CPU can be told apart from the rest.
pub const LOAD_THREAD_NAME: &str = "bench-load";

/// Runs `connections` closed loops for `duration`, spread over `threads` OS
/// threads, and expects every response to be `200 OK`. Connection `i` (counted
/// across all threads) sends `templates[i % templates.len()]`, so with one
/// template per node the connections are spread round-robin over the nodes,
/// and every thread serves every node as evenly as its share allows.
///
/// Each thread runs its own current-thread runtime with its share of the
/// connections (wrk's design): a connection's request task and hyper's
/// connection task always share a thread, no work-stealing scheduler runs on
/// the request path, and each thread can read its own CPU time exactly before
/// it ends. On this 2-core machine it costs about 10 µs of CPU per request,
/// mostly the write, read and epoll system calls themselves, and the same as
/// one multi-thread runtime did; hyper's request handling costs about 3 µs
/// more than a hand-written parser, which is not worth the loss of chunked
/// bodies and full HTTP/1.1 handling.
pub async fn run(
    templates: Vec<RequestTemplate>,
    connections: usize,
    duration: Duration,
    threads: usize,
) -> Result<RateResult> {
    if templates.is_empty() {
        return Err("the request-rate generator needs at least one request template".into());
    }
    let threads = threads.clamp(1, connections.max(1));
    // The barrier starts every thread's clock together, after all
    // connections exist, so connection setup is not part of the rate.
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let templates: Vec<Arc<RequestTemplate>> = templates.into_iter().map(Arc::new).collect();
    let mut handles = Vec::with_capacity(threads);
    for chosen in assign_connections(connections, threads, templates.len()) {
        let own: Vec<Arc<RequestTemplate>> =
            chosen.into_iter().map(|t| templates[t].clone()).collect();
        let barrier = barrier.clone();
        handles.push(
            std::thread::Builder::new()
                .name(LOAD_THREAD_NAME.into())
                .spawn(move || load_thread(own, duration, &barrier))?,
        );
    }
    // Blocking waits happen on tokio's blocking pool so the caller's runtime
    // keeps running (the `hw` ceiling server may live on it).
    let started = tokio::task::spawn_blocking(move || {
        barrier.wait();
        Instant::now()
    })
    .await?;
    let joined = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|handle| handle.join())
            .collect::<Vec<_>>()
    })
    .await?;
    // Requests in flight at the deadline still complete and are counted, so
    // the rate divides by the time until the last one ended.
    let elapsed = started.elapsed();
    let mut total = RateResult {
        completed: 0,
        errors: 0,
        elapsed,
        latency_micros: new_histogram(),
        generator_cpu_seconds: 0.0,
    };
    for thread in joined {
        let (completed, errors, histogram, cpu) = thread.map_err(|_| "load thread panicked")??;
        total.completed += completed;
        total.errors += errors;
        total.latency_micros.add(&histogram)?;
        total.generator_cpu_seconds += cpu;
    }
    Ok(total)
}

/// Splits `connections` over `threads` (the first `connections % threads`
/// threads take one more) and returns, per thread, the template index of each
/// of its connections: connection `i`, counted across threads, gets template
/// `i % templates`.
fn assign_connections(connections: usize, threads: usize, templates: usize) -> Vec<Vec<usize>> {
    let mut next = 0;
    (0..threads)
        .map(|index| {
            let share = connections / threads + usize::from(index < connections % threads);
            let chosen = (next..next + share).map(|i| i % templates).collect();
            next += share;
            chosen
        })
        .collect()
}

/// One load thread: a connection per template it was given (one template per
/// connection, so the same template may appear several times).
fn load_thread(
    templates: Vec<Arc<RequestTemplate>>,
    duration: Duration,
    barrier: &std::sync::Barrier,
) -> Result<(u64, u64, Histogram<u64>, f64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let opened = match &runtime {
        Ok(runtime) => runtime.block_on(async {
            let mut opened = Vec::with_capacity(templates.len());
            for template in templates {
                let connection = Connection::open(&template.target).await?;
                opened.push((connection, template));
            }
            Ok::<_, crate::client::Error>(opened)
        }),
        Err(error) => Err(format!("cannot build a runtime: {error}").into()),
    };
    // Every thread reaches the barrier, even after a failure, or the others
    // would wait forever.
    barrier.wait();
    let opened = opened?;
    runtime?.block_on(async move {
        let deadline = Instant::now() + duration;
        let tasks: Vec<_> = opened
            .into_iter()
            .map(|(connection, template)| {
                tokio::spawn(async move { one_connection(connection, &template, deadline).await })
            })
            .collect();
        let mut total = (0u64, 0u64, new_histogram());
        for task in tasks {
            let (completed, errors, histogram) = task.await?;
            total.0 += completed;
            total.1 += errors;
            total.2.add(&histogram)?;
        }
        let cpu = crate::procfs::current_thread_cpu_seconds()?;
        Ok((total.0, total.1, total.2, cpu))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_go_round_robin_over_nodes_and_evenly_over_threads() {
        // 64 connections, 2 threads, 2 nodes: each thread holds 32
        // connections, 16 to each node.
        let assigned = assign_connections(64, 2, 2);
        assert_eq!(assigned.len(), 2);
        for thread in &assigned {
            assert_eq!(thread.len(), 32);
            assert_eq!(thread.iter().filter(|&&t| t == 0).count(), 16);
        }
        // Uneven counts: connection i still goes to node i mod n overall.
        let assigned = assign_connections(7, 2, 3);
        let flat: Vec<usize> = assigned.concat();
        assert_eq!(flat, vec![0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(assigned[0].len(), 4);
        // One node: every connection uses it.
        assert!(assign_connections(5, 3, 1).concat().iter().all(|&t| t == 0));
    }
}
