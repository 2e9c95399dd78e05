//! HTTP only: the distribution API under `/v2/`, the management API, the
//! web console, health and metrics.
//!
//! # Layout
//!
//! - [`app`] builds the router from an [`AppState`]; tests call it without a socket.
//! - [`run`] serves it on a listener until a shutdown future completes.
//! - `endpoint`: `/v2/...` paths parsed into [`endpoint::Endpoint`].
//! - `v2`: the handlers, translating HTTP to `berth_registry` calls.
//! - `error`: [`error::ApiError`], the one mapping from errors to responses.
//! - `metrics`: Prometheus metrics and the middleware that records them.
//! - `access`: access control on the edge: credentials to a principal, the one
//!   authorization step before dispatch, challenges and refusals.
//! - `token`: the token endpoint (`/auth/token`, GET and OAuth2 POST).
//! - `api`: the JSON management API under `/api/v1`: routing table, typed
//!   endpoints, permission table and its one authorization step, handlers
//!   per resource, and the OpenAPI document generated from them.
//! - `tls`: the rustls listener behind [`run_tls`].
//! - `settings`: [`ServerSettings`], connection limits and trusted proxies.
//! - `connection`: what the accept loop enforces per connection: the total
//!   and per-address caps, the idle and header timeouts.
//! - `origin`: each request's [`origin::ClientOrigin`] (client address,
//!   scheme, host), resolved once through the trusted proxies.
//! - `console`: the web console under `/`: server-rendered pages, sign-in
//!   sessions, CSRF checks, authorized by the management API's permission
//!   vocabulary and decisions.
//!
//! **Architecture Invariant:** axum and HTTP types live in this crate only.
//! Below it, the registry speaks in domain types.

use std::future::Future;
use std::sync::Arc;

use axum::http::{HeaderName, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use berth_registry::Registry;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub mod access;
pub mod api;
pub mod connection;
pub mod console;
pub mod endpoint;
pub mod error;
pub mod metrics;
pub mod origin;
pub mod refusals;
pub mod sendfile;
pub mod settings;
pub mod tls;
pub mod token;
pub mod v2;

pub use access::AuthState;
pub use metrics::Metrics;
pub use settings::{OutboundSettings, Sendfile, ServerSettings};

/// Everything a request handler needs, built once by the binary.
///
/// Every request clones it (axum's `State` extractor, and each middleware
/// that takes the state), so it is one `Arc` around the parts: a clone and
/// its drop are one reference count, where eight were 1% of the server's
/// CPU in `push_small`. The parts are read through `Deref`
/// (`state.registry`) and set only by the builder methods, before serving.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

/// What an [`AppState`] holds.
#[derive(Clone)]
pub struct AppParts {
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    /// Access control; `None` when it is off and every request is allowed.
    pub auth: Option<Arc<AuthState>>,
    /// Connection limits and trusted proxies.
    pub settings: Arc<ServerSettings>,
    /// How the server calls out to addresses users give (webhooks).
    pub outbound: Arc<settings::OutboundSettings>,
    /// Runs replication rules on demand (the API's "run now").
    pub replicator: Option<Arc<berth_registry::Replicator>>,
    /// Syncs the configured advisory sources on demand (the API's "sync
    /// now") and reports their state.
    pub advisory_sync: Option<Arc<berth_registry::advisory_sync::AdvisorySync>>,
    /// The effective configuration as `berth config check` prints it
    /// (secrets shown as `***`), for the console's settings page; empty
    /// when the binary gave none.
    pub configuration_listing: Arc<String>,
}

impl std::ops::Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl AppState {
    pub fn new(registry: Registry) -> AppState {
        AppState(Arc::new(AppParts {
            registry,
            metrics: Arc::new(Metrics::new()),
            auth: None,
            settings: Arc::new(ServerSettings::default()),
            outbound: Arc::new(settings::OutboundSettings::default()),
            replicator: None,
            advisory_sync: None,
            configuration_listing: Arc::new(String::new()),
        }))
    }

    /// The parts, to change while the state is being built (a copy of
    /// them if the state was cloned already, which the builders never do).
    fn parts(&mut self) -> &mut AppParts {
        Arc::make_mut(&mut self.0)
    }

    /// The effective configuration to show administrators: the binary
    /// passes what `berth config check` prints, whose secrets are `***`.
    pub fn with_configuration_listing(mut self, listing: String) -> AppState {
        self.parts().configuration_listing = Arc::new(listing);
        self
    }

    /// Replaces the default connection settings.
    pub fn with_settings(mut self, settings: ServerSettings) -> AppState {
        self.parts().settings = Arc::new(settings);
        self
    }

    /// Replaces the default outbound settings.
    pub fn with_outbound(mut self, outbound: settings::OutboundSettings) -> AppState {
        self.parts().outbound = Arc::new(outbound);
        self
    }

    /// Lets the API run replication rules.
    pub fn with_replicator(mut self, replicator: berth_registry::Replicator) -> AppState {
        self.parts().replicator = Some(Arc::new(replicator));
        self
    }

    /// Lets the API report and run the advisory sync.
    pub fn with_advisory_sync(
        mut self,
        sync: Arc<berth_registry::advisory_sync::AdvisorySync>,
    ) -> AppState {
        self.parts().advisory_sync = Some(sync);
        self
    }

    /// Turns access control on.
    pub fn with_auth(mut self, auth: AuthState) -> AppState {
        self.parts().auth = Some(Arc::new(auth));
        self
    }

    /// Turns access control off again, as [`AppState::new`] has it.
    pub fn without_auth(mut self) -> AppState {
        self.parts().auth = None;
        self
    }
}

/// The header carrying each request's id, set if the client sent none and
/// echoed on the response so a client's report can be found in the logs.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(v2::base_checked))
        .route("/v2/", any(v2::base_checked))
        .route(
            access::TOKEN_PATH,
            get(token::get_token).post(token::post_token),
        )
        .merge(api::router())
        .route("/v2/{*rest}", any(v2::dispatch))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        // The web console takes `/` and every path the routes above do
        // not, so its 404 page answers unknown paths.
        .route("/", any(console::dispatch))
        .fallback(console::dispatch)
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refusals::audit_refusals,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                // The client as resolved through trusted proxies, not the
                // proxy's address.
                let client = request
                    .extensions()
                    .get::<origin::ClientOrigin>()
                    .and_then(|origin| origin.address)
                    .map_or_else(|| "-".to_string(), |address| address.to_string());
                tracing::info_span!("request", id = %id, client = %client, method = %request.method(), path = %request.uri().path())
            }),
        )
        // Outside the trace layer, so the request's span names the client.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin::resolve_origin,
        ))
        .layer(axum::middleware::map_request(host_from_authority))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Outermost, so that a refused id is gone before one is set.
        .layer(axum::middleware::map_request(drop_unsafe_request_id))
        .with_state(state)
}

