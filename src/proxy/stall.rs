//! Giving up on a client that stops: a request body that goes 30 s without
//! a byte ([`IdleBody`], hyper's path; the HTTP/1.1 fast path times its body
//! reads itself), and a connection whose writes to the client make no
//! progress for 30 s ([`SendTimeout`], every path: nginx's `send_timeout`).
//! Either way a client cannot keep a request, its connection's slot and an
//! upstream connection by sending half a body, or by asking for an answer
//! and never reading it.
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long one side may wait on the client without progress.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A wait on the peer that expires `limit` after it began; progress ends it.
/// The timer is allocated at the first wait, and only time spent waiting
/// counts.
struct Stall {
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl Stall {
    fn new(limit: Duration) -> Stall {
        Stall {
            limit,
            deadline: None,
            waiting: false,
        }
    }

    fn progressed(&mut self) {
        self.waiting = false;
    }

    /// The peer made us wait: ready once it has for `limit` in a row.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let at = Instant::now() + self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if !self.waiting {
            deadline.as_mut().reset(at);
            self.waiting = true;
        }
        deadline.as_mut().poll(cx)
    }
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no part of its request body for {0:?}")]
pub struct Stalled(pub Duration);

/// The error a request body ends with when the client sent it wrong (bad
/// chunk framing, say) or cut it: the client's fault, answered 400, never
/// counted as the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0}")]
pub struct BadBody(#[source] BoxError);

type BoxError = Box<dyn StdError + Send + Sync>;

/// `inner`, failing with [`Stalled`] once it has made its reader wait `idle`
/// for the next frame. The wait counts only while the body is read, so an
/// upstream that reads slowly never times the client out.
pub struct IdleBody<B> {
    inner: B,
    stall: Stall,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, idle: Duration) -> IdleBody<B> {
        IdleBody {
            inner,
            stall: Stall::new(idle),
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.stall.progressed();
            return Poll::Ready(frame.map(|f| f.map_err(|e| BadBody(e.into()).into())));
        }
        match this.stall.poll_expired(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Stalled(this.stall.limit).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client connection whose writes fail with `TimedOut` once one has made
/// no progress for `limit`: a client that stops reading its answer (or a
/// tunnel's bytes) is let go instead of holding its slot and upstream.
pub struct SendTimeout<S> {
    inner: S,
    stall: Stall,
}

impl<S> SendTimeout<S> {
    pub fn new(inner: S, limit: Duration) -> SendTimeout<S> {
        SendTimeout {
            inner,
            stall: Stall::new(limit),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// `f` applied to the connection, the same timeout kept.
    pub fn try_map<T>(self, f: impl FnOnce(S) -> io::Result<T>) -> io::Result<SendTimeout<T>> {
        Ok(SendTimeout {
            inner: f(self.inner)?,
            stall: self.stall,
        })
    }

    fn wrote<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stall.progressed();
                Poll::Ready(r)
            }
            Poll::Pending => match self.stall.poll_expired(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {:?}", self.stall.limit),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.wrote(cx, r)
    }
}

/// Whether `e` (a client error, say) was caused by a stalled request body.
pub fn stalled(e: &(dyn StdError + 'static)) -> bool {
    caused_by::<Stalled>(e)
}

/// Whether `e` was caused by a request body the client sent wrong or cut.
pub fn bad_body(e: &(dyn StdError + 'static)) -> bool {
    caused_by::<BadBody>(e)
}

fn caused_by<T: StdError + 'static>(e: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<T>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body of the parts sent on a channel, ended when the sender goes.
    struct Parts(mpsc::Receiver<Bytes>);

    impl Body for Parts {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|part| part.map(|b| Ok(Frame::data(b))))
        }
    }

    fn body() -> (mpsc::Sender<Bytes>, IdleBody<Parts>) {
        let (tx, rx) = mpsc::channel(4);
        (tx, IdleBody::new(Parts(rx), Duration::from_secs(30)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_coming_passes_whole_and_a_stalled_one_ends_at_the_timeout() {
        let (tx, mut b) = body();
        let sender = tokio::spawn(async move {
            for _ in 0..3 {
                // Each part comes just inside the timeout.
                tokio::time::sleep(Duration::from_secs(29)).await;
                tx.send(Bytes::from_static(b"part")).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        let started = Instant::now();
        for _ in 0..3 {
            let frame = b.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"part"));
        }
        let err = b.frame().await.unwrap().unwrap_err();
        assert!(stalled(&*err), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(3 * 29 + 30));
        sender.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_slowly_is_kept_and_one_that_stops_is_let_go() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (client, server) = tokio::io::duplex(1024);
        let mut server = SendTimeout::new(server, Duration::from_secs(30));
        let (mut r, _w) = tokio::io::split(client);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            for _ in 0..3 {
                // Reads come just inside the timeout, then stop.
                tokio::time::sleep(Duration::from_secs(29)).await;
                r.read_exact(&mut buf).await.unwrap();
            }
            r
        });
        let started = Instant::now();
        let chunk = [7u8; 1024];
        let mut sent = 0;
        let err = loop {
            match server.write_all(&chunk).await {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(sent, 4, "the buffer's worth, then one more per read");
        assert_eq!(started.elapsed(), Duration::from_secs(3 * 29 + 30));
        drop(reader.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_reader_spends_elsewhere_does_not_count() {
        let (tx, mut b) = body();
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        assert!(b.frame().await.unwrap().is_ok());
        // The upstream took a minute before it read on: the client was not waiting.
        tokio::time::sleep(Duration::from_secs(60)).await;
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        assert!(b.frame().await.unwrap().is_ok());
        drop(tx);
        assert!(b.frame().await.is_none(), "the body ends as sent");
    }
}
