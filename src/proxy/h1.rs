//! The HTTP/1.1 fast path. Most traffic is plain HTTP/1.1: a request head, a
//! body of known length or none, and an answer with a length, chunks, or up
//! to the close. Such requests are forwarded here without hyper. The decision
//! is [`Proxy::admit`]'s, as on every path; this module only encodes it: the
//! request head is written with the normalised target and the header rules
//! of [`super::headers`] (raw encoder), the answer's head likewise, and the
//! bodies are copied through as they come, chunked bodies unchanged
//! ([`super::chunked`] only follows them to find their end). Upstream
//! connections are kept alive in a [`Pool`].
//!
//! Everything else goes to hyper's path with the bytes read so far
//! ([`Handoff::Hyper`]), with the admission when one was made: a framing
//! this path does not serve (an upgrade, `Expect`, a chunked request body,
//! conflicting lengths, HTTP/1.0, an absolute target), an admission other
//! than a plain forward (a refusal, a wake page, a hold), an h2c upstream,
//! and any request head that does not parse. hyper then answers it.
use std::io;
use std::sync::Arc;

use http::uri::Authority;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::metrics::{ErrorKind, Metrics};
use crate::slots::Slot;

use super::admission::{Admission, RequestView};
use super::chunked::ChunkedEnd;
use super::drain::Drain;
use super::headers::{has_token, put_kept, put_request_headers, tokens};
use super::pool::Pool;
use super::routes::Route;
use super::server::{HEADER_READ_TIMEOUT, MAX_HEAD_BYTES};
use super::{Downstream, Proxy};

/// As many header fields as hyper accepts by default.
const MAX_HEADERS: usize = 100;
/// The largest upstream answer head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The read buffer for answers and bodies.
const CHUNK: usize = 16 * 1024;

/// How the fast path left a connection.
#[derive(Debug)]
pub enum Handoff {
    /// Closed, or the client went away.
    Done,
    /// The buffer starts with a whole request head the fast path does not
    /// serve: hyper's path takes the connection from there, with the
    /// admission of that request when the fast path made it.
    Hyper(Option<Admission>),
}

/// A request the fast path forwards, all decided from its head.
struct Plan {
    route: Arc<Route>,
    upstream: Authority,
    /// The request head's length in the client's buffer.
    head_len: usize,
    body_len: u64,
    /// The client asked to close after this answer.
    close: bool,
    /// A HEAD request: the answer has no body whatever its headers say.
    head_method: bool,
    /// Safe to send again on a new connection if a reused one fails.
    idempotent: bool,
    /// The head to send upstream.
    out: Vec<u8>,
}

enum Planned {
    Go(Plan),
    /// The head is not complete yet.
    Partial,
    /// For hyper's path, with the admission if one was made.
    NotMine(Option<Admission>),
}

/// What a request head says, for the checks of the fast path.
#[derive(Default)]
struct Facts<'b> {
    host: Option<&'b str>,
    hosts: usize,
    content_length: Option<u64>,
    /// A framing only hyper's path serves (see the module doc).
    not_mine: bool,
    close: bool,
    user_agent: &'b str,
    accept: Option<&'b str>,
}

/// A header value as text; one that is not UTF-8 reads as NUL, which no
/// host and no rule matches.
fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).unwrap_or("\u{0}")
}

fn facts<'b>(headers: &[httparse::Header<'b>]) -> Facts<'b> {
    let mut f = Facts::default();
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            f.host.get_or_insert(text(h.value));
            f.hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            match (f.content_length, parse_length(h.value)) {
                (None, Some(n)) => f.content_length = Some(n),
                _ => f.not_mine = true,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            f.not_mine = true;
        } else if name.eq_ignore_ascii_case("connection") {
            f.close |= has_token(h.value, "close");
            f.not_mine |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("user-agent") {
            f.user_agent = text(h.value);
        } else if name.eq_ignore_ascii_case("accept") {
            f.accept.get_or_insert(text(h.value));
        }
    }
    f
}

