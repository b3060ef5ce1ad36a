//! The ingress proxy: route, record activity, hold while waking, forward.
//!
//! Every request meets one decision, [`Proxy::admit`] ([`admission`]), over
//! a protocol-neutral view of its head:
//! 1. refuse what is never served (CONNECT; no host or two; a target that is
//!    not a path or hides a separator, [`target`]);
//! 2. route by host and normalised path ([`routes`], from the routes file or
//!    [`ingress`] with [`gateway`]), unknown host 404;
//! 3. record activity for the route's namespace ([`crate::activity::Reporter`]),
//!    unless it is a health check; for a sleeping namespace that record is the
//!    wake request, written once;
//! 4. hold while the namespace sleeps or has no ready endpoint ([`hold`]):
//!    browsers get the [`wake_page`], others wait within [`limits`] and the
//!    hold timeout;
//! 5. forward ([`forward`]) with the headers rewritten by one rule set
//!    ([`headers`]), and stream the answer back.
//!
//! Three front ends ask for that decision and only encode it: hyper's path
//! ([`Proxy::handle`]); the HTTP/1.1 fast path ([`h1`]), which forwards plain
//! HTTP/1.1 requests without hyper; and the pre-hold reader ([`prehold`]),
//! which admits a new connection's first request before hyper reads it, so
//! that a held request costs only its stream and the wait.
pub mod admission;
pub mod chunked;
pub mod drain;
pub mod forward;
pub mod gateway;
pub mod h1;
pub mod headers;
pub mod hold;
pub mod ingress;
pub mod limits;
pub mod pool;
pub mod prehold;
pub mod redirect;
pub mod reload;
pub mod routes;
pub mod server;
pub mod stall;
pub mod target;
pub mod wake_page;

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::{Body as _, Incoming};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::activity::{LeaseSink, Reporter, Sink};
use crate::annotations::WakePage;
use crate::config::{AdminConfig, ProxyLimits};
use crate::metrics::{ErrorKind, Metrics};
use admission::{Forward, Refused, RequestView};
use forward::Forwarder;
use headers::Origin;
use hold::Namespaces;
use limits::HoldLimits;
use routes::{Route, RouteTable};

/// A map looked up on every request (hosts, namespaces, upstreams), with a
/// fast hasher seeded per process. Its keys come from configuration and the
/// cluster: a client's `Host` is only looked up, never inserted.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What `siesta proxy` runs with. The binary fills it from its flags
/// (`src/bin/siesta/args.rs`); tests start from [`Default`] (or call [`start`]).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Admin config file (YAML): hold timeout, queue limits, ignored health checks.
    pub config: Option<PathBuf>,
    /// Traffic listen address.
    pub listen: SocketAddr,
    /// Listen address for /metrics, /healthz and /readyz.
    pub admin_listen: SocketAddr,
    /// Static routes file; without it, routes come from Ingresses of class `siesta`
    /// and HTTPRoutes of Gateways of `controllerName: siesta.dev/gateway`.
    pub routes: Option<PathBuf>,
    /// TLS certificate and private key (PEM) for the traffic listener (enables h2 over TLS).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Threads serving traffic, each with its own single-threaded runtime (an
    /// event loop per core, as nginx workers); 0 means one per CPU.
    pub workers: usize,
    /// At SIGTERM or Ctrl-C, how long requests in flight may take to finish
    /// (new connections are refused at once); 0 closes everything at once.
    pub drain_timeout: Duration,
    /// Serve plain HTTP/1.1 requests by the fast path; `false` sends every
    /// request through hyper (the same decisions, encoded by hyper).
    pub http1_fast_path: bool,
    /// Redirect ports to listen on (on the host of `listen`) when the
    /// controller's slices allocate them; `None`: no redirects.
    pub redirect_ports: Option<RangeInclusive<u16>>,
}

