//! Forwarding to an upstream: pooled keep-alive connections (HTTP/1.1, or h2c
//! for gRPC), streaming bodies both ways, hop-by-hop headers removed,
//! `X-Forwarded-*` set, and WebSocket (HTTP/1.1 Upgrade) tunnelled by copying
//! bytes both ways once both sides have switched protocols.
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::routes::Upstream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
pub(super) static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Where the request came from, for `X-Forwarded-*`.
pub struct Origin {
    /// The client's IP address, as a header value.
    pub client: HeaderValue,
    pub https: bool,
    /// The request's host as the client sent it.
    pub host: HeaderValue,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream unreachable: {0}")]
    Connect(String),
    #[error("upstream failed: {0}")]
    Upstream(String),
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_GATEWAY
    }
}

/// The pooled upstream clients.
#[derive(Clone)]
pub struct Forwarder {
    h1: Client<HttpConnector, Incoming>,
    h2c: Client<HttpConnector, Incoming>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl Forwarder {
    pub fn new() -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let h1 = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .http2_only(true)
            .timer(TokioTimer::new())
            .build(connector);
        Forwarder { h1, h2c }
    }

    /// Send `req` to `upstream` and return its response head with a streaming body.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        upstream: &Upstream,
        origin: &Origin,
    ) -> Result<Response<Incoming>, ForwardError> {
        // gRPC needs HTTP/2 end to end; everything else is pooled HTTP/1.1.
        let h2 = upstream.h2c || (req.version() == Version::HTTP_2 && is_grpc(req.headers()));
        let upgrade = if h2 { None } else { upgrade_protocol(&req) };
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));

        // Reuse the parsed path and query; only scheme and authority change.
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(upstream.authority.clone());
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        *req.uri_mut() = Uri::from_parts(parts)
            .map_err(|e| ForwardError::Upstream(format!("bad upstream uri: {e}")))?;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        set_forwarded(headers, origin);
        if let Some(proto) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto.clone());
        }
        if h2 {
            headers.remove(header::HOST);
            headers.insert(header::TE, HeaderValue::from_static("trailers"));
            *req.version_mut() = Version::HTTP_2;
        } else {
            headers.insert(header::HOST, origin.host.clone());
            *req.version_mut() = Version::HTTP_11;
        }

        let client = if h2 { &self.h2c } else { &self.h1 };
        let mut resp = client.request(req).await.map_err(|e| {
            if e.is_connect() {
                ForwardError::Connect(e.to_string())
            } else {
                ForwardError::Upstream(e.to_string())
            }
        })?;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let (mut client, mut upstream) =
                            (TokioIo::new(client), TokioIo::new(upstream));
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            return Ok(resp);
        }
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp)
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The protocol of an HTTP/1.1 `Connection: upgrade` request (WebSocket).
pub fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let wants = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v, "upgrade"));
    if !wants {
        return None;
    }
    req.headers().get(header::UPGRADE).cloned()
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str()
        .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Remove hop-by-hop headers and any header the `Connection` header names.
/// `TE: trailers` survives (gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests have none: one pass over the names, no hashing.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        // `keep-alive` and `close` are the usual tokens: nothing more to remove.
        .filter(|t| {
            !t.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str()))
        })
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| has_token(v, "trailers"));
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k))
        .cloned()
        .collect();
    for name in named.iter().chain(&present) {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Append the client to `X-Forwarded-For`; set `-Proto` and `-Host`.
pub fn set_forwarded(headers: &mut HeaderMap, origin: &Origin) {
    let prior = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let xff = match prior {
        Some(prior) => {
            let ip = origin.client.to_str().unwrap_or_default();
            HeaderValue::from_str(&format!("{prior}, {ip}")).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_are_removed() {
        let mut h = headers(&[
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
    fn forwarded_headers_append_the_client_and_name_proto_and_host() {
        let mut h = headers(&[
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

    #[test]
    fn only_http11_connection_upgrade_requests_are_upgrades() {
        let req = |v: Version, conn: &'static str| {
            Request::builder()
                .version(v)
                .header("connection", conn)
                .header("upgrade", "websocket")
                .body(())
                .unwrap()
        };
        assert!(upgrade_protocol(&req(Version::HTTP_11, "keep-alive, Upgrade")).is_some());
        assert!(upgrade_protocol(&req(Version::HTTP_11, "keep-alive")).is_none());
        assert!(upgrade_protocol(&req(Version::HTTP_10, "upgrade")).is_none());
        assert!(upgrade_protocol(&req(Version::HTTP_2, "upgrade")).is_none());
    }
}
