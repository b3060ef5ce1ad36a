//! A downstream HTTP/1 connection's own upstream HTTP/1.1 connection, driven
//! in the downstream connection's task: [`Driver`] runs beside hyper's server
//! connection (`server.rs`), so a request and its answer cross no task
//! boundary and no shared pool. HTTP/1 serves one request at a time per
//! connection, so one upstream connection each is enough; it closes with the
//! downstream connection. HTTP/2 clients, h2c upstreams and upgrades use the
//! shared pool ([`super::forward`]).
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::forward::{CONNECT_TIMEOUT, ForwardError};

type ConnFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Default)]
struct Slot {
    /// Where the upstream connection goes.
    authority: Option<Authority>,
    /// Its sender while no request uses it.
    sender: Option<http1::SendRequest<Incoming>>,
    /// The upstream connection itself, polled by [`Driver`].
    conn: Option<ConnFuture>,
    waker: Option<Waker>,
}

/// The request side, used by the handler.
#[derive(Clone)]
pub struct Inline(Arc<Mutex<Slot>>);

/// The side that drives the upstream connection; never completes.
pub struct Driver(Arc<Mutex<Slot>>);

/// A connection's (empty) upstream slot and its driver.
pub fn pair() -> (Inline, Driver) {
    let slot = Arc::new(Mutex::new(Slot::default()));
    (Inline(slot.clone()), Driver(slot))
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inline {
    /// Whether a request for `authority` can use this connection's upstream:
    /// none yet, the same one, or one that has closed.
    pub fn serves(&self, authority: &Authority) -> bool {
        let slot = lock(&self.0);
        slot.conn.is_none() || slot.authority.as_ref() == Some(authority)
    }

    /// Send `req` (already addressed to the upstream) and return the answer's
    /// head. A request that was never written on a reused connection (it had
    /// closed meanwhile) is sent again once on a new one.
    pub async fn send(
        &self,
        mut req: Request<Incoming>,
        authority: &Authority,
    ) -> Result<Response<Incoming>, ForwardError> {
        let mut reused = self.take(authority);
        loop {
            let fresh = reused.is_none();
            let mut sender = match reused.take() {
                Some(s) => s,
                None => self.connect(authority).await?,
            };
            if sender.ready().await.is_err() {
                if fresh {
                    return Err(ForwardError::Upstream("connection closed".into()));
                }
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    lock(&self.0).sender = Some(sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(ForwardError::Upstream(e.into_error().to_string())),
                },
            }
        }
    }

    /// The idle sender, if it goes to `authority` and is still open.
    fn take(&self, authority: &Authority) -> Option<http1::SendRequest<Incoming>> {
        let mut slot = lock(&self.0);
        if slot.authority.as_ref() != Some(authority) {
            return None;
        }
        slot.sender.take().filter(|s| !s.is_closed())
    }

    /// Open a new upstream connection, replacing any previous one.
    async fn connect(
        &self,
        authority: &Authority,
    ) -> Result<http1::SendRequest<Incoming>, ForwardError> {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| ForwardError::Connect("connect timed out".into()))?
            .map_err(|e| ForwardError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ForwardError::Connect(e.to_string()))?;
        let mut slot = lock(&self.0);
        slot.authority = Some(authority.clone());
        slot.sender = None;
        slot.conn = Some(Box::pin(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "upstream connection ended");
            }
        }));
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
        Ok(sender)
    }
}

impl Future for Driver {
    type Output = Infallible;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Infallible> {
        let mut slot = lock(&self.0);
        if let Some(conn) = slot.conn.as_mut()
            && conn.as_mut().poll(cx).is_ready()
        {
            slot.conn = None;
            slot.sender = None;
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}
