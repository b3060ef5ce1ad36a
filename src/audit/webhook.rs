//! The audit webhook: `POST /audit` (an EventList, as the API server sends it)
//! and `POST /audit/lines` (one Event per line, as log shippers send them).
//!
//! The request path only reads the body (capped), checks that it is JSON of
//! the right shape and queues it; a worker parses and reports. So the API
//! server gets its 2xx in well under a millisecond per batch, and a full queue
//! answers 503 (the API server retries with backoff) rather than growing.
//!
//! Before a client has shown credentials it can hold little: a new connection
//! has a few seconds for its TLS handshake and first request head, one address
//! only so many connections (more are closed unread), all bodies in flight
//! together only so many bytes (past it `429` with `Retry-After`, which the API
//! server retries) ([`super::admission`]), and connections without
//! credentials only a share of the slots: a new one evicts the oldest of them
//! rather than being refused ([`crate::slots`]), so however many addresses an
//! attacker has, an API server that connects and authenticates gets in.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::admission::{BodyBudget, Held, Peers};
use super::event::split_event_list;
use super::ingest::Ingest;
use crate::metrics::{AuditRefusal, ErrorKind, Metrics};
use crate::slots::{Admit, Slot, Slots};
use crate::{Error, Result};

/// Slow clients: the time to send request headers, and then the body.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A new connection's time for its TLS handshake and first request head.
pub const FIRST_HEAD_TIMEOUT: Duration = Duration::from_secs(3);
/// Where the webhook listens unless told: loopback, where no TLS is needed.
pub const LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8443,
));
/// The `--audit-max-body` default.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// The `--audit-max-connections-per-peer` default: the webhook's clients are
/// API servers and log forwarders, a few connections each.
pub const MAX_CONNECTIONS_PER_PEER: usize = 32;
/// The `--audit-max-bodies-bytes` default.
pub const MAX_BODIES_BYTES: usize = 64 * 1024 * 1024;
/// Largest request head (request line plus headers) read into memory.
const MAX_HEAD: usize = 64 * 1024;
/// Open connections in all. Past it a new connection evicts the oldest one
/// that has not authenticated yet; when all are authenticated it is closed
/// at once.
const MAX_CONNECTIONS: usize = 256;
/// Of those, connections that have not authenticated yet (no verified client
/// certificate, no request with valid credentials): past it a new one evicts
/// the oldest of them, so the rest are left to authenticated clients.
const MAX_UNAUTHENTICATED: usize = 192;
/// Accepted bodies waiting for the worker; beyond this the webhook answers 503.
const QUEUE: usize = 32;

/// How the audit listener is exposed, who may send to it, and how long a
/// client may take.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Default [`LISTEN`].
    pub listen: Option<SocketAddr>,
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    pub client_ca: Option<std::path::PathBuf>,
    pub token_file: Option<std::path::PathBuf>,
    /// Largest body read, in bytes; default 16 MiB, 0 reads as 1.
    pub max_body: usize,
    /// From accepting a connection to the end of its first request head, the
    /// TLS handshake included; the connection is closed after it, so a client
    /// that has not shown its credentials by then gives its slot back.
    /// Default 3 s; zero reads as the default.
    pub first_head_timeout: Duration,
    /// On a kept-alive connection, from the end of the last request to the end
    /// of the next request head; the connection is closed after it. It bounds
    /// the first head too, when shorter than `first_head_timeout`. Default
    /// 10 s; zero reads as the default.
    pub header_timeout: Duration,
    /// From the end of the head to the end of the body; the answer is then
    /// `408` and the connection is closed. Default 30 s; zero reads as the default.
    pub body_timeout: Duration,
    /// Connections one client address may have open at once; a new one past
    /// it is closed at once, before a byte is read. Default 32; 0: no limit per
    /// address (256 in all still hold).
    pub max_connections_per_peer: usize,
    /// Bytes of request bodies held at once across connections: read so far,
    /// queued, or being parsed. A body that would go past it gets `429` with
    /// `Retry-After: 1` (one whose `Content-Length` does not fit gets it before
    /// a byte of it is read). Default 64 MiB; less than `max_body` reads as
    /// `max_body`, so the largest body can always get through alone.
    pub max_bodies_bytes: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            token_file: None,
            max_body: MAX_BODY,
            first_head_timeout: FIRST_HEAD_TIMEOUT,
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            max_connections_per_peer: MAX_CONNECTIONS_PER_PEER,
            max_bodies_bytes: MAX_BODIES_BYTES,
        }
    }
}

