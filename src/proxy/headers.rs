//! The one header-rewrite rule set of the proxy, with two encoders: one over
//! a `HeaderMap` (hyper's path) and one over raw header lines (the HTTP/1.1
//! fast path). Both apply the same rules to requests and answers:
//!
//! 1. hop-by-hop headers ([`HOP_BY_HOP`]) are dropped;
//! 2. so is any header a `Connection` header of the same message names,
//!    except the [`PROTECTED`] ones: a message's framing (`Content-Length`,
//!    `Transfer-Encoding`), its `Host`, and the `X-Forwarded-*` headers the
//!    proxy writes itself. Without that exception `Connection: content-length`
//!    would strip the length of a body that is still forwarded, and the
//!    upstream would read the body as a second request (request smuggling);
//! 3. `TE: trailers` survives (gRPC needs it), and a message framed by
//!    `Transfer-Encoding` loses its `Content-Length`, which does not describe
//!    the body (RFC 9112 6.3: an intermediary removes it before forwarding);
//! 4. requests get `X-Forwarded-For` (the client appended to the first value
//!    the client sent), `X-Forwarded-Proto` and `X-Forwarded-Host` (replaced).
//!
//! The raw encoder keeps `Transfer-Encoding`: the fast path passes chunked
//! answers through as they are (and never forwards a request that has one);
//! hyper's path frames every message itself, so its encoder drops it.
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
/// `Trailer` is not one: it tells the client which trailer fields follow, and
/// hyper sends only the trailers it names.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// Never dropped because a `Connection` header names them.
pub const PROTECTED: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// The `X-Forwarded-*` names, which the proxy writes itself.
pub const FORWARDED: [&str; 3] = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| eq(name, h))
}

fn is_protected(name: &[u8]) -> bool {
    PROTECTED.iter().any(|p| eq(name, p))
}

/// Rules 1 and 2 for one header name, given the tokens of the message's
/// `Connection` headers. `framing_kept`: the encoder passes
/// `Transfer-Encoding` through (the raw encoder), so it is not dropped.
pub fn dropped(name: &[u8], connection: &[&[u8]], framing_kept: bool) -> bool {
    if framing_kept && eq(name, "transfer-encoding") {
        return false;
    }
    if is_hop_by_hop(name) {
        return true;
    }
    // Most messages name nothing: the protected list is looked at only then.
    connection.iter().any(|c| c.eq_ignore_ascii_case(name)) && !is_protected(name)
}

/// The comma-separated tokens of a header value, trimmed, without empty ones.
pub fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether a header value lists `token`.
pub fn has_token(v: &[u8], token: &str) -> bool {
    tokens(v).any(|t| eq(t, token))
}

// ---------- the HeaderMap encoder ----------

/// Rules 1 to 3 on a `HeaderMap`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over the names, no hashing.
    if !headers.keys().any(|k| is_hop_by_hop(k.as_str().as_bytes())) {
        return;
    }
    let gone: Vec<HeaderName> = {
        let connection: Vec<&[u8]> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| tokens(v.as_bytes()))
            .collect();
        headers
            .keys()
            .filter(|k| dropped(k.as_str().as_bytes(), &connection, false))
            .cloned()
            .collect()
    };
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| has_token(v.as_bytes(), "trailers"));
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    for name in &gone {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Where the request came from, for `X-Forwarded-*`.
pub struct Origin {
    /// The client's IP address, as a header value.
    pub client: HeaderValue,
    pub https: bool,
    /// The request's host as the client sent it.
    pub host: HeaderValue,
}

/// Rule 4 on a `HeaderMap`.
pub fn set_forwarded(headers: &mut HeaderMap, origin: &Origin) {
    let prior = headers
        .get(&X_FORWARDED_FOR)
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|p| !p.is_empty());
    let xff = match prior {
        Some(prior) => {
            let mut v = Vec::with_capacity(prior.len() + 2 + origin.client.len());
            v.extend_from_slice(prior);
            v.extend_from_slice(b", ");
            v.extend_from_slice(origin.client.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
        None => Some(origin.client.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if origin.https { "https" } else { "http" }),
    );
    headers.insert(X_FORWARDED_HOST.clone(), origin.host.clone());
}

// ---------- the raw encoder ----------

/// The tokens of a message's `Connection` headers (usually none or one).
pub fn connection_tokens<'b>(headers: &[httparse::Header<'b>]) -> Vec<&'b [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(h.value))
        .collect()
}

pub fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Rules 1 to 3 on raw header lines: the headers kept, written to `out`.
/// `skip` drops more (the request's `X-Forwarded-*`, an answer's length).
pub fn put_kept(out: &mut Vec<u8>, headers: &[httparse::Header<'_>], skip: impl Fn(&str) -> bool) {
    let connection = connection_tokens(headers);
    let mut te_trailers = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("te") {
            te_trailers |= has_token(h.value, "trailers");
        }
        if dropped(h.name.as_bytes(), &connection, true) || skip(h.name) {
            continue;
        }
        put_header(out, h.name.as_bytes(), h.value);
    }
    if te_trailers {
        put_header(out, b"te", b"trailers");
    }
}

/// Rules 1 to 4 on a raw request's header lines, written to `out`.
pub fn put_request_headers(
    out: &mut Vec<u8>,
    headers: &[httparse::Header<'_>],
    client_ip: &[u8],
    https: bool,
    host: &[u8],
) {
    put_kept(out, headers, |name| {
        FORWARDED.iter().any(|f| name.eq_ignore_ascii_case(f))
    });
    let prior = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|h| h.value.trim_ascii())
        .filter(|p| !p.is_empty());
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prior) = prior {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip);
    out.extend_from_slice(b"\r\n");
    put_header(
        out,
        b"x-forwarded-proto",
        if https { b"https" } else { b"http" },
    );
    put_header(out, b"x-forwarded-host", host);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "websocket"),
            ("te", "trailers, deflate"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept", "te"]);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn connection_never_removes_framing_host_or_forwarded_headers() {
        let mut h = map(&[
            (
                "connection",
                "close, content-length, host, transfer-encoding, x-forwarded-for",
            ),
            ("content-length", "5"),
            ("host", "app.test"),
            ("x-forwarded-for", "10.0.0.1"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h["content-length"], "5");
        assert_eq!(h["host"], "app.test");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        // The raw encoder decides the same for every name.
        let connection: Vec<&[u8]> = vec![b"content-length", b"host", b"x-a"];
        for name in ["content-length", "host", "x-forwarded-host"] {
            assert!(!dropped(name.as_bytes(), &connection, true), "{name}");
            assert!(!dropped(name.as_bytes(), &connection, false), "{name}");
        }
        assert!(dropped(b"X-A", &connection, true));
        assert!(dropped(b"transfer-encoding", &connection, false));
        assert!(!dropped(b"transfer-encoding", &connection, true));
    }

    #[test]
    fn a_message_framed_by_transfer_encoding_loses_its_length() {
        for te in ["chunked", "gzip"] {
            let mut h = map(&[
                ("transfer-encoding", te),
                ("content-length", "5"),
                ("x-a", "1"),
            ]);
            strip_hop_by_hop(&mut h);
            let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(left, ["x-a"], "{te}");
        }
        let mut h = map(&[("content-length", "5")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h["content-length"], "5");
    }

    #[test]
    fn forwarded_headers_append_the_client_and_name_proto_and_host() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "gopher"),
        ]);
        let origin = Origin {
            client: HeaderValue::from_static("127.0.0.9"),
            https: true,
            host: HeaderValue::from_static("app.example.test"),
        };
        set_forwarded(&mut h, &origin);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "app.example.test");
    }
}
