//! A request body that gives up when its client stops sending: hyper's path
//! times out a stalled body as the HTTP/1.1 fast path does (30 s without a
//! byte), so a client cannot keep a request, its connection's slot and an
//! upstream connection open by sending half a body and then nothing.
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the client sent no part of its request body for {0:?}")]
pub struct Stalled(pub Duration);

type BoxError = Box<dyn StdError + Send + Sync>;

/// `inner`, failing with [`Stalled`] once it has made its reader wait `idle`
/// for the next frame. The wait counts only while the body is read, so an
/// upstream that reads slowly never times the client out.
pub struct IdleBody<B> {
    inner: B,
    idle: Duration,
    /// Armed when a read finds nothing, allocated at the first such read.
    deadline: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, idle: Duration) -> IdleBody<B> {
        IdleBody {
            inner,
            idle,
            deadline: None,
            waiting: false,
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
            this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let at = Instant::now() + this.idle;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if !this.waiting {
            deadline.as_mut().reset(at);
            this.waiting = true;
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Stalled(this.idle).into()))),
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

/// Whether `e` (a client error, say) was caused by a stalled request body.
pub fn stalled(e: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<Stalled>() {
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