/// A timeout of zero reads as the default.
fn nonzero_or(d: Duration, default: Duration) -> Duration {
    if d.is_zero() { default } else { d }
}

/// What every connection is held to.
#[derive(Clone, Copy)]
struct Limits {
    max_body: usize,
    first_head_timeout: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
}

/// Who may post: with neither set, anyone who can reach the (loopback) address.
struct Auth {
    token: Option<String>,
    client_certs: bool,
}

impl Auth {
    fn required(&self) -> bool {
        self.token.is_some() || self.client_certs
    }

    fn allows(&self, verified_client_cert: bool, authorization: Option<&[u8]>) -> bool {
        if !self.required() || (self.client_certs && verified_client_cert) {
            return true;
        }
        match (&self.token, authorization.and_then(bearer)) {
            (Some(token), Some(given)) => constant_time_eq(token.as_bytes(), given),
            _ => false,
        }
    }
}

/// The token of a `Bearer` credential (RFC 6750 2.1; the scheme is
/// case-insensitive, RFC 9110 11.1).
fn bearer(authorization: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = authorization.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ")).then(|| token.trim_ascii())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A bound, configured audit listener.
pub struct Webhook {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    auth: Arc<Auth>,
    limits: Limits,
    peers: Arc<Peers>,
    budget: BodyBudget,
}

impl Webhook {
    /// Load TLS and credentials, refuse an exposed address without both, bind.
    pub async fn bind(settings: &Settings) -> Result<Webhook> {
        let listen = settings.listen.unwrap_or(LISTEN);
        let token = match &settings.token_file {
            Some(path) => {
                let token = std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("audit token file {}: {e}", path.display()))
                })?;
                let token = token.trim().to_string();
                if token.is_empty() {
                    return Err(Error::Config(format!(
                        "audit token file {} is empty",
                        path.display()
                    )));
                }
                Some(token)
            }
            None => None,
        };
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => {
                Some(tls_acceptor(cert, key, settings.client_ca.as_deref())?)
            }
            (None, None) if settings.client_ca.is_some() => {
                return Err(Error::Config(
                    "--audit-client-ca needs --audit-tls-cert and --audit-tls-key".into(),
                ));
            }
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "--audit-tls-cert and --audit-tls-key go together".into(),
                ));
            }
        };
        let auth = Auth {
            token,
            client_certs: settings.client_ca.is_some(),
        };
        if !listen.ip().is_loopback() && (tls.is_none() || !auth.required()) {
            return Err(Error::Config(format!(
                "audit listener {listen} is not loopback: it needs TLS (--audit-tls-cert, --audit-tls-key) \
                 and authentication (--audit-token-file or --audit-client-ca)"
            )));
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Error::Other(format!("audit listen {listen}: {e}")))?;
        let max_body = settings.max_body.max(1);
        Ok(Webhook {
            listener,
            tls,
            auth: Arc::new(auth),
            limits: Limits {
                max_body,
                first_head_timeout: nonzero_or(settings.first_head_timeout, FIRST_HEAD_TIMEOUT),
                header_timeout: nonzero_or(settings.header_timeout, HEADER_TIMEOUT),
                body_timeout: nonzero_or(settings.body_timeout, BODY_TIMEOUT),
            },
            peers: Peers::new(settings.max_connections_per_peer),
            budget: BodyBudget::new(settings.max_bodies_bytes.max(max_body)),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The bytes of bodies in flight, and their limit (shared with the server).
    pub fn body_budget(&self) -> BodyBudget {
        self.budget.clone()
    }

    /// Serve until the task is dropped.
    pub async fn serve(self, ingest: Ingest) -> Result<()> {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let metrics = ingest.metrics().clone();
        // It ends once the last sender is gone: this loop's and the connections'.
        tokio::task::spawn_blocking(move || work(rx, ingest));
        let slots = Slots::new(MAX_CONNECTIONS, MAX_UNAUTHENTICATED);
        let limits = self.limits;
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "audit accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Past a limit the connection is closed at once, unread: one
            // address cannot take the slots its peers need.
            let Some(peer_slot) = self.peers.admit(peer.ip()) else {
                tracing::debug!(%peer, "audit connection closed: too many from this address");
                metrics.audit_refused(AuditRefusal::PeerConnections);
                continue;
            };
            let slot = match slots.admit_fairly_from(peer.ip()).await {
                Admit::Free(slot) => slot,
                Admit::Evicted(slot) => {
                    metrics.audit_refused(AuditRefusal::Evicted);
                    slot
                }
                Admit::Full => {
                    tracing::debug!(%peer, "audit connection closed: {MAX_CONNECTIONS} authenticated open");
                    metrics.audit_refused(AuditRefusal::ConnectionsFull);
                    continue;
                }
            };
            let slot = Arc::new(slot);
            let first_head_by = Instant::now() + limits.first_head_timeout;
            let handler = {
                let (auth, tx, budget) = (self.auth.clone(), tx.clone(), self.budget.clone());
                let (metrics, slot) = (metrics.clone(), slot.clone());
                move |verified| Handler {
                    auth,
                    verified,
                    limits,
                    tx,
                    budget,
                    metrics,
                    slot,
                }
            };
            let (tls, metrics) = (self.tls.clone(), metrics.clone());
            let on_evict = slot.on_evict();
            let task = tokio::spawn(async move {
                let _held = peer_slot;
                let _ = stream.set_nodelay(true);
                let result = match tls {
                    Some(tls) => {
                        match tokio::time::timeout_at(first_head_by, tls.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let verified = stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .is_some_and(|c| !c.is_empty());
                                // A verified certificate authenticates at the handshake.
                                if verified {
                                    slot.keep();
                                }
                                let handler = handler(verified);
                                connection(TokioIo::new(stream), handler, first_head_by).await
                            }
                            Ok(Err(e)) => Err(Ended::Failed(format!("tls handshake: {e}"))),
                            Err(_) => Err(Ended::NoHead),
                        }
                    }
                    None => connection(TokioIo::new(stream), handler(false), first_head_by).await,
                };
                match result {
                    Ok(()) => {}
                    Err(Ended::NoHead) => {
                        metrics.audit_refused(AuditRefusal::FirstHeadTimeout);
                        tracing::debug!(%peer, "audit connection closed: no request head before the first-head timeout");
                    }
                    Err(Ended::Failed(e)) => {
                        tracing::debug!(%peer, error = %e, "audit connection ended");
                    }
                }
            });
            // Evicted, the task is aborted and the connection closed.
            on_evict.abort(task.abort_handle());
        }
    }
}

