//! Reading a new HTTP/1 connection's first request head before hyper does, so
//! that a request held while its namespace wakes costs only the stream, the
//! bytes read so far and the wait, not a whole hyper connection (its 8 KiB
//! read and 8 KiB write buffers, its task and the boxed handler).
//!
//! The listener reads the head into a small buffer ([`read_head`]); the proxy
//! decides whether it must wait ([`super::Proxy::pre_hold`]); then the
//! connection goes to hyper through [`Rewind`], which first replays every byte
//! read so far. Anything this reader is unsure of (HTTP/2 prior knowledge, a
//! head it cannot parse, one over the size limit) goes to hyper unchanged, and
//! hyper answers it as before.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::server::MAX_HEAD_BYTES;
use super::stall::SendTimeout;

/// The first read's buffer; most request heads fit.
const FIRST_READ: usize = 1024;
/// As many header fields as hyper accepts by default.
const MAX_HEADERS: usize = 100;
/// What an HTTP/2 client by prior knowledge sends first (RFC 9113 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection are.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The buffer starts with a whole HTTP/1 request head ([`request`] reads it).
    Request,
    /// HTTP/2, or a head this reader leaves to hyper (invalid, too large, or
    /// the client closed half-way).
    Other,
}

/// Read until `buf` holds a whole first request head, or it is clear that it
/// is not one. `None`: the client closed (or failed) before sending anything.
/// The caller bounds it with the header read timeout.
pub async fn read_head<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>) -> Option<Head> {
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len().max(FIRST_READ));
        }
        match io.read_buf(buf).await {
            Ok(0) | Err(_) if buf.is_empty() => return None,
            Ok(0) | Err(_) => return Some(Head::Other),
            Ok(_) => {}
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] == H2_PREFACE[..n] {
            if n == H2_PREFACE.len() {
                return Some(Head::Other);
            }
            continue;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(buf) {
            Ok(httparse::Status::Complete(_)) => return Some(Head::Request),
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Some(Head::Other);
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Some(Head::Other),
        }
    }
}

/// Resolves when the client hangs up (or the connection fails) while its
/// first request waits. Bytes it sends meanwhile (a body, pipelined requests)
/// are kept in `buf` for hyper, up to `cap` bytes in all; beyond that this
/// stops reading: the rest waits unread (in the kernel's socket buffer, and
/// then in the client), and a hang-up is seen only when the wait ends.
pub async fn hung_up<S: AsyncRead + Unpin>(io: &mut S, buf: &mut Vec<u8>, cap: usize) {
    let mut chunk = [0u8; 64];
    while buf.len() < cap {
        let want = chunk.len().min(cap - buf.len());
        match io.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    std::future::pending::<()>().await
}

/// How a held connection sees its client hang up.
pub trait HangUp: AsyncRead + Unpin + Send + Sized {
    /// Resolves when the client hangs up (or the connection fails) while its
    /// first request waits. Whatever it sends meanwhile stays for hyper:
    /// unread in the socket, or read into `buf`, up to `cap` bytes in all.
    fn hung_up<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
        cap: usize,
    ) -> impl Future<Output = ()> + Send + 'a;

    /// The connection, ready to be read on once the wait has ended otherwise.
    fn rearm(self) -> io::Result<Self>;
}

/// A plain TCP connection is watched, not read: its hang-up is the socket's
/// read side closing (`EPOLLRDHUP`), seen however many body bytes wait unread
/// in front of it, and those bytes cost the proxy nothing while it waits.
impl HangUp for TcpStream {
    fn hung_up<'a>(
        &'a mut self,
        _buf: &'a mut Vec<u8>,
        _cap: usize,
    ) -> impl Future<Output = ()> + Send + 'a {
        read_closed(self)
    }

    fn rearm(self) -> io::Result<TcpStream> {
        rearm(self)
    }
}

/// The listener's connections: watched as above, under their send timeout.
impl HangUp for SendTimeout<TcpStream> {
    fn hung_up<'a>(
        &'a mut self,
        _buf: &'a mut Vec<u8>,
        _cap: usize,
    ) -> impl Future<Output = ()> + Send + 'a {
        read_closed(self.get_ref())
    }

    fn rearm(self) -> io::Result<Self> {
        self.try_map(rearm)
    }
}

/// A TLS connection's bytes must be decrypted to see a close: read, up to `cap`.
impl HangUp for tokio_rustls::server::TlsStream<SendTimeout<TcpStream>> {
    fn hung_up<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
        cap: usize,
    ) -> impl Future<Output = ()> + Send + 'a {
        hung_up(self, buf, cap)
    }

    fn rearm(self) -> io::Result<Self> {
        Ok(self)
    }
}

/// Resolves once the peer has closed its side of `s` (or `s` failed),
/// without reading from it. It forgets that `s` was readable, so whoever
/// reads `s` next must [`rearm`] it first.
pub async fn read_closed(s: &TcpStream) {
    loop {
        match s.ready(Interest::READABLE).await {
            Ok(r) if !r.is_read_closed() && !r.is_error() => {
                // Bytes wait unread. Forget this readiness, so that the next
                // wake is new: more bytes, or the close behind them.
                let _ = s.try_io(Interest::READABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
            }
            _ => return,
        }
    }
}

/// `s` registered anew, so that bytes [`read_closed`] left unread wake its
/// next reader: a new registration reports what the socket has at once.
pub fn rearm(s: TcpStream) -> io::Result<TcpStream> {
    TcpStream::from_std(s.into_std()?)
}

/// Whether a request head announces a body (a length above 0, or chunks).
pub fn has_body(head: &Request<()>) -> bool {
    head.headers().contains_key(http::header::TRANSFER_ENCODING)
        || head
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// The whole request head at the start of `buf`, as an `http::Request`;
/// `None` when it is not one `http` accepts.
pub fn request(buf: &[u8]) -> Option<Box<Request<()>>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => build(&req),
        _ => None,
    }
}

