//! The traffic listener: accept, optional TLS (ALPN h2 and http/1.1), then
//! HTTP/1.1 or HTTP/2 (h2c by prior knowledge, or h2 over TLS) on one port,
//! with upgrades. Limits on slow or oversized request heads live here. A new
//! HTTP/1 connection's first request head is read here before hyper gets the
//! connection ([`super::prehold`]).
use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::admission::{Admission, RequestView};
use super::drain::Drain;
use super::h1::{self, Handoff};
use super::pool::Pool;
use super::prehold::{self, HangUp, Head, Rewind, read_head};
use super::stall::{STALL_TIMEOUT, SendTimeout};
use super::{Downstream, Proxy, Settled};
use crate::metrics::ErrorKind;
use crate::slots::{Admit, Slot, SlotRef};

/// A request head larger than this gets 431 (HTTP/1) or a stream reset (HTTP/2).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// A client that has not sent a whole request head by then is disconnected;
/// also the idle keep-alive timeout of HTTP/1 connections.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Enough concurrent HTTP/2 streams per connection for many held requests.
const MAX_CONCURRENT_STREAMS: u32 = 1000;
/// HTTP/2 flow-control windows, fixed (no adaptive growth): what a client
/// may send of a stream's body before the proxy reads it (a held stream's
/// bound: the RFC's default window), and of all of a connection's bodies.
/// hyper applies them to every stream, held or forwarded, and a forwarded
/// upload moves at most a window per round trip: measured on loopback, 32,
/// 16 and 4 KiB cut one stream's upload to 0.5x, 0.3-0.5x and 0.1x while a held
/// stream on a connection of its own still cost 73, 45 and 25 KiB (114 KiB
/// at 64 KiB), so the RFC's window stays (docs/proxy.md).
pub const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// What the pre-hold reader takes in of a held HTTPS request's body (or
/// pipelined requests) while it waits, to see a hang-up; the rest stays
/// unread. Plain TCP is watched without reading ([`prehold::HangUp`]).
pub const HELD_READ: usize = 1024;

pub(super) fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .adaptive_window(false)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Accept connections until the drain begins; then wait for it to end, so a
/// serving thread keeps its runtime (and its connections) until then.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    proxy: Arc<Proxy>,
    mut drain: Drain,
) {
    let builder = Arc::new(builder());
    // Upstream connections of the HTTP/1.1 fast path, for this runtime only.
    let pool = Arc::new(Pool::default());
    while let Some((stream, peer)) = accept(&listener, &mut drain).await {
        // At `maxConnections` a new connection evicts the oldest one still
        // reading a request head (its first, or the next on a kept-alive
        // connection); when every connection is serving a request, the new
        // one is closed at once.
        let slot = match proxy.connections.admit_fairly().await {
            Admit::Free(slot) => slot,
            Admit::Evicted(slot) => {
                proxy.metrics.error(ErrorKind::ProxyConnectionEvicted);
                slot
            }
            Admit::Full => {
                proxy.metrics.error(ErrorKind::ProxyConnectionsFull);
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // A client that stops reading what it is sent is let go.
        let stream = SendTimeout::new(stream, STALL_TIMEOUT);
        let (builder, proxy, tls, drain, pool) = (
            builder.clone(),
            proxy.clone(),
            tls.clone(),
            drain.clone(),
            pool.clone(),
        );
        let on_evict = slot.on_evict();
        let task = tokio::spawn(async move {
            let served = Served {
                builder: &builder,
                proxy,
                pool: &pool,
                drain,
                slot: &slot,
            };
            match tls {
                None => connection(served, stream, peer, false).await,
                // Boxed: a plain connection's task need not have room for TLS state.
                Some(acceptor) => Box::pin(tls_connection(served, acceptor, stream, peer)).await,
            }
        });
        // Evicted, the task is aborted: not another byte is served.
        on_evict.abort(task.abort_handle());
    }
    // New connections are refused from here on.
    drop(listener);
    drain.close_and_wait().await;
}

/// The next connection, or `None` once the drain has begun. Accept errors
/// (out of file descriptors and the like) back off and keep serving.
pub(super) async fn accept(
    listener: &TcpListener,
    drain: &mut Drain,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.begun() => return None,
        };
        match accepted {
            Ok(c) => return Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// What a connection is served with.
pub(super) struct Served<'a> {
    pub builder: &'a auto::Builder<TokioExecutor>,
    pub proxy: Arc<Proxy>,
    pub pool: &'a Pool,
    pub drain: Drain,
    /// Evictable until a request head is in, and between requests.
    pub slot: &'a Slot,
}

async fn tls_connection(
    served: Served<'_>,
    acceptor: TlsAcceptor,
    stream: SendTimeout<tokio::net::TcpStream>,
    peer: SocketAddr,
) {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => connection(served, tls_stream, peer, true).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake"),
        Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
    }
}

/// One connection: its requests go by the HTTP/1.1 fast path ([`h1`]) while
/// it can serve them. The first request it leaves (or the first of the
/// connection, if it is not HTTP/1) is admitted here, and held here if its
/// namespace must wake; then hyper serves the connection, starting with the
/// bytes read so far and that request's outcome.
pub(super) async fn connection<S>(served: Served<'_>, mut io: S, peer: SocketAddr, https: bool)
where
    S: HangUp + tokio::io::AsyncWrite + 'static,
{
    let Served {
        builder,
        proxy,
        pool,
        mut drain,
        slot,
    } = served;
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::select! {
        head = tokio::time::timeout(HEADER_READ_TIMEOUT, read_head(&mut io, &mut buf)) => head,
        // A connection that has not sent a whole request yet is closed.
        () = drain.begun() => return,
    };
    if let Ok(Some(_)) = head {
        // A request (or HTTP/2) has come: serve it, however many crowd in.
        slot.keep();
    }
    let pre = match head {
        // Closed, or no whole head in time: hyper would have hung up too.
        Err(_) | Ok(None) => return,
        Ok(Some(Head::Request)) => {
            let admitted = if proxy.http1_fast_path {
                // Boxed, so that a held connection's task is only as large as the wait.
                let fast = Box::pin(h1::serve(
                    &mut io,
                    &mut buf,
                    &proxy,
                    Downstream::new(peer, https),
                    pool,
                    &mut drain,
                    slot,
                ));
                match fast.await {
                    Handoff::Done => return,
                    Handoff::Hyper(admitted) => admitted,
                }
            } else {
                None
            };
            let admitted = admitted.or_else(|| {
                let head = prehold::request(&buf)?;
                Some(proxy.admit(&RequestView::of(&head, prehold::has_body(&head))))
            });
            match admitted {
                None => None,
                Some(held @ Admission::Hold(_)) => {
                    // Only the bytes read and the wait stay allocated while it waits.
                    buf.shrink_to_fit();
                    let cap = buf.len() + HELD_READ;
                    let settled = tokio::select! {
                        settled = proxy.settle(held) => settled,
                        // A client that hangs up frees its place in the queue at once.
                        () = io.hung_up(&mut buf, cap) => return,
                    };
                    io = match io.rearm() {
                        Ok(io) => io,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "held connection");
                            return;
                        }
                    };
                    Some(settled)
                }
                Some(other) => Some(proxy.settle(other).await),
            }
        }
        Ok(Some(Head::Other)) => None,
    };
    let in_flight = InFlight::new(slot.on_evict());
    if pre.is_none() {
        // HTTP/2 (or a head hyper will parse): idle until its first request.
        slot.evictable();
    }
    // Boxed, so that a held connection's task is only as large as the wait.
    Box::pin(serve_connection(
        builder,
        Rewind::new(buf, io),
        Arc::new(Downstream::new(peer, https)),
        (proxy, in_flight),
        pre,
        drain,
    ))
    .await
}