/// The proxy's traffic and admin listeners unless told.
pub const LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8082,
));

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            config: None,
            listen: LISTEN,
            admin_listen: ADMIN_LISTEN,
            routes: None,
            tls_cert: None,
            tls_key: None,
            workers: 0,
            drain_timeout: Duration::from_secs(30),
            http1_fast_path: true,
            redirect_ports: Some(crate::redirect::DEFAULT_PORTS),
        }
    }
}

/// The response body: an upstream's stream, or a small local answer.
pub type Body = Either<Incoming, Full<Bytes>>;

/// What the proxy needs from the admin config. The hook where config loading
/// and reload connect.
pub fn limits(cfg: &AdminConfig) -> ProxyLimits {
    cfg.proxy.clone()
}

/// How a proxy is started (by `run`, or by tests).
pub struct Options {
    /// Static routes; `None` means Ingresses of class `siesta` and HTTPRoutes (needs a cluster).
    pub routes: Option<RouteTable>,
    /// Static routes from this file instead, re-read every 2 s: a changed file
    /// replaces the routes (an invalid one is logged and the routes in force kept).
    pub routes_file: Option<PathBuf>,
    pub limits: ProxyLimits,
    /// How often awake namespaces' Activity Leases are written.
    pub flush_interval: Duration,
    /// The wake page when a namespace does not say (`siesta.dev/wake-page`).
    pub wake_page: WakePage,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Replaces the Activity Lease writer (tests count wake writes with it).
    pub sink: Option<Arc<dyn Sink>>,
    /// Serving threads with their own runtimes; 0 serves on the caller's runtime.
    pub workers: usize,
    /// Plain HTTP/1.1 requests take the fast path ([`h1`]); `false`: all go through hyper.
    pub http1_fast_path: bool,
    /// Where the proxy counts; a fresh registry unless the caller shares one.
    pub metrics: Arc<Metrics>,
    /// Serve the redirect ports of the controller's slices (with a cluster
    /// and Ingress routes only).
    pub redirect: Option<redirect::Listen>,
}

impl Default for Options {
    fn default() -> Self {
        let cfg = AdminConfig::default();
        Options {
            routes: None,
            routes_file: None,
            limits: limits(&cfg),
            flush_interval: cfg.defaults.flush_interval,
            wake_page: cfg.defaults.wake_page,
            tls: None,
            sink: None,
            workers: 0,
            http1_fast_path: true,
            metrics: Arc::default(),
            redirect: None,
        }
    }
}

/// What a client connection gives each of its requests.
pub struct Downstream {
    pub peer: SocketAddr,
    pub https: bool,
    /// The peer's address for `X-Forwarded-For`, formatted once.
    client_ip: HeaderValue,
}

impl Downstream {
    pub fn new(peer: SocketAddr, https: bool) -> Downstream {
        let client_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Downstream {
            peer,
            https,
            client_ip,
        }
    }
}

/// The shared state of the handler chain.
pub struct Proxy {
    routes: watch::Receiver<Arc<RouteTable>>,
    namespaces: Arc<Namespaces>,
    reporter: Reporter,
    limits: ProxyLimits,
    held: Arc<HoldLimits>,
    wake_page: WakePage,
    forwarder: Forwarder,
    /// Client connections open now, bounded by `maxConnections`; one still
    /// reading a request head is evicted for a new one at the cap.
    connections: Arc<crate::slots::Slots>,
    http1_fast_path: bool,
    metrics: Arc<Metrics>,
    /// A redirect port's proxy: every request goes to that port's route.
    port: Option<u16>,
}

/// A started proxy; dropping it stops every task it started.
pub struct Running {
    pub addr: SocketAddr,
    pub proxy: Arc<Proxy>,
    tasks: Vec<JoinHandle<()>>,
    drainer: Option<drain::Drainer>,
}