fn build(req: &httparse::Request<'_, '_>) -> Option<Box<Request<()>>> {
    let mut out = Request::new(());
    *out.method_mut() = Method::from_bytes(req.method?.as_bytes()).ok()?;
    *out.uri_mut() = Uri::try_from(req.path?).ok()?;
    *out.version_mut() = match req.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let headers = out.headers_mut();
    for h in req.headers.iter() {
        headers.append(
            HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(h.value).ok()?,
        );
    }
    Some(Box::new(out))
}

/// An IO that replays bytes already read from `inner` before reading more.
pub struct Rewind<S> {
    pre: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(pre: Vec<u8>, inner: S) -> Rewind<S> {
        Rewind {
            pre: Bytes::from(pre),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pre.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.pre.len().min(buf.remaining());
        buf.put_slice(&self.pre[..n]);
        self.pre.advance(n);
        if self.pre.is_empty() {
            // Free the replayed bytes now, not with the connection.
            self.pre = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn head_of(chunks: &[&[u8]]) -> (Option<Head>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        for c in chunks {
            client.write_all(c).await.unwrap();
        }
        drop(client);
        let mut buf = Vec::with_capacity(FIRST_READ);
        let head = read_head(&mut server, &mut buf).await;
        (head, buf)
    }

    #[tokio::test]
    async fn a_whole_head_is_parsed_and_every_byte_kept() {
        let bytes =
            b"GET /a?b=1 HTTP/1.1\r\nHost: app.example.test\r\nAccept: */*\r\n\r\nGET /next";
        let (head, buf) = head_of(&[bytes]).await;
        assert_eq!(head, Some(Head::Request));
        let req = request(&buf).unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers()["host"], "app.example.test");
        assert_eq!(buf, bytes, "pipelined bytes are kept for hyper");
    }

    #[tokio::test]
    async fn http2_invalid_oversized_and_cut_heads_go_to_hyper() {
        assert!(matches!(head_of(&[H2_PREFACE]).await.0, Some(Head::Other)));
        assert!(matches!(
            head_of(&[b"G(T / HTTP/1.1\r\n\r\n"]).await.0,
            Some(Head::Other)
        ));
        assert!(matches!(
            head_of(&[b"GET / HTTP/1.1\r\nHost: a\r\n"]).await.0,
            Some(Head::Other)
        ));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(40 * 1024));
        let (head, buf) = head_of(&[big.as_bytes()]).await;
        assert!(matches!(head, Some(Head::Other)));
        assert!(buf.len() <= 2 * MAX_HEAD_BYTES + FIRST_READ);
        assert!(head_of(&[]).await.0.is_none());
    }

    #[tokio::test]
    async fn a_hang_up_is_seen_and_bytes_sent_while_waiting_are_kept() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GET /next HTTP/1.1\r\n").await.unwrap();
        drop(client);
        let mut buf = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            hung_up(&mut server, &mut buf, usize::MAX),
        )
        .await
        .unwrap();
        assert!(buf.ends_with(b"GET /next HTTP/1.1\r\n"));
    }

    /// A client and the server's end of a loopback connection.
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (client, listener.accept().await.unwrap().0)
    }

    #[tokio::test]
    async fn a_plain_connection_is_seen_closed_behind_bytes_it_left_unread() {
        let (mut client, mut server) = tcp_pair().await;
        let body = vec![b'x'; 64 * 1024];
        client.write_all(&body).await.unwrap();
        let (mut buf, watch) = (Vec::new(), std::time::Duration::from_millis(200));
        let waiting = tokio::time::timeout(watch, server.hung_up(&mut buf, 0)).await;
        assert!(waiting.is_err(), "bytes alone are no hang-up");
        drop(client);
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            server.hung_up(&mut buf, 0),
        )
        .await
        .expect("the close is seen behind 64 KiB left unread");
        assert!(buf.is_empty(), "nothing was read");
        let mut server = server.rearm().unwrap();
        let mut left = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            server.read_to_end(&mut left),
        )
        .await
        .expect("rearmed, the unread bytes can be read")
        .unwrap();
        assert_eq!(left, body, "every byte is still there for hyper");
    }

    #[tokio::test]
    async fn bytes_left_unread_by_a_watch_that_ended_otherwise_are_read_after_rearm() {
        let (mut client, mut server) = tcp_pair().await;
        client.write_all(b"body").await.unwrap();
        let watch = std::time::Duration::from_millis(200);
        let waited = tokio::time::timeout(watch, server.hung_up(&mut Vec::new(), 0)).await;
        assert!(waited.is_err(), "still open");
        let mut server = server.rearm().unwrap();
        let mut got = [0u8; 4];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            server.read_exact(&mut got),
        )
        .await
        .expect("the bytes sent during the watch wake the reader")
        .unwrap();
        assert_eq!(&got, b"body");
    }

    #[tokio::test]
    async fn rewind_replays_then_reads_on() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut io = Rewind::new(b"hello".to_vec(), server);
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