/// Why a connection ended before its client closed it.
enum Ended {
    /// No TLS handshake and first request head by the first-head deadline.
    NoHead,
    Failed(String),
}

/// Serve one connection; it is closed unless its first request head is in by
/// `first_head_by`.
async fn connection<IO>(
    io: TokioIo<IO>,
    handler: Handler,
    first_head_by: Instant,
) -> Result<(), Ended>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = handler.limits.header_timeout;
    let handler = Arc::new(handler);
    let head_arrived = Arc::new(Notify::new());
    let service = {
        let head_arrived = head_arrived.clone();
        hyper::service::service_fn(move |req| {
            head_arrived.notify_one();
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(req).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        // In this order: a head that has come is served, even at the deadline.
        biased;
        r = conn.as_mut() => return r.map_err(|e| Ended::Failed(e.to_string())),
        () = head_arrived.notified() => {}
        () = tokio::time::sleep_until(first_head_by) => return Err(Ended::NoHead),
    }
    conn.await.map_err(|e| Ended::Failed(e.to_string()))
}

/// A body for the worker, holding its bytes of the budget until it is done.
struct Job {
    body: Bytes,
    kind: JobKind,
    _held: Held,
}

enum JobKind {
    EventList(Vec<Range<usize>>),
    Lines,
}

/// The worker: parse and report off the request path.
fn work(mut rx: mpsc::Receiver<Job>, ingest: Ingest) {
    while let Some(job) = rx.blocking_recv() {
        match &job.kind {
            JobKind::EventList(items) => ingest.event_list_items(&job.body, items),
            JobKind::Lines => ingest.lines(&job.body),
        };
    }
}

struct Handler {
    auth: Arc<Auth>,
    verified: bool,
    limits: Limits,
    tx: mpsc::Sender<Job>,
    budget: BodyBudget,
    metrics: Arc<Metrics>,
    /// The connection's slot: kept for good once a request authenticates.
    slot: Arc<Slot>,
}

/// What went wrong with a request, mapped to its status in one place.
enum Refusal {
    NotFound,
    Method,
    Unauthorized,
    TooLarge,
    Timeout,
    Malformed(String),
    Busy,
    /// Bodies in flight hold the whole budget.
    OverBudget,
}

impl Refusal {
    fn response(self, metrics: &Metrics) -> Response<Full<Bytes>> {
        let (status, message) = match self {
            Refusal::NotFound => (
                StatusCode::NOT_FOUND,
                "not found: POST /audit or /audit/lines".to_string(),
            ),
            Refusal::Method => (StatusCode::METHOD_NOT_ALLOWED, "use POST".to_string()),
            Refusal::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized".to_string()),
            Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body too large".to_string()),
            Refusal::Timeout => (StatusCode::REQUEST_TIMEOUT, "body too slow".to_string()),
            Refusal::Malformed(e) => (
                StatusCode::BAD_REQUEST,
                format!("not an audit EventList: {e}"),
            ),
            Refusal::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy, retry".to_string()),
            Refusal::OverBudget => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many bodies in flight, retry".to_string(),
            ),
        };
        let refused = match status {
            StatusCode::TOO_MANY_REQUESTS => Some(AuditRefusal::BodiesFull),
            StatusCode::SERVICE_UNAVAILABLE => Some(AuditRefusal::QueueFull),
            StatusCode::UNAUTHORIZED => Some(AuditRefusal::Unauthorized),
            _ => None,
        };
        if let Some(reason) = refused {
            metrics.audit_refused(reason);
        }
        if matches!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT | StatusCode::BAD_REQUEST
        ) {
            metrics.audit_events.with_label_values(&["invalid"]).inc();
            metrics.error(ErrorKind::AuditBody);
        }
        let mut response = text(status, message);
        let headers = response.headers_mut();
        if matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        // A refused request ends its connection: no more of its body is read,
        // and a client without credentials cannot keep a slot by asking again.
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        response
    }
}