impl Running {
    /// Stop accepting, let requests in flight finish (HTTP/1 keep-alive
    /// connections close after their answer) for up to `deadline`, then stop.
    /// True when every connection finished in time.
    pub async fn drain(mut self, deadline: Duration) -> bool {
        match self.drainer.take() {
            Some(d) => d.drain(deadline).await,
            None => true,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Start serving on `listener`: watches (with a cluster), the activity flusher
/// and the accept loop. Returns once routes and namespace states are synced.
pub async fn start(
    listener: TcpListener,
    options: Options,
    cluster: Option<kube::Client>,
) -> crate::Result<Running> {
    let addr = listener.local_addr()?;
    let namespaces = Arc::new(Namespaces::default());
    let mut tasks = Vec::new();
    let (routes, routes_file) = match options.routes_file {
        Some(path) => {
            let (table, content) = reload::load(&path)?;
            (Some(table), Some((path, content)))
        }
        None => (options.routes, None),
    };
    let static_routes = routes.is_some();
    let (routes_tx, routes_rx) = watch::channel(Arc::new(routes.unwrap_or_default()));
    let sink: Option<Arc<dyn Sink>> = match (options.sink, &cluster) {
        (Some(s), _) => Some(s),
        (None, Some(c)) => Some(Arc::new(LeaseSink(c.clone()))),
        (None, None) => None,
    };
    let reporter = Reporter::new(namespaces.clone(), sink, None, options.metrics.clone());
    tasks.push(tokio::spawn(
        reporter.clone().run_flusher(options.flush_interval),
    ));
    match cluster {
        Some(client) => {
            let synced = Arc::new(Notify::new());
            tasks.push(tokio::spawn(ingress::watch_namespaces(
                client.clone(),
                namespaces.clone(),
                synced.clone(),
                options.metrics.clone(),
            )));
            if !static_routes {
                ingress::start(
                    client,
                    routes_tx.clone(),
                    namespaces.clone(),
                    options.metrics.clone(),
                    options.redirect.as_ref().map(|r| r.ports.clone()),
                )
                .await?;
            }
            synced.notified().await;
        }
        None if !static_routes => {
            return Err(crate::Error::Config(
                "without a cluster, a routes file is needed".into(),
            ));
        }
        None => {}
    }
    if let Some((path, content)) = routes_file {
        tasks.push(tokio::spawn(reload::watch_routes_file(
            path,
            content,
            reload::RELOAD_CHECK,
            routes_tx,
            namespaces.clone(),
            options.metrics.clone(),
        )));
    }
    let proxy = Arc::new(Proxy {
        routes: routes_rx,
        namespaces,
        reporter,
        held: HoldLimits::new(
            options.limits.max_held_per_namespace,
            options.limits.max_held_total,
            options.limits.max_held_body_bytes,
            options.metrics.clone(),
        ),
        connections: crate::slots::Slots::new(
            options.limits.max_connections,
            options.limits.max_connections,
        ),
        limits: options.limits,
        wake_page: options.wake_page,
        forwarder: Forwarder::new(),
        http1_fast_path: options.http1_fast_path,
        metrics: options.metrics,
        port: None,
    });
    let (drainer, drain) = drain::channel();
    if let Some(listen) = options.redirect.filter(|_| !static_routes) {
        tasks.push(tokio::spawn(redirect::run(
            proxy.clone(),
            proxy.routes.clone(),
            listen.ip,
            drain.clone(),
        )));
    }
    if options.workers == 0 {
        tasks.push(tokio::spawn(server::serve(
            listener,
            options.tls,
            proxy.clone(),
            drain,
        )));
    } else {
        spawn_workers(listener, options.workers, options.tls, &proxy, drain)?;
    }
    Ok(Running {
        addr,
        proxy,
        tasks,
        drainer: Some(drainer),
    })
}

/// Serve on `workers` threads, each a single-threaded runtime accepting from
/// the same listening socket: no work stealing or cross-thread wake-ups on the
/// request path. Watches and the activity flusher stay on the caller's runtime.
fn spawn_workers(
    listener: TcpListener,
    workers: usize,
    tls: Option<tokio_rustls::TlsAcceptor>,
    proxy: &Arc<Proxy>,
    drain: drain::Drain,
) -> crate::Result<()> {
    let listener = listener.into_std()?;
    for i in 0..workers {
        let (listener, tls, proxy, drain) = (
            listener.try_clone()?,
            tls.clone(),
            proxy.clone(),
            drain.clone(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(format!("proxy-worker-{i}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => server::serve(l, tls, proxy, drain).await,
                        Err(e) => tracing::error!(error = %e, "proxy worker cannot listen"),
                    }
                })
            })?;
    }
    Ok(())
}

/// `siesta proxy`: serve until SIGTERM or Ctrl-C.
pub async fn run(args: Settings) -> crate::Result<()> {
    // The proxy reads the admin config once at start (limits, flush interval,
    // default wake page); an invalid file is an error with every problem located.
    let cfg = match &args.config {
        Some(path) => crate::config::load(path).map_err(|e| crate::Error::Config(e.to_string()))?,
        None => AdminConfig::default(),
    };
    // Fail fast on a bad routes file, before looking for a cluster.
    if let Some(path) = &args.routes {
        reload::load(path)?;
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(server::tls_acceptor(c, k)?),
        (None, None) => None,
        _ => {
            return Err(crate::Error::Config(
                "--tls-cert and --tls-key go together".into(),
            ));
        }
    };
    let metrics = Arc::new(Metrics::new());
    let cluster = match crate::client::new(&metrics).await {
        Ok(c) => Some(c),
        Err(e) if args.routes.is_some() => {
            tracing::warn!(error = %e, "no cluster: routes file only, no activity is recorded");
            None
        }
        Err(e) => return Err(e),
    };
    let ready = crate::admin::Readiness::default();
    let admin = crate::admin::bind(args.admin_listen).await?;
    tokio::spawn(crate::admin::serve(admin, ready.clone(), metrics.clone()));
    let listener = TcpListener::bind(args.listen).await?;
    let options = Options {
        routes: None,
        routes_file: args.routes.clone(),
        limits: limits(&cfg),
        flush_interval: cfg.defaults.flush_interval,
        wake_page: cfg.defaults.wake_page,
        tls,
        sink: None,
        workers: match args.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        },
        http1_fast_path: args.http1_fast_path,
        metrics,
        redirect: args.redirect_ports.clone().map(|ports| redirect::Listen {
            ip: args.listen.ip(),
            ports,
        }),
    };
    let running = start(listener, options, cluster).await?;
    ready.set(true);
    tracing::info!(listen = %running.addr, admin = %args.admin_listen, "proxy serving");
    crate::supervisor::shutdown_signal().await;
    // 1. not ready, so load balancers stop sending; 2. refuse new connections
    // and let requests in flight finish, up to the drain timeout; 3. stop.
    ready.set(false);
    tracing::info!(deadline = ?args.drain_timeout, "draining");
    if running.drain(args.drain_timeout).await {
        tracing::info!("drained");
    } else {
        tracing::warn!("drain timeout: closing the connections still open");
    }
    Ok(())
}

/// Typed outcomes of the chain that the proxy answers itself, mapped to HTTP
/// in one place ([`Refusal::response`]).
#[derive(Debug)]
pub enum Refusal {
    Connect,
    NoHost,
    BadTarget(target::BadTarget),
    UnknownHost,
    TooManyHeld,
    HoldTimeout,
    NoEndpoint,
    InvalidBackend,
    WakePage(String),
    Upstream(forward::ForwardError),
}

impl Refusal {
    fn response(self, metrics: &Metrics) -> Response<Body> {
        let (status, text, retry) = match self {
            Refusal::Connect => (
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is not served: this is not a forward proxy\n",
                false,
            ),
            Refusal::NoHost => (StatusCode::BAD_REQUEST, "missing or invalid host\n", false),
            Refusal::BadTarget(_) => (
                StatusCode::BAD_REQUEST,
                "invalid request target (encoded separators are not served)\n",
                false,
            ),
            Refusal::UnknownHost => (
                StatusCode::NOT_FOUND,
                "no route for this host and path\n",
                false,
            ),
            Refusal::TooManyHeld => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests waiting for a wake; retry later\n",
                true,
            ),
            Refusal::HoldTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "the namespace did not wake in time\n",
                false,
            ),
            Refusal::NoEndpoint => (StatusCode::SERVICE_UNAVAILABLE, "no ready endpoint\n", true),
            Refusal::InvalidBackend => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the route's backend is refused or does not exist\n",
                false,
            ),
            Refusal::WakePage(host) => {
                return wake_page::page(&host).map(|b| Either::Right(Full::new(b)));
            }
            Refusal::Upstream(e @ forward::ForwardError::ClientStalled(_)) => {
                tracing::debug!(error = %e, "request body");
                (e.status(), "request body timed out\n", false)
            }
            Refusal::Upstream(e @ forward::ForwardError::ClientBody(_)) => {
                tracing::debug!(error = %e, "request body");
                (e.status(), "malformed request body\n", false)
            }
            Refusal::Upstream(e) => {
                tracing::debug!(error = %e, "upstream");
                metrics.error(ErrorKind::ProxyUpstream);
                (e.status(), "upstream unavailable\n", false)
            }
        };
        let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(
            text.as_bytes(),
        ))));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

