//! Idle keep-alive connections to upstreams, for the HTTP/1.1 fast path
//! ([`super::h1`]). One pool per serving runtime: a connection is registered
//! with the runtime that opened it and is only ever used there.
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::uri::Authority;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::FastMap;

/// An idle connection older than this is closed rather than reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this many idle connections are kept per upstream.
const MAX_IDLE: usize = 256;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Idle {
    stream: TcpStream,
    since: Instant,
}

/// An upstream connection and whether it came from the pool (a reused
/// connection may have been closed by the upstream meanwhile).
pub struct Checkout {
    pub stream: TcpStream,
    pub reused: bool,
}

#[derive(Default)]
pub struct Pool {
    idle: Mutex<Idles>,
}

/// Idle connections by upstream, oldest first.
#[derive(Default)]
struct Idles {
    by_upstream: FastMap<Authority, Vec<Idle>>,
    last_sweep: Option<Instant>,
}

impl Idles {
    /// Close connections idle for longer than [`IDLE_TIMEOUT`] and forget
    /// upstreams without any (endpoints come and go), at most once per timeout.
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < IDLE_TIMEOUT)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.by_upstream.retain(|_, list| {
            list.retain(|c| now.duration_since(c.since) <= IDLE_TIMEOUT);
            !list.is_empty()
        });
    }
}

impl Pool {
    /// The most recently used idle connection to `to` that is still open, or
    /// (or when `fresh`) a new one.
    pub async fn checkout(&self, to: &Authority, fresh: bool) -> std::io::Result<Checkout> {
        if !fresh && let Some(stream) = self.take(to) {
            return Ok(Checkout {
                stream,
                reused: true,
            });
        }
        Ok(Checkout {
            stream: connect(to).await?,
            reused: false,
        })
    }

    fn take(&self, to: &Authority) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.by_upstream.get_mut(to)?;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            if now.duration_since(c.since) > IDLE_TIMEOUT {
                // The rest are older still.
                list.clear();
                break;
            }
            if still_idle(&c.stream) {
                return Some(c.stream);
            }
        }
        None
    }

    /// Keep a connection whose last response was read completely.
    pub fn checkin(&self, to: &Authority, stream: TcpStream) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.sweep(now);
        let list = idle.by_upstream.entry(to.clone()).or_default();
        if list.len() >= MAX_IDLE {
            list.remove(0);
        }
        list.push(Idle { stream, since: now });
    }

    /// How many idle connections the pool keeps, and to how many upstreams.
    #[cfg(test)]
    fn idle(&self) -> (usize, usize) {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.by_upstream.values().map(Vec::len).sum();
        (conns, idle.by_upstream.len())
    }
}

/// An idle upstream connection has nothing to say: if the runtime has seen it
/// readable (the upstream closed it, or sent bytes nobody asked for), it is
/// not reused. This costs no system call.
fn still_idle(stream: &TcpStream) -> bool {
    use futures::FutureExt;
    stream.ready(Interest::READABLE).now_or_never().is_none()
}

async fn connect(to: &Authority) -> std::io::Result<TcpStream> {
    let port = to.port_u16().unwrap_or(80);
    // An IPv6 literal without its brackets.
    let host = to.host().trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_connections_to_gone_upstreams_are_closed_and_forgotten() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let to: Authority = addr.to_string().parse().unwrap();
        let pool = Pool::default();
        let c = pool.checkout(&to, false).await.unwrap();
        assert!(!c.reused);
        pool.checkin(&to, c.stream);
        assert_eq!(pool.idle(), (1, 1));
        let c = pool.checkout(&to, false).await.unwrap();
        assert!(c.reused, "an idle connection is reused");
        pool.checkin(&to, c.stream);
        // Long after (its endpoint gone, nothing checked out from it), the
        // sweep that a check-in to any upstream runs closes it and forgets
        // its upstream.
        let later = Instant::now() + IDLE_TIMEOUT * 2;
        pool.idle.lock().unwrap().sweep(later);
        assert_eq!(pool.idle(), (0, 0));
    }
}