/// The longest client-chosen request id kept.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Whether a client's request id may be used as is: every log line of the
/// request carries it, and text logs print it verbatim, so only short ids
/// of letters, digits and `-`, `_`, `.`, `:` (UUIDs, hex, `req-42`,
/// `trace.id:7`) are kept. Anything else could forge log fields or lines.
fn is_safe_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Removes the client's `x-request-id` unless there is exactly one and it is
/// safe, so that [`SetRequestIdLayer`] generates one instead.
async fn drop_unsafe_request_id<B>(mut request: Request<B>) -> Request<B> {
    let mut ids = request.headers().get_all(&REQUEST_ID).iter();
    let keep = match (ids.next(), ids.next()) {
        (Some(id), None) => is_safe_request_id(id.as_bytes()),
        (None, _) => true,
        _ => false,
    };
    if !keep {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// HTTP/2 requests carry the host in the URI's authority, not in `Host`;
/// copying it over lets everything that derives URLs (the token realm) read
/// one header whatever the protocol.
async fn host_from_authority<B>(mut request: Request<B>) -> Request<B> {
    if !request.headers().contains_key(axum::http::header::HOST) {
        let authority = request
            .uri()
            .authority()
            .and_then(|a| axum::http::HeaderValue::from_str(a.as_str()).ok());
        if let Some(value) = authority {
            request
                .headers_mut()
                .insert(axum::http::header::HOST, value);
        }
    }
    request
}

/// How long `/readyz` waits for each dependency: a load balancer's probe
/// gets its answer within this, whatever the dependencies do.
const READY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// `200` when the database and the blob store both answer and take
/// writes, `503` otherwise; the JSON body says which dependency is down
/// and why (`{"ready":false,"database":{"ready":true},"storage":{"ready":
/// false,"reason":"full"}}`). Details go to the log.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    let readiness = state.registry.readiness(READY_DEADLINE).await;
    let check = |result: &Result<(), berth_registry::RegistryError>| match result {
        Ok(()) => serde_json::json!({"ready": true}),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            let reason = match error {
                berth_registry::RegistryError::Unavailable { reason, .. } => reason.to_string(),
                _ => "error".to_string(),
            };
            serde_json::json!({"ready": false, "reason": reason})
        }
    };
    let body = serde_json::json!({
        "ready": readiness.is_ready(),
        "database": check(&readiness.database),
        "storage": check(&readiness.storage),
    });
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_text(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The largest read hyper's HTTP/1 connections make into their buffer
/// (hyper's own default is about 400 KiB).
///
/// An upload keeps the pieces of its body it has not written yet, and each
/// piece shares the allocation of the read that brought it in, so the read
/// size multiplies into the memory every concurrent upload pins. With 64 KiB
/// reads an upload holds about 400 KiB at most instead of over a megabyte,
/// and a read still costs one system call per 64 KiB, which is nothing next
/// to hashing and writing those bytes.
const HTTP1_READ_BUFFER: usize = 64 * 1024;

/// Serves the API on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Responses are written whole, so Nagle's algorithm only ever delays
    // the last segment of an answer.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let settings = Arc::clone(&state.settings);
    let metrics = Arc::clone(&state.metrics);
    serve(listener, app(state), &settings, metrics, shutdown).await
}

/// Like [`run`], speaking HTTPS with `config` (see [`tls::server_config`]).
pub async fn run_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tls::TlsListener::new(listener, config)?;
    let settings = Arc::clone(&state.settings);
    let metrics = Arc::clone(&state.metrics);
    serve(listener, app(state), &settings, metrics, shutdown).await
}

