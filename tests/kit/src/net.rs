//! Loopback networking: free ports, HTTP clients (raw and hyper), a backend
//! that says hello, and the statuses of raw HTTP/1 answers.
use std::net::{SocketAddr, TcpListener};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tiny HTTP/1.1 GET over loopback; Some(body) on 200.
pub async fn http_get(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// A plain-HTTP client (HTTP/1.1; HTTP/2 where a request says so).
pub fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `path` from `addr` with this Host and these headers: status, headers
/// and body, whatever the status.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, String) {
    let mut b = Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = http_client()
        .request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The status codes of the answers in `text` (HTTP/1.1 or HTTP/1.0).
pub fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// A backend that answers every request with "hello".
pub async fn backend() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
                    )
                    .await;
            });
        }
    });
    port
}

/// A GET of `/` for `host` through the proxy on this port: the whole answer.
pub async fn get_via_proxy(proxy: u16, host: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy))
        .await
        .unwrap();
    s.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_from_http_1_0_and_1_1_answers() {
        let text = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\n";
        assert_eq!(statuses(text), [200, 404]);
        assert_eq!(statuses("GET / HTTP/1.1\r\n\r\n"), Vec::<u16>::new());
    }

    #[tokio::test]
    async fn the_hello_backend_answers_every_client() {
        let port = backend().await;
        assert_eq!(
            http_get(&format!("http://127.0.0.1:{port}/x"))
                .await
                .as_deref(),
            Some("hello")
        );
        let (status, _, body) = get(([127, 0, 0, 1], port).into(), "a.test", "/", &[]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
        let answer = get_via_proxy(port, "a.test").await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
            "{answer}"
        );
        assert_ne!(free_port(), 0);
    }
}
