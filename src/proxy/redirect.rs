//! Redirect listeners: while a namespace sleeps, the controller points its
//! Services at the proxy through EndpointSlices ([`crate::redirect`]), one
//! proxy port per Service port. This module listens on those ports (on the
//! host of `--listen`) as the route table lists them, and serves each by the
//! port's kind:
//! - HTTP: the proxy's own connection handling, with every request routed to
//!   the port's Service ([`Proxy::for_port`]): recorded, the waking page for
//!   browsers or held, then forwarded to the Service's own ready endpoints;
//! - TCP: the connection is recorded and held (the same hold limits and
//!   timeout as an HTTP request; of what the client sends meanwhile the
//!   first 1 KiB is read, to see a hang-up, and the rest stays in the
//!   kernel's socket buffer), then spliced to a ready endpoint.
//!
//! A port is listened on while the table lists it (which it does for
//! [`super::ingress::PORT_LINGER`] after its slice goes); a port that cannot
//! be bound is logged, counted and tried again.
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::drain::Drain;
use super::routes::RouteTable;
use super::{Proxy, prehold, server};
use crate::metrics::ErrorKind;
use crate::slots::Admit;

/// Where redirect ports are listened on.
#[derive(Clone, Debug)]
pub struct Listen {
    pub ip: IpAddr,
    /// Only ports of this range are served (the controller's `--redirect-ports`).
    pub ports: RangeInclusive<u16>,
}

/// How often a port that could not be bound is tried again.
const BIND_RETRY: Duration = Duration::from_secs(5);
/// How long connecting to a woken endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener tasks, aborted when the manager ends (the proxy is dropped).
#[derive(Default)]
struct Listeners(BTreeMap<u16, (bool, JoinHandle<()>)>);

impl Drop for Listeners {
    fn drop(&mut self) {
        for (_, task) in self.0.values() {
            task.abort();
        }
    }
}

/// Keep a listener on every redirect port of the route table until the drain.
pub async fn run(
    proxy: Arc<Proxy>,
    mut routes: watch::Receiver<Arc<RouteTable>>,
    ip: IpAddr,
    drain: Drain,
) {
    let mut drain = Some(drain);
    let mut open = Listeners::default();
    while let Some(d) = drain.as_mut() {
        let wanted: BTreeMap<u16, bool> = routes.borrow_and_update().ports().collect();
        open.0.retain(|port, (http, task)| {
            let keep = wanted.get(port) == Some(http) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let mut failed = false;
        for (&port, &http) in &wanted {
            if open.0.contains_key(&port) {
                continue;
            }
            let listener = match TcpListener::bind(SocketAddr::new(ip, port)).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(%ip, port, error = %e, "cannot listen on a redirect port");
                    proxy.metrics.error(ErrorKind::ProxyRedirectListen);
                    failed = true;
                    continue;
                }
            };
            tracing::info!(%ip, port, http, "redirect port open");
            let drain = d.clone();
            let task = if http {
                let scoped = Arc::new(proxy.for_port(port));
                tokio::spawn(server::serve(listener, None, scoped, drain))
            } else {
                tokio::spawn(serve_tcp(listener, Arc::new(proxy.for_port(port)), drain))
            };
            open.0.insert(port, (http, task));
        }
        tokio::select! {
            changed = routes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep(BIND_RETRY), if failed => {}
            () = d.begun() => {
                // The listeners drain themselves; this task only keeps them
                // until the proxy is dropped.
                drain = None;
            }
        }
    }
    let _open = open;
    std::future::pending::<()>().await;
}

/// Accept plain TCP connections on a redirect port until the drain.
async fn serve_tcp(listener: TcpListener, proxy: Arc<Proxy>, mut drain: Drain) {
    while let Some((stream, peer)) = server::accept(&listener, &mut drain).await {
        // A TCP client may wait for the server to speak first: it is doing
        // real work from the start, never evicted as a slow HTTP client is.
        let slot = match proxy.connections.admit() {
            Admit::Free(slot) | Admit::Evicted(slot) => slot,
            Admit::Full => {
                proxy.metrics.error(ErrorKind::ProxyConnectionsFull);
                continue;
            }
        };
        slot.keep();
        let (proxy, drain) = (proxy.clone(), drain.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _drain = drain;
            splice(&proxy, stream, peer).await;
        });
    }
    drop(listener);
    drain.close_and_wait().await;
}

/// One TCP connection: admitted and held like a request, then joined to a
/// ready endpoint of the Service. While held, what the client sends waits
/// unread in the socket, and a hang-up frees its place at once.
async fn splice(proxy: &Proxy, client: TcpStream, peer: SocketAddr) {
    let admission = proxy.admit_stream();
    let settled = tokio::select! {
        settled = proxy.settle(admission) => settled,
        () = prehold::read_closed(&client) => return,
    };
    let Ok(mut client) = prehold::rearm(client) else {
        return;
    };
    let forward = match settled {
        Ok(f) => f,
        Err(refused) => {
            tracing::debug!(%peer, why = ?refused.why, "redirect connection refused");
            return;
        }
    };
    let to = forward.upstream.authority.as_str();
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, to, error = %e, "redirect upstream");
            proxy.metrics.error(ErrorKind::ProxyUpstream);
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, to, "redirect upstream: connect timed out");
            proxy.metrics.error(ErrorKind::ProxyUpstream);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
