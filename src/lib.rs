//! Siesta puts idle Kubernetes namespaces to sleep and wakes them on the first request.
//!
//! The data flow, in the order a request travels:
//!
//! - [`audit`] turns API-server audit events into activity; [`proxy`] does the same
//!   for HTTP requests and holds them while a namespace wakes.
//! - [`activity`] keeps the newest activity per namespace in memory and persists it,
//!   coalesced, to the namespace's Activity Lease (the wake request when asleep).
//! - [`annotations`] and [`config`] say what a namespace wants; [`schedule`] says
//!   whether a schedule is awake at an instant; [`decide`] is the pure function that
//!   turns all of it into sleep, wake or keep, and when to look again.
//! - [`controller`] watches the cluster and runs [`decide`]; [`scaler`] is the only
//!   writer of workload replicas, and records originals in the same request.
//! - [`metrics`] and [`admin`] expose what happens to Prometheus.
#![forbid(unsafe_code)]

pub mod activity;
pub mod admin;
pub mod annotations;
pub mod audit;
pub mod config;
pub mod controller;
pub mod decide;
pub mod duration;
pub mod metrics;
pub mod proxy;
pub mod resources;
pub mod scaler;
pub mod schedule;
pub mod status;

/// The user agent of every API request Siesta makes; the audit ingest ignores it.
pub const USER_AGENT: &str = concat!("siesta/", env!("CARGO_PKG_VERSION"));
/// The field manager of every write Siesta makes (for GitOps `ignoreDifferences`).
pub const FIELD_MANAGER: &str = "siesta";

/// The crate's error type; `anyhow` is used only in `main`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A kube client whose requests carry Siesta's user agent, from `KUBECONFIG` or
/// the in-cluster service account.
pub async fn kube_client() -> Result<kube::Client> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| Error::Other(format!("no cluster configuration: {e}")))?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(USER_AGENT),
    ));
    // Count every request by verb, so Siesta's own load on the API server is visible.
    let counted = tower::util::MapRequestLayer::new(|req: http::Request<kube::client::Body>| {
        let watch = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
        let verb = if watch {
            "watch"
        } else {
            req.method().as_str()
        };
        crate::metrics::get()
            .kube_requests
            .with_label_values(&[verb])
            .inc();
        req
    });
    // ...and every answer by status, so a forbidden (403) request is never silent.
    let answered =
        tower::util::MapResponseLayer::new(|res: http::Response<Box<kube::client::DynBody>>| {
            let code = match res.status().as_u16() {
                c @ (401 | 403 | 404 | 409 | 429) => c.to_string(),
                c => format!("{}xx", c / 100),
            };
            crate::metrics::get()
                .kube_responses
                .with_label_values(&[&code])
                .inc();
            res
        });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&answered)
        .with_layer(&counted)
        .build())
}

/// Resolves when the process should stop: SIGTERM, Ctrl-C, or, when
/// `SIESTA_EXIT_WITH_STDIN=1` (tests), when standard input closes, so that a
/// child process never outlives the test that started it.
pub async fn shutdown_signal() {
    let stdin_closed = async {
        if std::env::var("SIESTA_EXIT_WITH_STDIN").as_deref() == Ok("1") {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            })
            .await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = stdin_closed => {}
    }
}
