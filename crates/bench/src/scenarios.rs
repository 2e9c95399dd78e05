//! The scenarios of issue 7. Each one prepares its data untimed, then
//! measures one thing between `Meter::start` and `Meter::finish`.
//!
//! A run may drive several nodes of one registry (`--url` given more than
//! once). Setup always goes through the first node, so that it is done once
//! and the nodes cannot race each other creating it; the clients of a measured
//! section are spread round-robin, client `i` on node `i mod n`, so one client
//! (the large pushes, the pull, the listings) talks to the first node and many
//! clients load every node alike.
//!
//! Repository names are fixed (`bench/...`) and setup data is derived from
//! fixed seeds, so running the tool again against the same registry (the
//! rounds of `bench/run.sh`) finds its setup already done and lists the same
//! catalog; measured pushes use content seeded by a per-run nonce so that no
//! round is answered by deduplication of an earlier one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::client::{Connection, Result, Target};
use crate::content::{seed, Blob, Image};
use crate::procfs::{self, Process, RssSampler};
use crate::rate::{self, RequestTemplate};
use crate::registry;

const MIB: usize = 1024 * 1024;
/// Throughput is reported in decimal megabytes, like disk and network specs.
const MB: f64 = 1_000_000.0;

/// The scenarios, in the order a full run executes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    PushSmall,
    PushLargeChunked,
    PushLargeMono,
    PullBlob,
    ManifestGet,
    HeadBlob,
    TagsList,
    Catalog,
    SameBlob,
    LoginStorm,
    ApiListing,
    IdleConnections,
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Scenario::PushSmall,
        Scenario::PushLargeChunked,
        Scenario::PushLargeMono,
        Scenario::PullBlob,
        Scenario::ManifestGet,
        Scenario::HeadBlob,
        Scenario::TagsList,
        Scenario::Catalog,
        Scenario::SameBlob,
    ];

    /// Scenarios that run only when asked for by name (`--scenario`),
    /// because they need something of the registry the others do not.
    /// `login_storm` needs access control on; `api_listing` needs Berth's
    /// management API, credentials and a filled registry
    /// (`bench/listing.sh`); `idle_connections` needs the registry on this
    /// machine and ten thousand file descriptors on each side.
    pub const ON_REQUEST: [Scenario; 3] = [
        Scenario::LoginStorm,
        Scenario::ApiListing,
        Scenario::IdleConnections,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LoginStorm => "login_storm",
            Scenario::ApiListing => "api_listing",
            Scenario::IdleConnections => "idle_connections",
            Scenario::PushSmall => "push_small",
            Scenario::PushLargeChunked => "push_large_chunked",
            Scenario::PushLargeMono => "push_large_mono",
            Scenario::PullBlob => "pull_blob",
            Scenario::ManifestGet => "manifest_get",
            Scenario::HeadBlob => "head_blob",
            Scenario::TagsList => "tags_list",
            Scenario::Catalog => "catalog",
            Scenario::SameBlob => "same_blob",
        }
    }

    pub fn parse(name: &str) -> std::result::Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .chain(Scenario::ON_REQUEST)
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL
                    .iter()
                    .chain(&Scenario::ON_REQUEST)
                    .map(|s| s.name())
                    .collect();
                format!("unknown scenario {name:?}; known: {}", names.join(", "))
            })
    }
}

/// How big each scenario is. `full` is issue 7's definition; `quick` only
/// checks that every code path works, in a few seconds.
#[derive(Clone, Debug)]
pub struct Sizes {
    pub small_images: usize,
    pub small_parallel: usize,
    pub small_layer: usize,
    pub large_blob: usize,
    pub large_chunk: usize,
    pub pull_blob: usize,
    pub pull_repeats: usize,
    pub rate_connections: usize,
    pub rate_duration: Duration,
    pub tags: usize,
    pub repositories: usize,
    pub listing_repeats: usize,
    pub setup_parallel: usize,
    pub same_clients: usize,
    pub same_blob: usize,
    pub idle_connections: usize,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            small_images: 500,
            small_parallel: 16,
            small_layer: 4096,
            large_blob: 512 * MIB,
            large_chunk: 16 * MIB,
            pull_blob: 512 * MIB,
            pull_repeats: 5,
            rate_connections: 64,
            rate_duration: Duration::from_secs(10),
            tags: 5000,
            repositories: 500,
            listing_repeats: 5,
            setup_parallel: 16,
            same_clients: 32,
            same_blob: 64 * MIB,
            idle_connections: 10_000,
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            small_images: 20,
            small_parallel: 4,
            small_layer: 4096,
            large_blob: 8 * MIB,
            large_chunk: MIB,
            pull_blob: 8 * MIB,
            pull_repeats: 3,
            rate_connections: 8,
            rate_duration: Duration::from_secs(1),
            tags: 120,
            repositories: 20,
            listing_repeats: 2,
            setup_parallel: 4,
            same_clients: 8,
            same_blob: 4 * MIB,
            idle_connections: 100,
        }
    }
}