/// The requests in flight on a connection hyper serves. While there is none
/// (HTTP/1 between requests, HTTP/2 without an open stream) the connection is
/// idle, and evictable at `maxConnections` like a slow head; a request is in
/// flight from its head until its answer's body has been sent.
struct InFlight {
    slot: SlotRef,
    /// Requests in flight, and whether the connection was upgraded (a tunnel
    /// is never idle).
    state: std::sync::Mutex<(usize, bool)>,
}

impl InFlight {
    fn new(slot: SlotRef) -> Arc<InFlight> {
        Arc::new(InFlight {
            slot,
            state: std::sync::Mutex::new((0, false)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, bool)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(self: &Arc<Self>) -> Busy {
        let mut state = self.lock();
        if state.0 == 0 {
            self.slot.keep();
        }
        state.0 += 1;
        Busy(self.clone())
    }

    fn upgraded(&self) {
        self.lock().1 = true;
    }
}

/// One request in flight; dropped when its answer has been sent.
struct Busy(Arc<InFlight>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.0 -= 1;
        if state.0 == 0 && !state.1 {
            self.0.slot.evictable();
        }
    }
}

/// An answer's body that keeps its request in flight until it is sent.
struct Tracked {
    body: super::Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = <super::Body as hyper::body::Body>::Data;
    type Error = <super::Body as hyper::body::Body>::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

async fn serve_connection<S>(
    builder: &auto::Builder<TokioExecutor>,
    io: S,
    downstream: Arc<Downstream>,
    (proxy, in_flight): (Arc<Proxy>, Arc<InFlight>),
    pre: Option<Settled>,
    mut drain: Drain,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // The pre-held outcome belongs to the connection's first request only.
    let first = Cell::new(pre);
    let peer = downstream.peer;
    let svc = service_fn(move |req: hyper::Request<Incoming>| {
        let (proxy, downstream, pre) = (proxy.clone(), downstream.clone(), first.take());
        let busy = in_flight.start();
        async move {
            let resp = proxy.handle(req, &downstream, pre).await;
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                busy.0.upgraded();
            }
            Ok::<_, Infallible>(resp.map(|body| Tracked { body, _busy: busy }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = drain.begun() => {
            // Finish the request in flight, then close (HTTP/2: GOAWAY).
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::trace!(%peer, error = %e, "connection ended");
    }
}

/// A TLS acceptor from PEM files, offering h2 and http/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> crate::Result<TlsAcceptor> {
    let bad = |what: &str, e: &dyn std::fmt::Display| crate::Error::Config(format!("{what}: {e}"));
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&cert.display().to_string(), &e))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))
        .map_err(|e| bad(&key.display().to_string(), &e))?
        .ok_or_else(|| crate::Error::Config(format!("{}: no private key", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("tls", &e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| bad("tls", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