/// A `Content-Length` value: digits only, as RFC 9110 8.6 has it.
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The request head sent upstream: the request line with the target to
/// send, as HTTP/1.1, then the headers by the rules of [`super::headers`].
fn upstream_head(
    method: &str,
    target: &str,
    headers: &[httparse::Header<'_>],
    conn: &Downstream,
    host: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    put_request_headers(out, headers, conn.client_ip.as_bytes(), conn.https, host);
    out.extend_from_slice(b"\r\n");
}

impl Proxy {
    /// Admit the request head at the start of `buf` and plan its forwarding
    /// when the fast path can serve it.
    fn plan(&self, buf: &[u8], conn: &Downstream) -> Planned {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(buf) {
            // Over the limit, even if it came whole: hyper answers 431.
            Ok(httparse::Status::Complete(n)) if n > MAX_HEAD_BYTES => {
                return Planned::NotMine(None);
            }
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Planned::Partial,
            Err(_) => return Planned::NotMine(None),
        };
        let (Some(method), Some(path)) = (req.method, req.path) else {
            return Planned::NotMine(None);
        };
        let f = facts(req.headers);
        if req.version != Some(1) || f.not_mine || !path.starts_with('/') {
            return Planned::NotMine(None);
        }
        let view = RequestView {
            method,
            authority: None,
            host: f.host,
            hosts: f.hosts,
            target: path,
            user_agent: f.user_agent,
            accept: f.accept,
            has_body: f.content_length.is_some_and(|n| n > 0),
        };
        let forward = match self.admit(&view) {
            Admission::Forward(fwd) if !fwd.upstream.h2c => fwd,
            other => return Planned::NotMine(Some(other)),
        };
        let mut out = Vec::with_capacity(head_len + 128);
        let target = forward.target.as_deref().unwrap_or(path);
        let host = f.host.unwrap_or_default().as_bytes();
        upstream_head(method, target, req.headers, conn, host, &mut out);
        Planned::Go(Plan {
            route: forward.route,
            upstream: forward.upstream.authority,
            head_len,
            body_len: f.content_length.unwrap_or(0),
            close: f.close,
            head_method: method == "HEAD",
            idempotent: matches!(
                method,
                "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
            ),
            out,
        })
    }
}

/// How the end of an answer's body is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes.
    Close,
}

/// An upstream answer head, rewritten for the client.
#[derive(Debug)]
struct Answer {
    status: u16,
    head_len: usize,
    framing: Framing,
    /// The upstream connection can carry another request afterwards.
    reusable: bool,
    /// The head for the client.
    out: Vec<u8>,
}

#[derive(Debug)]
enum Parsed {
    Answer(Answer),
    Partial,
    Invalid,
}

/// Parse the answer head at the start of `buf` and write the client's: the
/// status line as HTTP/1.1, the headers without hop-by-hop ones (a chunked
/// `Transfer-Encoding` stays: the body passes through as it is), and
/// `Connection: close` when this is the connection's last answer.
fn answer_head(buf: &[u8], head_method: bool, client_close: bool) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > MAX_RESPONSE_HEAD => return Parsed::Invalid,
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Invalid,
    };
    let Some(status) = resp.code else {
        return Parsed::Invalid;
    };
    let mut length = None;
    let mut bad_length = false;
    let mut chunked = None;
    let mut keep_alive = resp.version == Some(1);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match (length, parse_length(h.value)) {
                (None, Some(n)) => length = Some(n),
                (Some(a), Some(b)) if a == b => {}
                _ => bad_length = true,
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only counts as the last coding (RFC 9112 6.3).
            chunked = Some(
                tokens(h.value)
                    .last()
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")),
            );
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep_alive &= !has_token(h.value, "close");
        }
    }
    let framing = if head_method || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else {
        // A length that frames nothing is ignored, as hyper's path does; one
        // that would frame the body must be one and valid.
        if bad_length && chunked.is_none() {
            return Parsed::Invalid;
        }
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, None) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    let close = client_close || framing == Framing::Close;
    let mut out = Vec::with_capacity(head_len + 32);
    out.extend_from_slice(b"HTTP/1.1 ");
    // httparse only accepts three-digit codes.
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // With chunks, the length is dropped: the chunks frame the body. With a
    // coding other than chunked last, the body runs to the close, and the
    // client is not told of codings it would try to read as chunks.
    put_kept(&mut out, resp.headers, |name| {
        (chunked.is_some() && name.eq_ignore_ascii_case("content-length"))
            || (chunked == Some(false) && name.eq_ignore_ascii_case("transfer-encoding"))
    });
    if close && status >= 200 {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Parsed::Answer(Answer {
        status,
        head_len,
        framing,
        reusable: keep_alive && framing != Framing::Close,
        out,
    })
}