/// Everything a scenario needs to know about the run.
pub struct Context {
    /// The nodes of the registry under test, never empty: one for a single
    /// server, several for nodes sharing one database and one object store.
    pub targets: Vec<Target>,
    pub sizes: Sizes,
    /// Seeds the content of measured pushes; differs on every run.
    pub nonce: u64,
    /// The registry's processes (`--pid`, one per node); empty when not given.
    pub servers: Vec<Process>,
    /// Services the registry depends on (`--watch NAME=PID`), whose process
    /// trees' CPU is reported per scenario.
    pub watched: Vec<(String, u32)>,
    /// Threads of the request-rate generator.
    pub load_threads: usize,
}

impl Context {
    /// The node that setup data is written through.
    pub fn setup_target(&self) -> &Target {
        &self.targets[0]
    }

    /// The node that client `index` of a measured section talks to.
    pub fn client_target(&self, index: usize) -> &Target {
        &self.targets[index % self.targets.len()]
    }
}

/// Collects a scenario's figures and prints each as soon as it is known, so a
/// failure later in the run does not hide earlier results.
#[derive(Default)]
pub struct Report {
    pub figures: Vec<(String, f64, &'static str)>,
}

impl Report {
    pub fn figure(&mut self, name: &str, value: f64, unit: &'static str) {
        println!("{name}: {} {unit}", format_value(value));
        self.figures.push((name.to_string(), value, unit));
    }
}

/// Three significant digits at least, and no decimals on whole numbers
/// (counts), so lines stay short and readable.
pub fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

pub async fn run(context: &Context, scenario: Scenario, report: &mut Report) -> Result<()> {
    match scenario {
        Scenario::PushSmall => push_small(context, report).await,
        Scenario::PushLargeChunked => push_large(context, report, true).await,
        Scenario::PushLargeMono => push_large(context, report, false).await,
        Scenario::PullBlob => pull_blob(context, report).await,
        Scenario::ManifestGet => manifest_get(context, report).await,
        Scenario::HeadBlob => head_blob(context, report).await,
        Scenario::TagsList => tags_list(context, report).await,
        Scenario::Catalog => catalog(context, report).await,
        Scenario::SameBlob => same_blob(context, report).await,
        Scenario::LoginStorm => login_storm(context, report).await,
        Scenario::ApiListing => api_listing(context, report).await,
        Scenario::IdleConnections => idle_connections(context, report).await,
    }
}

/// Numbers that keep the seeds of different scenarios apart.
mod seeds {
    pub const SMALL: u64 = 1;
    pub const LARGE_CHUNKED: u64 = 2;
    pub const LARGE_MONO: u64 = 3;
    pub const PULL: u64 = 4;
    pub const HOT: u64 = 5;
    pub const SAME: u64 = 6;
}

/// `push_small`: many distinct small images from parallel clients, the load
/// of a busy CI fleet. Each image costs seven requests (two HEAD, two POST,
/// two PUT of a blob, one manifest PUT), as with `docker push`.
async fn push_small(context: &Context, report: &mut Report) -> Result<()> {
    let sizes = &context.sizes;
    let images: Arc<Vec<Image>> = Arc::new(
        (0..sizes.small_images)
            .map(|index| {
                Image::small(
                    sizes.small_layer,
                    seed(&[context.nonce, seeds::SMALL, index as u64]),
                )
            })
            .collect(),
    );
    let connections = open_client_connections(context, sizes.small_parallel).await?;
    let next = Arc::new(AtomicUsize::new(0));
    // Each image's push time, from its first request to its manifest's
    // answer: what something else on the server (webhook deliveries, a
    // scan) adds to a push shows here even when the rate does not move.
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(images.len())));
    let nonce = context.nonce;
    let meter = Meter::start(context);
    let mut workers = JoinSet::new();
    for mut connection in connections {
        let images = images.clone();
        let next = next.clone();
        let latencies = latencies.clone();
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(image) = images.get(index) else {
                    return Ok(());
                };
                // Sixteen repositories, as images of a CI fleet land in many.
                let repository = format!("bench/small-{:02}", index % 16);
                let tag = format!("run-{nonce:x}-{index}");
                let started = Instant::now();
                registry::push_image(&mut connection, &repository, &tag, image).await?;
                latencies
                    .lock()
                    .expect("latencies")
                    .push(started.elapsed().as_secs_f64() * 1000.0);
            }
        });
    }
    join_all(workers).await?;
    let elapsed = meter.elapsed();
    report.figure(
        "push_small",
        images.len() as f64 / elapsed.as_secs_f64(),
        "images/s",
    );
    let latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    report_latencies(report, "push_small.image", latencies);
    meter.finish(report, "push_small");
    Ok(())
}