fn text(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message + "\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl Handler {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match self.accept(req).await {
            Ok(()) => text(StatusCode::OK, "accepted".into()),
            Err(refusal) => refusal.response(&self.metrics),
        }
    }

    async fn accept(&self, req: Request<Incoming>) -> Result<(), Refusal> {
        let lines = match req.uri().path() {
            "/audit" => false,
            "/audit/lines" => true,
            _ => return Err(Refusal::NotFound),
        };
        if req.method() != Method::POST {
            return Err(Refusal::Method);
        }
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !self.auth.allows(self.verified, authorization) {
            return Err(Refusal::Unauthorized);
        }
        // Credentials shown (or none needed): this connection is no longer
        // one a new connection may evict.
        self.slot.keep();
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body as u64) {
            return Err(Refusal::TooLarge);
        }
        if declared.is_some_and(|n| n > self.budget.free() as u64) {
            return Err(Refusal::OverBudget);
        }
        let (body, held) =
            tokio::time::timeout(self.limits.body_timeout, self.read_body(req.into_body()))
                .await
                .map_err(|_| Refusal::Timeout)??;
        let kind = if lines {
            JobKind::Lines
        } else {
            let items = split_event_list(&body).map_err(|e| Refusal::Malformed(e.to_string()))?;
            JobKind::EventList(items)
        };
        let job = Job {
            body,
            kind,
            _held: held,
        };
        self.tx.try_send(job).map_err(|_| Refusal::Busy)
    }

    /// The whole body, its bytes held against the budget as they come in.
    /// Frames are kept as read and joined once at the end: no buffer that
    /// doubles as it grows, so what a body holds is what it sent.
    async fn read_body(&self, mut body: Incoming) -> Result<(Bytes, Held), Refusal> {
        let mut held = self.budget.hold();
        let mut frames = Vec::new();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Refusal::Malformed(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if len + data.len() > self.limits.max_body {
                return Err(Refusal::TooLarge);
            }
            if !held.grow(data.len()) {
                return Err(Refusal::OverBudget);
            }
            len += data.len();
            frames.push(data);
        }
        let body = if frames.len() == 1 {
            frames.pop().unwrap_or_default()
        } else {
            let mut whole = BytesMut::with_capacity(len);
            for frame in &frames {
                whole.extend_from_slice(frame);
            }
            whole.freeze()
        };
        Ok((body, held))
    }
}