/// Why an exchange with the upstream failed.
enum Failure {
    /// Nothing came back on a reused connection: sending again is safe when
    /// the request is idempotent and its body was not streamed.
    Stale(io::Error),
    /// The upstream failed or answered something unusable; the client gets 502
    /// if nothing was written to it yet.
    Upstream(io::Error),
    /// The client went away or failed; close.
    Client,
}

/// Serve the connection's requests while the fast path can; `buf` starts with
/// a whole request head. Between requests, until the next head is in, the
/// connection's `slot` is evictable: a new connection may take its place.
pub async fn serve<S>(
    io: &mut S,
    buf: &mut Vec<u8>,
    proxy: &Proxy,
    conn: Downstream,
    pool: &Pool,
    drain: &mut Drain,
    slot: &Slot,
) -> Handoff
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let deadline = Instant::now() + HEADER_READ_TIMEOUT;
        let plan = loop {
            match proxy.plan(buf, &conn) {
                Planned::Go(plan) => {
                    slot.keep();
                    break plan;
                }
                Planned::NotMine(admission) => {
                    slot.keep();
                    return Handoff::Hyper(admission);
                }
                // hyper answers 431.
                Planned::Partial if buf.len() > MAX_HEAD_BYTES => return Handoff::Hyper(None),
                Planned::Partial => {
                    if !read_more(io, buf, drain, deadline).await {
                        return Handoff::Done;
                    }
                }
            }
        };
        let close = plan.close;
        match forward(io, buf, plan, pool, &proxy.metrics).await {
            Ok(true) if !close && !drain.draining() => slot.evictable(),
            _ => {
                let _ = io.shutdown().await;
                return Handoff::Done;
            }
        }
    }
}

/// Read more of a request head by `deadline`. False: the client closed, the
/// deadline passed, or the drain began before a new request started.
async fn read_more<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
    drain: &mut Drain,
    deadline: Instant,
) -> bool {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(4096);
    }
    let idle = buf.is_empty();
    tokio::select! {
        biased;
        read = io.read_buf(buf) => matches!(read, Ok(n) if n > 0),
        () = drain.begun(), if idle => false,
        () = tokio::time::sleep_until(deadline) => false,
    }
}

/// Forward one request and its answer. `Ok(true)`: the connection can serve
/// another request.
async fn forward<S>(
    io: &mut S,
    buf: &mut Vec<u8>,
    plan: Plan,
    pool: &Pool,
    metrics: &Metrics,
) -> io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Plan {
        route,
        upstream,
        head_len,
        body_len,
        close,
        head_method,
        idempotent,
        mut out,
    } = plan;
    // The head and the part of the body already read go in one write.
    let in_buf = (buf.len() - head_len).min(usize::try_from(body_len).unwrap_or(usize::MAX));
    out.extend_from_slice(&buf[head_len..head_len + in_buf]);
    buf.drain(..head_len + in_buf);
    let to_stream = body_len - in_buf as u64;

    let mut resp = Vec::with_capacity(CHUNK);
    let mut retried = false;
    let result = loop {
        // A retry gets a new connection: the pooled ones may all be stale.
        let checkout = match pool.checkout(&upstream, retried).await {
            Ok(c) => c,
            Err(e) => break Err(Failure::Upstream(e)),
        };
        let mut up = checkout.stream;
        let reused = checkout.reused;
        match exchange(
            io,
            &mut up,
            &out,
            to_stream,
            &mut resp,
            reused,
            head_method,
            close,
        )
        .await
        {
            Ok(first) => break Ok((up, first)),
            Err(Failure::Stale(_)) if !retried && idempotent && to_stream == 0 => {
                retried = true;
                resp.clear();
            }
            Err(Failure::Stale(e)) => break Err(Failure::Upstream(e)),
            Err(f) => break Err(f),
        }
    };
    let (up, first) = match result {
        Ok(done) => done,
        Err(Failure::Client) => return Ok(false),
        Err(Failure::Stale(e) | Failure::Upstream(e)) => {
            tracing::debug!(error = %e, upstream = %upstream, "upstream");
            metrics.error(ErrorKind::ProxyUpstream);
            route.requests(metrics, 4).inc();
            io.write_all(BAD_GATEWAY).await?;
            return Ok(false);
        }
    };
    answer(
        io,
        up,
        resp,
        first,
        &upstream,
        &route,
        head_method,
        close,
        pool,
        metrics,
    )
    .await
}