/// `push_large_chunked` and `push_large_mono`: one large layer from one
/// client, in 16 MiB PATCHes or in a single PUT.
async fn push_large(context: &Context, report: &mut Report, chunked: bool) -> Result<()> {
    let sizes = &context.sizes;
    let (name, kind) = if chunked {
        ("push_large_chunked", seeds::LARGE_CHUNKED)
    } else {
        ("push_large_mono", seeds::LARGE_MONO)
    };
    let blob = Blob::random(sizes.large_blob, seed(&[context.nonce, kind]));
    let mut connection = Connection::open(context.client_target(0)).await?;
    let meter = Meter::start(context);
    if chunked {
        registry::push_blob_chunked(&mut connection, "bench/large", &blob, sizes.large_chunk)
            .await?;
    } else {
        registry::push_blob_monolithic(&mut connection, "bench/large", &blob).await?;
    }
    let elapsed = meter.elapsed();
    report.figure(
        name,
        blob.data.len() as f64 / MB / elapsed.as_secs_f64(),
        "MB/s",
    );
    meter.finish(report, name);
    Ok(())
}

/// `pull_blob`: one client downloads a large blob several times in a row.
/// When the registry redirects blob GETs to its object store, the client
/// follows, as docker does, and `pull_blob.redirects` counts how often.
async fn pull_blob(context: &Context, report: &mut Report) -> Result<()> {
    let sizes = &context.sizes;
    let blob = Blob::random(
        sizes.pull_blob,
        seed(&[seeds::PULL, sizes.pull_blob as u64]),
    );
    let mut setup = Connection::open(context.setup_target()).await?;
    registry::push_blob_if_missing(&mut setup, "bench/pull", &blob).await?;
    drop(setup);
    let mut connection = Connection::open(context.client_target(0)).await?;
    let mut redirected = None;
    let meter = Meter::start(context);
    let mut received = 0u64;
    let mut redirects = 0u64;
    for _ in 0..sizes.pull_repeats {
        let pulled =
            registry::pull_blob(&mut connection, &mut redirected, "bench/pull", &blob.digest)
                .await?;
        if pulled.length != blob.data.len() as u64 {
            return Err(format!(
                "pull_blob: received {} bytes of {}",
                pulled.length,
                blob.data.len()
            )
            .into());
        }
        received += pulled.length;
        redirects += u64::from(pulled.redirected);
    }
    let elapsed = meter.elapsed();
    report.figure(
        "pull_blob",
        received as f64 / MB / elapsed.as_secs_f64(),
        "MB/s",
    );
    // Printed only when it happened, so the figures of registries that
    // serve bytes themselves stay as they were.
    if redirects > 0 {
        report.figure("pull_blob.redirects", redirects as f64, "count");
    }
    meter.finish(report, "pull_blob");
    Ok(())
}

/// The image behind the request-rate scenarios, pushed once per registry.
async fn hot_image(context: &Context) -> Result<Image> {
    let image = Image::small(4096, seed(&[seeds::HOT]));
    let mut connection = Connection::open(context.setup_target()).await?;
    registry::push_image(&mut connection, "bench/hot", "latest", &image).await?;
    Ok(image)
}