fn tls_acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsAcceptor> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| Error::Config(format!("audit tls {}: {e}", path.display())))
    };
    let bad = |path: &Path, e: &dyn std::fmt::Display| {
        Error::Config(format!("audit tls {}: {e}", path.display()))
    };
    let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if certs.is_empty() {
        return Err(bad(cert, &"no certificate"));
    }
    let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(|e| bad(key, &e))?
        .ok_or_else(|| bad(key, &"no private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("audit tls: {e}")))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut read(ca)?.as_slice()) {
                roots
                    .add(c.map_err(|e| bad(ca, &e))?)
                    .map_err(|e| bad(ca, &e))?;
            }
            // Unauthenticated handshakes are let through so a bearer token can
            // still authenticate; the handler refuses requests with neither.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| bad(ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(cert, &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::Reporter;
    use crate::audit::ingest::tests::{ingest, line};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(settings: Settings) -> (SocketAddr, Reporter) {
        let (ingest, reporter) = ingest();
        let webhook = Webhook::bind(&Settings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..settings
        })
        .await
        .unwrap();
        let addr = webhook.local_addr().unwrap();
        tokio::spawn(webhook.serve(ingest));
        (addr, reporter)
    }

    fn settings() -> Settings {
        Settings {
            max_body: 64 * 1024,
            ..Settings::default()
        }
    }

    /// One HTTP/1.1 request on a fresh connection; the response status.
    async fn post(addr: SocketAddr, path: &str, extra: &str, body: &[u8]) -> u16 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let _ = s.write_all(body).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out)
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    async fn eventually_seen(reporter: &Reporter, namespace: &str) -> bool {
        for _ in 0..200 {
            if reporter.seen(namespace).is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    fn event_list(items: &[String]) -> String {
        format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
            items.join(",")
        )
    }

    #[tokio::test]
    async fn an_event_list_with_one_malformed_item_still_counts_its_good_items() {
        let (addr, reporter) = start(settings()).await;
        let good = line("w1", "alice", "get", "audit-w1", "2026-01-02T03:04:05Z");
        let body = event_list(&[r#"{"auditID":false}"#.to_string(), good]);
        assert_eq!(post(addr, "/audit", "", body.as_bytes()).await, 200);
        assert!(eventually_seen(&reporter, "audit-w1").await);
    }

    #[tokio::test]
    async fn json_lines_are_accepted() {
        let (addr, reporter) = start(settings()).await;
        let body = format!(
            "garbage\n{}\n",
            line("w2", "alice", "get", "audit-w2", "2026-01-02T03:04:05Z")
        );
        assert_eq!(post(addr, "/audit/lines", "", body.as_bytes()).await, 200);
        assert!(eventually_seen(&reporter, "audit-w2").await);
    }

    #[tokio::test]
    async fn malformed_json_is_400_and_an_oversized_body_413() {
        let (addr, _) = start(settings()).await;
        assert_eq!(
            post(addr, "/audit", "", b"{\"items\":[{\"auditID\":").await,
            400
        );
        assert_eq!(post(addr, "/audit", "", b"[]").await, 400);
        let big = vec![b' '; 64 * 1024 + 1];
        assert_eq!(post(addr, "/audit", "", &big).await, 413);
        assert_eq!(post(addr, "/audit/lines", "", &big).await, 413);
        // Chunked, so the cap is met while reading rather than from content-length.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /audit HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n").await.unwrap();
        let chunk = vec![b' '; 16 * 1024];
        for _ in 0..5 {
            let _ = s
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await;
            let _ = s.write_all(&chunk).await;
            let _ = s.write_all(b"\r\n").await;
        }
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 413"));
        assert_eq!(post(addr, "/nope", "", b"{}").await, 404);
    }

    #[tokio::test]
    async fn a_bearer_token_is_required_when_configured() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let (addr, _) = start(Settings {
            token_file: Some(token),
            ..settings()
        })
        .await;
        let body = event_list(&[]);
        assert_eq!(post(addr, "/audit", "", body.as_bytes()).await, 401);
        assert_eq!(
            post(
                addr,
                "/audit",
                "authorization: Bearer wrong\r\n",
                body.as_bytes()
            )
            .await,
            401
        );
        for (header, status) in [
            ("authorization: Bearer s3cret\r\n", 200),
            ("authorization: bearer s3cret\r\n", 200),
            ("authorization: BEARER  s3cret\r\n", 200),
            ("authorization: Bearers3cret\r\n", 401),
            ("authorization: Basic s3cret\r\n", 401),
            ("authorization: Bearer s3cre\r\n", 401),
            ("authorization: Bearer s3crett\r\n", 401),
        ] {
            assert_eq!(
                post(addr, "/audit", header, body.as_bytes()).await,
                status,
                "{header:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_exposed_address_without_tls_and_auth_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret").unwrap();
        for s in [
            Settings::default(),
            Settings {
                token_file: Some(token),
                ..Settings::default()
            },
        ] {
            let s = Settings {
                listen: Some("0.0.0.0:0".parse().unwrap()),
                ..s
            };
            let err = Webhook::bind(&s).await.err().expect("refused");
            assert!(err.to_string().contains("not loopback"), "{err}");
        }
    }
}