const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain; charset=utf-8\r\n\
content-length: 21\r\nconnection: close\r\n\r\nupstream unavailable\n";

/// Send the request (head, then the rest of its body from the client) and
/// read the first answer head, interim (1xx) or final; `None`: one that does
/// not parse.
#[allow(clippy::too_many_arguments)]
async fn exchange<S>(
    io: &mut S,
    up: &mut TcpStream,
    out: &[u8],
    to_stream: u64,
    resp: &mut Vec<u8>,
    reused: bool,
    head_method: bool,
    client_close: bool,
) -> Result<Option<Answer>, Failure>
where
    S: AsyncRead + Unpin,
{
    let stale = |e: io::Error| {
        if reused {
            Failure::Stale(e)
        } else {
            Failure::Upstream(e)
        }
    };
    up.write_all(out).await.map_err(stale)?;
    if to_stream > 0 {
        copy_exact(io, up, to_stream).await?;
    }
    read_answer(up, resp, head_method, client_close)
        .await
        .map_err(|e| {
            if resp.is_empty() {
                stale(e)
            } else {
                Failure::Upstream(e)
            }
        })
}

/// Read from the upstream until `resp` starts with a whole answer head;
/// `None`: one that does not parse, or is too large.
async fn read_answer(
    up: &mut TcpStream,
    resp: &mut Vec<u8>,
    head_method: bool,
    client_close: bool,
) -> io::Result<Option<Answer>> {
    loop {
        match answer_head(resp, head_method, client_close) {
            Parsed::Answer(a) => return Ok(Some(a)),
            Parsed::Invalid => return Ok(None),
            Parsed::Partial if resp.len() > MAX_RESPONSE_HEAD => return Ok(None),
            Parsed::Partial => {}
        }
        if resp.len() == resp.capacity() {
            resp.reserve(CHUNK);
        }
        if up.read_buf(resp).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Copy exactly `n` request body bytes from the client to the upstream; 30 s
/// without a byte from the client ends the connection.
async fn copy_exact<S: AsyncRead + Unpin>(
    io: &mut S,
    up: &mut TcpStream,
    mut n: u64,
) -> Result<(), Failure> {
    let mut chunk = vec![0u8; CHUNK];
    while n > 0 {
        let want = chunk.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        // A client that stops sending its body is cut off, as a slow head is.
        let read = tokio::time::timeout(HEADER_READ_TIMEOUT, io.read(&mut chunk[..want])).await;
        let got = match read {
            Ok(Ok(got)) if got > 0 => got,
            _ => return Err(Failure::Client),
        };
        up.write_all(&chunk[..got])
            .await
            .map_err(Failure::Upstream)?;
        n -= got as u64;
    }
    Ok(())
}

/// Pass the answer to the client: interim answers, then the final head and
/// its body. The upstream connection goes back to the pool if it can carry
/// another request. `Ok(true)`: the client connection can too.
#[allow(clippy::too_many_arguments)]
async fn answer<S>(
    io: &mut S,
    mut up: TcpStream,
    mut resp: Vec<u8>,
    first: Option<Answer>,
    upstream: &Authority,
    route: &Route,
    head_method: bool,
    client_close: bool,
    pool: &Pool,
    metrics: &Metrics,
) -> io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut next = first;
    let answer = loop {
        let Some(answer) = next else {
            metrics.error(ErrorKind::ProxyUpstream);
            route.requests(metrics, 4).inc();
            io.write_all(BAD_GATEWAY).await?;
            return Ok(false);
        };
        if answer.status == 101 {
            // Never asked for: this path forwards no upgrade.
            io.write_all(BAD_GATEWAY).await?;
            return Ok(false);
        }
        if answer.status >= 200 {
            break answer;
        }
        // An interim answer (100, 103): pass it on, then read the next head.
        io.write_all(&answer.out).await?;
        resp.drain(..answer.head_len);
        next = read_answer(&mut up, &mut resp, head_method, client_close).await?;
    };
    let Answer {
        status,
        head_len,
        framing,
        mut reusable,
        out: mut head,
    } = answer;
    let body = &resp[head_len..];
    let mut chunks = ChunkedEnd::new();
    // How much of the body is in `resp` already, and what is left to read.
    let (now, mut left) = match framing {
        Framing::Empty => (0, Some(0)),
        Framing::Length(n) => {
            let now = body.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            (now, Some(n - now as u64))
        }
        Framing::Chunked => match chunks.feed(body) {
            Ok(Some(end)) => (end, Some(0)),
            Ok(None) => (body.len(), None),
            Err(_) => {
                metrics.error(ErrorKind::ProxyUpstream);
                io.write_all(BAD_GATEWAY).await?;
                return Ok(false);
            }
        },
        Framing::Close => (body.len(), None),
    };
    route
        .requests(
            metrics,
            super::status_class(
                http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY),
            ),
        )
        .inc();
    reusable &= now == body.len();
    head.extend_from_slice(&body[..now]);
    io.write_all(&head).await?;
    drop(head);
    // The rest of the body, as it comes.
    while left != Some(0) {
        resp.clear();
        let want = left.map_or(CHUNK, |l| {
            usize::try_from(l).unwrap_or(usize::MAX).min(CHUNK)
        });
        resp.reserve(want);
        let got = up.read_buf(&mut resp).await?;
        if got == 0 {
            if framing == Framing::Close {
                break;
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let send = match framing {
            Framing::Length(_) => {
                let send = got.min(usize::try_from(left.unwrap_or(0)).unwrap_or(usize::MAX));
                left = left.map(|l| l - send as u64);
                send
            }
            Framing::Chunked => match chunks.feed(&resp) {
                Ok(Some(end)) => {
                    left = Some(0);
                    end
                }
                Ok(None) => got,
                Err(_) => return Err(io::Error::other("malformed chunked body")),
            },
            _ => got,
        };
        reusable &= send == got;
        io.write_all(&resp[..send]).await?;
    }
    if reusable {
        pool.checkin(upstream, up);
    }
    Ok(framing != Framing::Close)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(raw: &str, ip: &str, https: bool) -> String {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw.as_bytes()).unwrap();
        let f = facts(req.headers);
        let conn = Downstream::new(
            format!("{ip}:1")
                .parse()
                .unwrap_or_else(|_| format!("[{ip}]:1").parse().unwrap()),
            https,
        );
        let mut out = Vec::new();
        let host = f.host.unwrap_or_default().as_bytes();
        upstream_head(
            req.method.unwrap(),
            req.path.unwrap(),
            req.headers,
            &conn,
            host,
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_upstream_head_drops_hop_by_hop_headers_and_adds_forwarded_ones() {
        let head = rewrite(
            "GET /a?b HTTP/1.1\r\nHost: App.Test\r\nConnection: keep-alive, X-Secret\r\n\
             Keep-Alive: timeout=5\r\nX-Secret: 1\r\nProxy-Authorization: Basic x\r\n\
             TE: trailers, deflate\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: gopher\r\n\
             Accept: */*\r\n\r\n",
            "127.0.0.9",
            true,
        );
        assert_eq!(
            head,
            "GET /a?b HTTP/1.1\r\nHost: App.Test\r\nAccept: */*\r\nte: trailers\r\n\
             x-forwarded-for: 10.0.0.1, 127.0.0.9\r\nx-forwarded-proto: https\r\n\
             x-forwarded-host: App.Test\r\n\r\n"
        );
        let head = rewrite(
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\n",
            "::1",
            false,
        );
        assert_eq!(
            head,
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\nx-forwarded-for: ::1\r\n\
             x-forwarded-proto: http\r\nx-forwarded-host: a\r\n\r\n"
        );
    }

    #[test]
    fn requests_the_fast_path_leaves_to_hyper() {
        let not_mine = |raw: &str| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            req.parse(raw.as_bytes()).unwrap();
            facts(req.headers).not_mine
        };
        assert!(not_mine(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(not_mine(
            "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        ));
        assert!(not_mine("POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"));
        assert!(not_mine(
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
        ));
        assert!(not_mine("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"));
        assert!(!not_mine(
            "POST / HTTP/1.1\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
        ));
    }

    #[test]
    fn oversized_heads_and_unknown_hosts_are_left_to_hyper() {
        let table = super::super::routes::parse_routes(
            "routes:\n  - {host: app.test, upstream: 'http://127.0.0.1:1'}\n",
        )
        .unwrap();
        let p = super::super::tests::proxy_over(table);
        let conn = Downstream::new("127.0.0.1:2".parse().unwrap(), false);
        let plan = |head: String| p.plan(head.as_bytes(), &conn);
        let ok = "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n".to_string();
        assert!(matches!(plan(ok), Planned::Go(_)));
        // Whole, but over the 32 KiB limit: hyper answers 431.
        let big = format!(
            "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
            "b".repeat(40 * 1024)
        );
        assert!(matches!(plan(big), Planned::NotMine(None)));
        let unknown = "GET / HTTP/1.1\r\nHost: other.test\r\n\r\n".to_string();
        assert!(matches!(
            plan(unknown),
            Planned::NotMine(Some(Admission::Refuse(_)))
        ));
        let partial = "GET / HTTP/1.1\r\nHost: app.test\r\n".to_string();
        assert!(matches!(plan(partial), Planned::Partial));
    }

    fn head(raw: &str, head_method: bool, client_close: bool) -> Answer {
        match answer_head(raw.as_bytes(), head_method, client_close) {
            Parsed::Answer(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answer_framing_follows_rfc_9112() {
        let a = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n",
            false,
            false,
        );
        assert_eq!((a.framing, a.reusable), (Framing::Length(3), true));
        assert_eq!(
            String::from_utf8(a.out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
        );
        let a = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
            false,
        );
        assert_eq!(a.framing, Framing::Chunked);
        assert_eq!(
            String::from_utf8(a.out).unwrap(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "chunked wins over a length, which is dropped"
        );
        let a = head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true, false);
        assert_eq!(a.framing, Framing::Empty, "an answer to HEAD has no body");
        for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
            let a = head(
                &format!("HTTP/1.1 {status}\r\nContent-Length: 3\r\n\r\n"),
                false,
                false,
            );
            assert_eq!(a.framing, Framing::Empty, "{status}");
        }
        let a = head("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", false, false);
        assert_eq!((a.framing, a.reusable), (Framing::Close, false));
        assert!(
            String::from_utf8(a.out)
                .unwrap()
                .ends_with("connection: close\r\n\r\n")
        );
        let a = head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, false);
        assert!(!a.reusable, "HTTP/1.0 closes by default");
        let a = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close, x-a\r\nX-A: 1\r\nKeep-Alive: 5\r\n\r\n",
            false,
            true,
        );
        assert!(!a.reusable);
        assert_eq!(
            String::from_utf8(a.out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nconnection: close\r\n\r\n"
        );
        assert!(matches!(
            answer_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false,
                false
            ),
            Parsed::Invalid
        ));
        assert!(matches!(
            answer_head(b"HTTP/1.1 200 OK\r\n", false, false),
            Parsed::Partial
        ));
    }
}