/// `manifest_get`: the thundering herd of pods resolving a tag.
async fn manifest_get(context: &Context, report: &mut Report) -> Result<()> {
    hot_image(context).await?;
    let templates = context
        .targets
        .iter()
        .map(|target| {
            RequestTemplate::new(
                target,
                Method::GET,
                "/v2/bench/hot/manifests/latest",
                Some(registry::manifest_accept()),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    request_rate(context, report, "manifest_get", templates).await
}

/// `head_blob`: clients checking which layers they still need.
async fn head_blob(context: &Context, report: &mut Report) -> Result<()> {
    let image = hot_image(context).await?;
    let path = format!("/v2/bench/hot/blobs/{}", image.layer.digest);
    let templates = context
        .targets
        .iter()
        .map(|target| RequestTemplate::new(target, Method::HEAD, &path, None))
        .collect::<Result<Vec<_>>>()?;
    request_rate(context, report, "head_blob", templates).await
}

async fn request_rate(
    context: &Context,
    report: &mut Report,
    name: &str,
    templates: Vec<RequestTemplate>,
) -> Result<()> {
    let sizes = &context.sizes;
    let meter = Meter::start(context);
    let result = rate::run(
        templates,
        sizes.rate_connections,
        sizes.rate_duration,
        context.load_threads,
    )
    .await?;
    report.figure(name, result.requests_per_second(), "req/s");
    report.figure(&format!("{name}.p50"), result.percentile_millis(50.0), "ms");
    report.figure(&format!("{name}.p99"), result.percentile_millis(99.0), "ms");
    report.figure(&format!("{name}.errors"), result.errors as f64, "count");
    // The generator's own cost per request, to read the rate against
    // `hw_http_ceiling`: the two share the machine's cores.
    let generator_micros = result.generator_cpu_seconds * 1e6 / result.completed.max(1) as f64;
    report.figure(
        &format!("{name}.bench_cpu_per_request"),
        generator_micros,
        "us",
    );
    meter.finish(report, name);
    if result.errors > 0 {
        return Err(format!("{name}: {} requests failed", result.errors).into());
    }
    Ok(())
}

/// `tags_list`: listing a repository with thousands of tags, page by page.
async fn tags_list(context: &Context, report: &mut Report) -> Result<()> {
    let sizes = &context.sizes;
    let repository = "bench/tags";
    let first_page = format!("/v2/{repository}/tags/list?n=100");
    let image = Image::small(4096, seed(&[seeds::HOT]));
    let mut connection = Connection::open(context.setup_target()).await?;
    registry::push_image(&mut connection, repository, "t00000", &image).await?;
    let existing = registry::list_all_pages(&mut connection, &first_page, "tags").await?;
    let wanted: Vec<String> = (0..sizes.tags)
        .map(|index| format!("t{index:05}"))
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|tag| !existing.contains(tag))
        .cloned()
        .collect();
    let manifest = Arc::new(image.manifest);
    parallel_setup(context, missing, move |mut connection, tag| {
        let manifest = manifest.clone();
        async move {
            registry::put_manifest(&mut connection, repository, &tag, &manifest).await?;
            Ok(connection)
        }
    })
    .await?;
    timed_listing(context, report, "tags_list", &first_page, "tags", &wanted).await?;
    // CNCF Distribution 2.8 ignores `n` on tags/list and always answers with
    // every tag in one response, so the paged figure compares fifty round
    // trips with one; the unpaged figure compares like with like.
    let unpaged = format!("/v2/{repository}/tags/list");
    timed_listing(
        context,
        report,
        "tags_list.unpaged",
        &unpaged,
        "tags",
        &wanted,
    )
    .await
}

/// `catalog`: listing hundreds of repositories, page by page.
async fn catalog(context: &Context, report: &mut Report) -> Result<()> {
    let sizes = &context.sizes;
    let first_page = "/v2/_catalog?n=100";
    let mut connection = Connection::open(context.setup_target()).await?;
    let existing = registry::list_all_pages(&mut connection, first_page, "repositories").await?;
    let wanted: Vec<String> = (0..sizes.repositories)
        .map(|index| format!("bench/catalog-{index:04}"))
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|name| !existing.contains(name))
        .cloned()
        .collect();
    let image = Arc::new(Image::small(4096, seed(&[seeds::HOT])));
    parallel_setup(context, missing, move |mut connection, repository| {
        let image = image.clone();
        async move {
            registry::push_image(&mut connection, &repository, "latest", &image).await?;
            Ok(connection)
        }
    })
    .await?;
    timed_listing(
        context,
        report,
        "catalog",
        first_page,
        "repositories",
        &wanted,
    )
    .await
}

/// Lists every page `listing_repeats` times and reports the median, after
/// checking the listing holds every name the setup created.
async fn timed_listing(
    context: &Context,
    report: &mut Report,
    name: &str,
    first_page: &str,
    key: &str,
    wanted: &[String],
) -> Result<()> {
    let mut connection = Connection::open(context.client_target(0)).await?;
    let meter = Meter::start(context);
    let mut millis = Vec::new();
    let mut listed = Vec::new();
    for _ in 0..context.sizes.listing_repeats {
        let started = Instant::now();
        listed = registry::list_all_pages(&mut connection, first_page, key).await?;
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let listed: std::collections::HashSet<&String> = listed.iter().collect();
    if let Some(absent) = wanted.iter().find(|name| !listed.contains(name)) {
        return Err(format!("{name}: the listing lacks {absent:?}").into());
    }
    report.figure(name, median(&mut millis), "ms");
    report.figure(&format!("{name}.entries"), listed.len() as f64, "count");
    meter.finish(report, name);
    Ok(())
}

/// `same_blob`: many clients upload the same new blob into different
/// repositories at the same moment, the race every deduplicating store must
/// survive. Every upload must succeed and every repository must then serve
/// the blob.
async fn same_blob(context: &Context, report: &mut Report) -> Result<()> {
    let sizes = &context.sizes;
    let blob = Arc::new(Blob::random(
        sizes.same_blob,
        seed(&[context.nonce, seeds::SAME]),
    ));
    let connections = open_client_connections(context, sizes.same_clients).await?;
    let barrier = Arc::new(Barrier::new(connections.len() + 1));
    let mut clients = JoinSet::new();
    for (index, mut connection) in connections.into_iter().enumerate() {
        let blob = blob.clone();
        let barrier = barrier.clone();
        clients.spawn(async move {
            let repository = format!("bench/same-{index:02}");
            barrier.wait().await;
            let pushed = registry::push_blob_monolithic(&mut connection, &repository, &blob).await;
            (repository, pushed, connection)
        });
    }
    let meter = Meter::start(context);
    barrier.wait().await;
    let mut failures = Vec::new();
    let mut pushed = Vec::new();
    while let Some(joined) = clients.join_next().await {
        let (repository, result, connection) = joined?;
        match result {
            Ok(()) => pushed.push((repository, connection)),
            Err(error) => failures.push(format!("{repository}: {error}")),
        }
    }
    let elapsed = meter.elapsed();
    for (repository, mut connection) in pushed {
        if !registry::blob_exists(&mut connection, &repository, &blob.digest).await? {
            failures.push(format!(
                "{repository}: blob missing after a successful push"
            ));
        }
    }
    report.figure("same_blob", elapsed.as_secs_f64(), "s");
    report.figure("same_blob.failures", failures.len() as f64, "count");
    meter.finish(report, "same_blob");
    if !failures.is_empty() {
        return Err(format!(
            "same_blob: {} of {} clients failed: {}",
            failures.len(),
            sizes.same_clients,
            failures.join("; ")
        )
        .into());
    }
    Ok(())
}

/// Clients sending wrong passwords at once in `login_storm` (issue 11's
/// probe used 32).
const STORM_CLIENTS: usize = 32;
/// Wrong passwords each client sends from one source address before it
/// moves to the next, fewer than the server's free failures per address, so
/// every attempt reaches the password check instead of the throttle.
const STORM_ATTEMPTS_PER_ADDRESS: usize = 16;

/// `login_storm`: how much failed logins slow everything else. One client
/// times `/healthz` alone, then again while [`STORM_CLIENTS`] clients send
/// wrong passwords (Basic on `/v2/`, user names that do not exist, which
/// cost the server the same argon2 verification as real ones) as fast as
/// they are answered, for the request-rate duration, each for another
/// user name (so no account's throttle stops them). Each storm client
/// connects from its own loopback addresses (`127.77.x.y`; Linux accepts
/// any address of 127/8), a new one every [`STORM_ATTEMPTS_PER_ADDRESS`]
/// attempts, so the per-address throttle does not stop the storm. Needs a
/// registry with access control on the local machine; not part of a full
/// run (`--scenario login_storm`).
async fn login_storm(context: &Context, report: &mut Report) -> Result<()> {
    use base64::Engine;
    let target = context.setup_target().clone();
    let duration = context.sizes.rate_duration;
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bench-nobody:wrong-password")
    );
    {
        let mut probe = Connection::open(&target).await?;
        let request = target
            .request(Method::GET, "/v2/")
            .header(http::header::AUTHORIZATION, authorization.as_str())
            .body(crate::client::Body::default())?;
        let (parts, body) = probe.fetch(request).await?;
        if parts.status != http::StatusCode::UNAUTHORIZED {
            return Err(crate::client::unexpected(
                "login_storm needs access control on: a wrong password",
                parts.status,
                &body,
            ));
        }
    }
    let alone = time_healthz(&target, duration).await?;
    report_latencies(report, "login_storm.healthz_alone", alone);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let next_address = Arc::new(AtomicUsize::new(0));
    let next_attempt = Arc::new(AtomicUsize::new(0));
    let meter = Meter::start(context);
    let mut workers: JoinSet<Result<(usize, usize, usize)>> = JoinSet::new();
    for _ in 0..STORM_CLIENTS {
        let (target, stop, next_address) = (target.clone(), stop.clone(), next_address.clone());
        let next_attempt = next_attempt.clone();
        workers.spawn(async move {
            let (mut refused_401, mut busy_429, mut other) = (0, 0, 0);
            while !stop.load(Ordering::Relaxed) {
                let n = next_address.fetch_add(1, Ordering::Relaxed);
                let local = std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                    127,
                    77,
                    (n / 250) as u8,
                    (n % 250 + 1) as u8,
                ));
                let mut connection = Connection::open_from(&target, local).await?;
                for _ in 0..STORM_ATTEMPTS_PER_ADDRESS {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let attempt = next_attempt.fetch_add(1, Ordering::Relaxed);
                    let authorization = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD
                            .encode(format!("bench-nobody-{attempt}:wrong-password"))
                    );
                    let request = target
                        .request(Method::GET, "/v2/")
                        .header(http::header::AUTHORIZATION, authorization)
                        .body(crate::client::Body::default())?;
                    let (parts, _) = connection.fetch(request).await?;
                    match parts.status.as_u16() {
                        401 => refused_401 += 1,
                        429 => busy_429 += 1,
                        _ => other += 1,
                    }
                }
            }
            Ok((refused_401, busy_429, other))
        });
    }
    let storm = time_healthz(&target, duration).await;
    stop.store(true, Ordering::Relaxed);
    let (mut refused_401, mut busy_429, mut other) = (0, 0, 0);
    while let Some(joined) = workers.join_next().await {
        let (a, b, c) = joined??;
        refused_401 += a;
        busy_429 += b;
        other += c;
    }
    let seconds = meter.elapsed().as_secs_f64();
    report_latencies(report, "login_storm.healthz_during", storm?);
    report.figure(
        "login_storm.logins_refused_401_per_s",
        refused_401 as f64 / seconds,
        "/s",
    );
    report.figure(
        "login_storm.logins_busy_429_per_s",
        busy_429 as f64 / seconds,
        "/s",
    );
    report.figure("login_storm.logins_other", other as f64, "");
    meter.finish(report, "login_storm");
    Ok(())
}

