//! Forwarding to an upstream: pooled keep-alive connections (HTTP/1.1, or h2c
//! for gRPC), streaming bodies both ways, headers rewritten by the rules of
//! [`super::headers`], and WebSocket (HTTP/1.1 Upgrade) tunnelled by copying
//! bytes both ways once both sides have switched protocols. No other upgrade
//! is forwarded, and a `101` the client did not ask for (or for another
//! protocol) is a bad gateway, never a tunnel.
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::headers::{Origin, has_token, set_forwarded, strip_hop_by_hop};
use super::routes::Upstream;
use super::stall::{self, IdleBody, STALL_TIMEOUT};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream unreachable: {0}")]
    Connect(String),
    #[error("upstream failed: {0}")]
    Upstream(String),
    /// The client stopped sending its request body.
    #[error("{0}")]
    ClientStalled(String),
    /// The client's request body was malformed (bad chunk framing) or cut.
    #[error("{0}")]
    ClientBody(String),
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::ClientStalled(_) => StatusCode::REQUEST_TIMEOUT,
            ForwardError::ClientBody(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The pooled upstream clients.
#[derive(Clone)]
pub struct Forwarder {
    h1: Client<HttpConnector, IdleBody<Incoming>>,
    h2c: Client<HttpConnector, IdleBody<Incoming>>,
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

    /// Send `req` to `upstream` and return its response head with a streaming
    /// body. `target`: the normalised path and query, when it differs from
    /// the request's ([`super::target`]).
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        upstream: &Upstream,
        target: Option<&str>,
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
        if let Some(target) = target {
            parts.path_and_query = Some(
                PathAndQuery::try_from(target)
                    .map_err(|e| ForwardError::Upstream(format!("bad target: {e}")))?,
            );
        }
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
        // A body the client stops sending is given up after the same 30 s
        // the fast path and the head allow.
        let req = req.map(|body| IdleBody::new(body, STALL_TIMEOUT));
        let mut resp = client.request(req).await.map_err(|e| {
            if stall::stalled(&e) {
                ForwardError::ClientStalled(e.to_string())
            } else if stall::bad_body(&e) {
                ForwardError::ClientBody(e.to_string())
            } else if e.is_connect() {
                ForwardError::Connect(e.to_string())
            } else {
                ForwardError::Upstream(e.to_string())
            }
        })?;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Only the protocol the client asked for turns the connection into a tunnel.
            let agreed = upgrade.as_ref().is_some_and(|asked| {
                resp.headers()
                    .get(header::UPGRADE)
                    .is_some_and(|got| got.as_bytes().eq_ignore_ascii_case(asked.as_bytes()))
            });
            let Some(client_upgrade) = client_upgrade.filter(|_| agreed) else {
                return Err(ForwardError::Upstream(
                    "101 Switching Protocols to an upgrade the client did not ask for".into(),
                ));
            };
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

/// The protocol of an HTTP/1.1 `Connection: upgrade` request, when it is
/// WebSocket: the one upgrade forwarded. Any other is dropped with the
/// hop-by-hop headers, and the request goes on as a plain one.
pub fn upgrade_protocol<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let wants = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), "upgrade"));
    if !wants {
        return None;
    }
    req.headers()
        .get(header::UPGRADE)
        .filter(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let h2c = Request::builder()
            .header("connection", "upgrade")
            .header("upgrade", "h2c")
            .body(())
            .unwrap();
        assert!(
            upgrade_protocol(&h2c).is_none(),
            "only WebSocket is an upgrade"
        );
    }
}