/// What a front end decided for a request before hyper's path serves it
/// (the pre-hold reader's first request of a connection): admitted, and
/// waited for if it had to.
pub type Settled = Result<Forward, Refused>;

/// Index into [`routes::STATUS_CLASSES`].
fn status_class(s: StatusCode) -> usize {
    usize::from(s.as_u16() / 100).clamp(1, 5) - 1
}

impl Proxy {
    /// hyper's path through the handler chain. Never fails: every refusal is
    /// an answer. `pre`: this request was admitted (and held) already.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        conn: &Downstream,
        pre: Option<Settled>,
    ) -> Response<Body> {
        let settled = match pre {
            Some(settled) => settled,
            None => {
                // The view borrows the request: dropped before the wait.
                let admission = self.admit(&RequestView::of(&req, !req.body().is_end_stream()));
                self.settle(admission).await
            }
        };
        let (resp, route) = match settled {
            Ok(forward) => {
                let route = forward.route.clone();
                // Boxed: only a forwarded request needs the forwarder's state,
                // so a held HTTP/2 stream's task stays as small as its wait.
                let resp = match Box::pin(self.forward(req, conn, forward)).await {
                    Ok(r) => r.map(Either::Left),
                    Err(refusal) => refusal.response(&self.metrics),
                };
                (resp, Some(route))
            }
            Err(Refused { route, why }) => (why.response(&self.metrics), route),
        };
        let class = status_class(resp.status());
        match route {
            Some(route) => route.requests(&self.metrics, class).inc(),
            None => self
                .metrics
                .proxy_requests
                .with_label_values(&[routes::NO_NAMESPACE, routes::STATUS_CLASSES[class]])
                .inc(),
        }
        resp
    }

    /// Step 5: forward, naming the host as the client did (the authority
    /// wins, as for routing).
    async fn forward(
        &self,
        req: Request<Incoming>,
        conn: &Downstream,
        forward: Forward,
    ) -> Result<Response<Incoming>, Refusal> {
        let original_host = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(header::HOST).cloned(),
        };
        let origin = Origin {
            client: conn.client_ip.clone(),
            https: conn.https,
            host: original_host.ok_or(Refusal::NoHost)?,
        };
        self.forwarder
            .forward(req, &forward.upstream, forward.target.as_deref(), &origin)
            .await
            .map_err(Refusal::Upstream)
    }

    /// The route of a request: by host and path, or on a redirect port that port's.
    fn find(&self, host: &str, path: &str) -> Option<Arc<Route>> {
        let table = self.routes.borrow();
        match self.port {
            None => table.find(host, path).cloned(),
            Some(port) => table.port(port).map(|p| p.route.clone()),
        }
    }

    /// This proxy as it serves redirect port `port`: the same limits, slots,
    /// hold gate and activity, every request routed to that port's Service.
    pub fn for_port(&self, port: u16) -> Proxy {
        Proxy {
            routes: self.routes.clone(),
            namespaces: self.namespaces.clone(),
            reporter: self.reporter.clone(),
            limits: self.limits.clone(),
            held: self.held.clone(),
            wake_page: self.wake_page,
            forwarder: self.forwarder.clone(),
            connections: self.connections.clone(),
            http1_fast_path: self.http1_fast_path,
            metrics: self.metrics.clone(),
            port: Some(port),
        }
    }

    /// Where a request for this host and path would go now, without sending it.
    pub fn upstream_for(&self, host: &str, path: &str) -> Option<String> {
        let route = self.find(&routes::normalize_host(host)?, path)?;
        route.upstream().map(|u| u.authority.to_string())
    }

    /// How many requests of a namespace are held now.
    pub fn held(&self, namespace: &str) -> usize {
        self.held.held(namespace)
    }

    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proxy over `table`, without a cluster, for unit tests.
    pub(super) fn proxy_over(table: RouteTable) -> Proxy {
        let (_, rx) = watch::channel(Arc::new(table));
        Proxy {
            routes: rx,
            namespaces: Arc::default(),
            reporter: Reporter::new(
                Arc::new(crate::activity::AllAwake),
                None,
                None,
                Arc::default(),
            ),
            limits: ProxyLimits::default(),
            held: HoldLimits::new(1, 1, usize::MAX, Arc::default()),
            wake_page: WakePage::Auto,
            forwarder: Forwarder::new(),
            connections: crate::slots::Slots::new(1, 1),
            http1_fast_path: true,
            metrics: Arc::default(),
            port: None,
        }
    }

    fn proxy() -> Proxy {
        proxy_over(RouteTable::default())
    }

    #[tokio::test]
    async fn a_new_connections_task_is_small_while_its_first_request_waits() {
        // The task of a held HTTP/1 request is this future (the hyper part is
        // boxed): it must stay well under the 4 KiB a held request may cost.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_, drain) = drain::channel();
        let b = server::builder();
        let pool = pool::Pool::default();
        let proxy = Arc::new(proxy());
        let crate::slots::Admit::Free(slot) = proxy.connections.admit() else {
            panic!("a free slot");
        };
        let served = server::Served {
            builder: &b,
            proxy: proxy.clone(),
            pool: &pool,
            drain,
            slot: &slot,
        };
        let fut = server::connection(served, stream, "127.0.0.1:1".parse().unwrap(), false);
        let size = std::mem::size_of_val(&fut);
        assert!(size < 1536, "{size} bytes");
    }

    /// The size of the futures `f` makes.
    fn future_size<A, Fut: std::future::Future>(_f: impl Fn(A) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn a_held_streams_handler_is_not_as_large_as_a_forward() {
        // hyper spawns a task of this future for each HTTP/2 stream, and a
        // held stream keeps it for the whole wait: the forwarder's state
        // (the larger part) is boxed, allocated only when it forwards.
        let p = Arc::new(proxy());
        let d = Arc::new(Downstream::new("127.0.0.1:1".parse().unwrap(), false));
        let (p2, d2) = (p.clone(), d.clone());
        let handle = future_size(move |req: Request<Incoming>| {
            let (p, d) = (p2.clone(), d2.clone());
            async move { p.handle(req, &d, None).await }
        });
        let forward = future_size(move |(req, f): (Request<Incoming>, Forward)| {
            let (p, d) = (p.clone(), d.clone());
            async move { p.forward(req, &d, f).await }
        });
        assert!(handle < 2048, "{handle} bytes");
        assert!(
            handle < forward + 512,
            "{handle} bytes, forwarding {forward}"
        );
    }

    #[test]
    fn health_checks_do_not_count() {
        let p = proxy();
        assert!(!p.counts_as_activity("/healthz", "curl/8"));
        assert!(!p.counts_as_activity("/", "kube-probe/1.36"));
        assert!(!p.counts_as_activity("/", "ELB-HealthChecker/2.0"));
        assert!(p.counts_as_activity("/healthz/deep", "curl/8"));
        assert!(p.counts_as_activity("/", "Mozilla/5.0"));
    }
}