/// The accept loop behind [`run`] and [`run_tls`]: `axum::serve` with the
/// connection settings it does not expose (see [`HTTP1_READ_BUFFER`]) and
/// those of [`ServerSettings`]: the connection caps, the idle and header
/// timeouts ([`connection`]) and the body timeout.
///
/// Each request carries the peer's address as `ConnectInfo`, from which
/// [`origin::resolve_origin`] finds the client (through trusted proxies).
/// When `shutdown` completes the listener is closed, idle connections are
/// closed, and the call returns once every request in flight has been
/// answered.
async fn serve<L>(
    mut listener: L,
    router: Router,
    settings: &ServerSettings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    L::Io: sendfile::Transport,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;

    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper's header timer would also close kept-alive connections after
    // `header_timeout`; `connection::TimedIo` enforces both timeouts.
    // Vectored writes also keep hyper from copying body bytes into its own
    // buffer, which the placeholders of `sendfile` rely on.
    builder.http1().max_buf_size(HTTP1_READ_BUFFER).writev(true);
    let limits = connection::ConnectionLimits::new(
        settings.max_connections,
        settings.max_connections_per_address,
        settings.trusted_proxies.clone(),
    );
    let body_timeout = settings.body_timeout;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            connection = listener.accept() => connection,
            () = &mut shutdown => break,
        };
        let slot = match limits.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics.connection_refused(refusal.label());
                tokio::spawn(connection::refuse(io));
                continue;
            }
        };
        let activity = Arc::new(connection::Activity::default());
        let (io, file_queue) =
            sendfile::Transport::prepare(io, settings.sendfile.for_peer(peer.ip()));
        let router = router.clone();
        let service_activity = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let in_flight = service_activity.begin();
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(axum::extract::ConnectInfo(peer));
            // Blob bodies may be sent from their files on HTTP/1 only:
            // HTTP/2 frames body data itself (see `sendfile`).
            if let Some(queue) = &file_queue {
                if parts.version <= http::Version::HTTP_11 {
                    parts.extensions.insert(queue.clone());
                }
            }
            // Between two reads of the body at most `body_timeout`: a
            // client that stops sending mid-body is cut off, one that
            // sends slowly but steadily is not.
            let body =
                axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, body));
            let request = Request::from_parts(parts, body);
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await?;
                // The request counts as in flight until its response's
                // body is written (or dropped).
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                        let _in_flight = &in_flight;
                        frame
                    }))
                }))
            }
        });
        let io =
            connection::TimedIo::new(io, activity, settings.idle_timeout, settings.header_timeout);
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request, or one that was idle for
            // too long, is routine, not an error of the server's.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