/// Idle connections opened from one source address at most in
/// `idle_connections`: fewer than the server's cap per address (256 by
/// default), so the cap on all connections is what is measured.
const IDLE_PER_ADDRESS: usize = 200;

/// `idle_connections` (issue 11: "10,000 idle connections cost ≤ 100 MiB and
/// do not slow active clients"): times `/healthz` from one connection alone,
/// then opens `Sizes::idle_connections` TCP connections that never send a
/// byte (from loopback addresses `127.88.x.y`, [`IDLE_PER_ADDRESS`] each),
/// and times `/healthz` again while they are open. Reports the server's
/// resident memory before and with them (needs `--pid`), what each costs,
/// and how many the server still holds open at the end: it closes idle
/// connections after its `idle_timeout` (60 s by default), longer than this
/// runs with the default duration. Needs the registry on this machine, a
/// `max_connections` above the count (the default is 10,000: give it one
/// more for the timed client), and open-file limits above it on both sides;
/// not part of a full run (`--scenario idle_connections`).
async fn idle_connections(context: &Context, report: &mut Report) -> Result<()> {
    let target = context.setup_target().clone();
    let duration = context.sizes.rate_duration;
    let count = context.sizes.idle_connections;
    let server = context.servers.first().copied();
    let rss = |process: Option<Process>| -> Result<Option<u64>> {
        Ok(process.map(|p| p.status_bytes("VmRSS")).transpose()?)
    };
    let alone = time_healthz(&target, duration).await?;
    let rss_before = rss(server)?;
    let mut idle = Vec::with_capacity(count);
    for n in 0..count {
        let address = n / IDLE_PER_ADDRESS;
        let local =
            std::net::Ipv4Addr::new(127, 88, (address / 250) as u8, (address % 250 + 1) as u8);
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::new(local.into(), 0))?;
        idle.push(socket.connect(target.addr).await?);
    }
    // The kernel completes connections before the server accepts them: give
    // its accept loop a moment to take them all.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_with = rss(server)?;
    let during = time_healthz(&target, duration).await?;
    // Still open: nothing to read yet. Closed by the server: end of stream
    // (or a 503 it wrote first).
    let mut byte = [0u8; 1];
    let open = idle
        .iter()
        .filter(|stream| {
            matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    drop(idle);
    report.figure("idle_connections.opened", count as f64, "");
    report.figure("idle_connections.open_at_end", open as f64, "");
    report_latencies(report, "idle_connections.healthz_alone", alone);
    report_latencies(report, "idle_connections.healthz_during", during);
    if let (Some(before), Some(with)) = (rss_before, rss_with) {
        let mib = (1024 * 1024) as f64;
        report.figure("idle_connections.rss_before", before as f64 / mib, "MiB");
        report.figure("idle_connections.rss_with_idle", with as f64 / mib, "MiB");
        report.figure(
            "idle_connections.rss_per_connection",
            with.saturating_sub(before) as f64 / 1024.0 / count.max(1) as f64,
            "KiB",
        );
    }
    Ok(())
}

/// `/healthz` latencies from one connection, one request after another,
/// for `duration`.
async fn time_healthz(target: &Target, duration: Duration) -> Result<Vec<f64>> {
    let mut connection = Connection::open(target).await?;
    let mut latencies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        let request = target
            .request(Method::GET, "/healthz")
            .body(crate::client::Body::default())?;
        let sent = Instant::now();
        let (parts, body) = connection.fetch(request).await?;
        if !parts.status.is_success() {
            return Err(crate::client::unexpected("/healthz", parts.status, &body));
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        // A health checker's pace, not a load of its own.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(latencies)
}

/// `api_listing`: pages of Berth's management API listings (repositories
/// in every sort order, first and later pages, one namespace's, a search;
/// a repository's images), first one at a time on one connection (each
/// kind's median, close to its server time on loopback), then from
/// `rate_connections` clients at once for `rate_duration`. The registry
/// must hold the data already (`bench/listing.sh` fills it); the
/// credentials, `USER:PASSWORD` of a user who sees it all, come from
/// `BERTH_BENCH_CREDENTIALS` (never a flag, so they stay out of `ps`).
async fn api_listing(context: &Context, report: &mut Report) -> Result<()> {
    use base64::Engine;
    let credentials = std::env::var("BERTH_BENCH_CREDENTIALS")
        .map_err(|_| "api_listing needs BERTH_BENCH_CREDENTIALS=USER:PASSWORD")?;
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    let target = context.setup_target().clone();
    let mut connection = Connection::open(&target).await?;
    let get = async |connection: &mut Connection, path: &str| -> Result<serde_json::Value> {
        let request = target
            .request(Method::GET, path)
            .header(http::header::AUTHORIZATION, authorization.as_str())
            .body(crate::client::Body::default())?;
        let (parts, body) = connection.fetch(request).await?;
        if parts.status != http::StatusCode::OK {
            return Err(crate::client::unexpected(path, parts.status, &body));
        }
        Ok(serde_json::from_slice(&body)?)
    };
    let first = get(&mut connection, "/api/v1/repositories?limit=100").await?;
    let names: Vec<String> = first["repositories"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    if names.len() < 10 {
        return Err(
            "api_listing: the registry holds fewer than 10 repositories; \
                    fill it first (bench/listing.sh)"
                .into(),
        );
    }
    // (kind, path): every kind of page a console or CLI asks for.
    let mut kinds: Vec<(String, String)> = Vec::new();
    for sort in ["name", "size", "last_push", "pulls"] {
        let path = format!("/api/v1/repositories?limit=50&sort={sort}");
        let page = get(&mut connection, &path).await?;
        kinds.push((format!("repositories_by_{sort}"), path.clone()));
        if let Some(cursor) = page["next_cursor"].as_str() {
            let encoded: String = cursor
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            kinds.push((
                format!("repositories_by_{sort}_page2"),
                format!("{path}&cursor={encoded}"),
            ));
        }
    }
    let namespace = names[0].split('/').next().unwrap_or_default().to_string();
    kinds.push((
        "namespace_by_size".to_string(),
        format!("/api/v1/repositories?limit=50&sort=size&namespace={namespace}"),
    ));
    kinds.push((
        "search".to_string(),
        format!(
            "/api/v1/repositories?limit=50&q={}",
            &names[3][names[3].len() - 3..]
        ),
    ));
    for name in names.iter().step_by(names.len() / 10).take(10) {
        kinds.push((
            "images".to_string(),
            format!(
                "/api/v1/repositories/{}/images?limit=50",
                name.replace('/', "%2F")
            ),
        ));
    }
    // One at a time: each kind's median over a few rounds.
    let mut serial: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let rounds = if context.sizes.rate_duration < Duration::from_secs(5) {
        3
    } else {
        20
    };
    for _ in 0..rounds {
        for (kind, path) in &kinds {
            let started = Instant::now();
            get(&mut connection, path).await?;
            serial
                .entry(kind.clone())
                .or_default()
                .push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    for (kind, mut millis) in serial {
        report.figure(
            &format!("api_listing.{kind}.serial"),
            median(&mut millis),
            "ms",
        );
    }
    let templates = kinds
        .iter()
        .map(|(_, path)| {
            let mut template = RequestTemplate::new(&target, Method::GET, path, None)?;
            template.headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(&authorization)?,
            );
            Ok(template)
        })
        .collect::<Result<Vec<_>>>()?;
    request_rate(context, report, "api_listing", templates).await
}

fn report_latencies(report: &mut Report, name: &str, mut latencies: Vec<f64>) {
    if latencies.is_empty() {
        return;
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    report.figure(&format!("{name}_p50"), at(0.5), "ms");
    report.figure(&format!("{name}_p99"), at(0.99), "ms");
    report.figure(&format!("{name}_max"), at(1.0), "ms");
}

/// Runs setup work items over `setup_parallel` connections to the setup node.
async fn parallel_setup<F, Fut>(context: &Context, items: Vec<String>, work: F) -> Result<()>
where
    F: Fn(Connection, String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Connection>> + Send,
{
    if items.is_empty() {
        return Ok(());
    }
    let items = Arc::new(items);
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let parallel = context.sizes.setup_parallel.min(items.len());
    let mut workers = JoinSet::new();
    for mut connection in open_connections((0..parallel).map(|_| context.setup_target())).await? {
        let (items, next, work) = (items.clone(), next.clone(), work.clone());
        workers.spawn(async move {
            while let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
                connection = work(connection, item.clone()).await?;
            }
            Ok(())
        });
    }
    join_all(workers).await
}

/// Opens the `count` connections of a measured section's clients, client
/// `i` to node `i mod n`.
async fn open_client_connections(context: &Context, count: usize) -> Result<Vec<Connection>> {
    open_connections((0..count).map(|index| context.client_target(index))).await
}

async fn open_connections<'a>(
    targets: impl Iterator<Item = &'a Target>,
) -> Result<Vec<Connection>> {
    let mut connections = Vec::new();
    for target in targets {
        connections.push(Connection::open(target).await?);
    }
    Ok(connections)
}

async fn join_all(mut workers: JoinSet<Result<()>>) -> Result<()> {
    while let Some(joined) = workers.join_next().await {
        joined??;
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Wall time plus the CPU and memory the server nodes and this benchmark used
/// during one measured section.
struct Meter {
    started: Instant,
    bench_cpu: f64,
    /// Per node: its process, its CPU seconds at the start, its RSS sampler.
    servers: Vec<(Process, f64, RssSampler)>,
    /// Per watched service: its name, root pid and tree CPU at the start.
    watched: Vec<(String, u32, f64)>,
}

impl Meter {
    fn start(context: &Context) -> Meter {
        let servers = context
            .servers
            .iter()
            .map(|&process| {
                let cpu = process.cpu_seconds().unwrap_or(0.0);
                (process, cpu, RssSampler::start(process))
            })
            .collect();
        let watched = context
            .watched
            .iter()
            .map(|(name, pid)| {
                let cpu = procfs::tree_cpu_seconds(*pid).unwrap_or(0.0);
                (name.clone(), *pid, cpu)
            })
            .collect();
        Meter {
            started: Instant::now(),
            bench_cpu: Process::Myself.cpu_seconds().unwrap_or(0.0),
            servers,
            watched,
        }
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Reports the benchmark's CPU and, with `--pid`, the servers' CPU (the
    /// sum over nodes, since they share the work) and peak RSS (the largest
    /// node's, since memory is sized per node); with several nodes each
    /// node's own figures follow as `.node1`, `.node2`, ... in `--pid` order.
    /// Watched services follow as `.NAME_cpu`.
    fn finish(self, report: &mut Report, name: &str) {
        let bench_cpu = Process::Myself.cpu_seconds().unwrap_or(0.0) - self.bench_cpu;
        report.figure(&format!("{name}.bench_cpu"), bench_cpu, "s");
        for (service, pid, before) in &self.watched {
            // A service that died mid-run has no figure rather than a wrong one.
            if let Ok(after) = procfs::tree_cpu_seconds(*pid) {
                report.figure(&format!("{name}.{service}_cpu"), after - before, "s");
            }
        }
        if self.servers.is_empty() {
            return;
        }
        let nodes: Vec<(f64, f64)> = self
            .servers
            .into_iter()
            .map(|(process, cpu_before, sampler)| {
                let cpu = process.cpu_seconds().unwrap_or(0.0) - cpu_before;
                (cpu, sampler.finish() as f64 / MB)
            })
            .collect();
        let cpu_sum = nodes.iter().map(|(cpu, _)| cpu).sum();
        let rss_max = nodes.iter().map(|(_, rss)| *rss).fold(0.0, f64::max);
        report.figure(&format!("{name}.server_cpu"), cpu_sum, "s");
        report.figure(&format!("{name}.server_rss_peak"), rss_max, "MB");
        if nodes.len() > 1 {
            for (index, (cpu, rss)) in nodes.iter().enumerate() {
                let node = index + 1;
                report.figure(&format!("{name}.server_cpu.node{node}"), *cpu, "s");
                report.figure(&format!("{name}.server_rss_peak.node{node}"), *rss, "MB");
            }
        }
    }
}
