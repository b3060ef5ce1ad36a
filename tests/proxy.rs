//! The ingress proxy against real HTTP backends on 127.0.0.1 and, for states,
//! Leases and Ingresses, the shared local cluster (`tests/cluster/cluster.sh up`).
//! The controller's part (seeing the wake write, marking the namespace awake)
//! is played by the test.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use siesta::config::ProxyLimits;
use siesta::proxy::{self, Options, Running, routes::parse_routes};
use siesta_test_kit::{
    annotate_namespace, client, create_namespace, fast_path, free_port, get, http_client,
    remove_namespace, statuses, unique,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ---------- a backend on 127.0.0.1 ----------

type TestBody = BoxBody<Bytes, Infallible>;

/// An HTTP/1.1 + h2c backend: describes the request it got; echoes bytes after
/// an Upgrade; answers `application/grpc` with a trailer.
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
    addr
}

async fn answer(mut req: Request<Incoming>) -> Result<Response<TestBody>, Infallible> {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    if req.headers().contains_key("upgrade") {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(io) = on.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(io));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let r = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap();
        return Ok(r);
    }
    if h("content-type").starts_with("application/grpc") {
        let frames = futures::stream::iter([
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Ok(Frame::trailers({
                let mut t = http::HeaderMap::new();
                t.insert("grpc-status", "0".parse().unwrap());
                t
            })),
        ]);
        let r = Response::builder()
            .header("content-type", "application/grpc")
            .body(BodyExt::boxed(StreamBody::new(frames)))
            .unwrap();
        return Ok(r);
    }
    let text = format!(
        "backend path={} version={:?} host={} xff={} xfh={} xfp={} connection={}",
        req.uri().path(),
        req.version(),
        h("host"),
        h("x-forwarded-for"),
        h("x-forwarded-host"),
        h("x-forwarded-proto"),
        h("x-custom-hop"),
    );
    Ok(Response::new(Full::new(Bytes::from(text)).boxed()))
}

// ---------- the cluster and the proxy ----------

/// A namespace as the controller would have left it (no group label: no test
/// controller selects it).
async fn namespace(
    client: &kube::Client,
    prefix: &str,
    state: &str,
    extra: &[(&str, &str)],
) -> String {
    let name = unique(&format!("proxy-{prefix}"));
    let since = siesta::model::format_instant(Utc::now() - chrono::Duration::minutes(10));
    let mut annotations = vec![
        ("siesta.dev/enabled", "true"),
        ("siesta.dev/state", state),
        ("siesta.dev/state-since", since.as_str()),
    ];
    annotations.extend_from_slice(extra);
    create_namespace(client, &name, &[], &annotations).await;
    name
}

async fn set_state(client: &kube::Client, ns: &str, state: &str) {
    let annotations = serde_json::json!({
        "siesta.dev/state": state,
        "siesta.dev/state-since": siesta::model::format_instant(Utc::now()),
    });
    annotate_namespace(client, ns, annotations).await;
}

/// Plays the controller: counts writes of the namespace's Activity Lease and,
/// at the first one (the wake request), marks the namespace `waking`, then
/// `awake` once `release` completes.
async fn controller_stand_in(
    client: kube::Client,
    ns: String,
    release: impl std::future::Future<Output = ()> + Send + 'static,
) -> Arc<AtomicUsize> {
    let writes = Arc::new(AtomicUsize::new(0));
    let counter = writes.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let leases = Api::<Lease>::namespaced(client.clone(), &ns);
        let cfg = watcher::Config::default().fields("metadata.name=siesta-activity");
        let events = watcher(leases, cfg);
        futures::pin_mut!(events);
        let mut tx = Some(tx);
        let mut release = Some(release);
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(watcher::Event::Apply(_)) => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if let Some(release) = release.take() {
                        let (client, ns) = (client.clone(), ns.clone());
                        tokio::spawn(async move {
                            set_state(&client, &ns, "waking").await;
                            release.await;
                            set_state(&client, &ns, "awake").await;
                        });
                    }
                }
                _ => {}
            }
        }
    });
    // The watch is established before any request is sent.
    let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
    writes
}

async fn start_proxy(
    routes_yaml: &str,
    limits: ProxyLimits,
    cluster: Option<kube::Client>,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = Options {
        routes: Some(parse_routes(routes_yaml).unwrap()),
        limits,
        http1_fast_path: fast_path(),
        ..Options::default()
    };
    proxy::start(listener, options, cluster).await.unwrap()
}

/// A backend on 127.0.0.1 and a proxy routing `host` to it.
async fn fronted(
    host: &str,
    ns: Option<&str>,
    limits: ProxyLimits,
    cluster: Option<kube::Client>,
) -> Running {
    let b = backend().await;
    start_proxy(&format!("routes:\n{}", route(host, b, ns)), limits, cluster).await
}

fn route(host: &str, backend: SocketAddr, ns: Option<&str>) -> String {
    let ns = ns
        .map(|n| format!("    namespace: {n}\n"))
        .unwrap_or_default();
    format!("  - host: \"{host}\"\n    upstream: http://{backend}\n{ns}")
}

/// Raw bytes in, everything the proxy writes until it closes (or 5 s) out.
async fn raw(proxy: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

// ---------- without a cluster ----------

#[tokio::test]
async fn forwards_with_forwarded_headers_and_without_hop_by_hop_ones() {
    let p = fronted("app.example.test", None, ProxyLimits::default(), None).await;
    let (status, _, body) = get(
        p.addr,
        "app.example.test",
        "/hello?x=1",
        &[
            ("x-forwarded-for", "10.1.2.3"),
            ("connection", "x-custom-hop"),
            ("x-custom-hop", "secret"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("path=/hello"), "{body}");
    assert!(body.contains("host=app.example.test"), "{body}");
    assert!(body.contains("xff=10.1.2.3, 127.0.0.1"), "{body}");
    assert!(
        body.contains("xfh=app.example.test") && body.contains("xfp=http"),
        "{body}"
    );
    assert!(
        body.contains("connection=-"),
        "a header named by Connection is not forwarded: {body}"
    );
}

#[tokio::test]
async fn an_unknown_host_gets_404_and_absolute_targets_are_never_followed() {
    let p = fronted("app.example.test", None, ProxyLimits::default(), None).await;
    assert_eq!(
        get(p.addr, "nobody.example.test", "/", &[]).await.0,
        StatusCode::NOT_FOUND
    );
    // The authority of an absolute-form target decides the route (RFC 9112), and
    // it is only ever looked up in the table: no connection to it is made.
    let text = raw(p.addr, b"GET http://169.254.169.254/latest HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(statuses(&text), [404], "{text}");
    let text = raw(
        p.addr,
        b"GET http://app.example.test/abs HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        text.contains("path=/abs") && text.contains("host=app.example.test"),
        "{text}"
    );
    let text = raw(
        p.addr,
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&text), [405], "{text}");
}

#[tokio::test]
async fn malformed_requests_get_the_right_status() {
    let p = fronted("app.example.test", None, ProxyLimits::default(), None).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: app.example.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    assert_eq!(statuses(&raw(p.addr, big.as_bytes()).await), [431]);
    assert_eq!(
        statuses(&raw(p.addr, b"G(T / HTTP/1.1\r\nHost: app.example.test\r\n\r\n").await),
        [400]
    );
    assert_eq!(
        statuses(&raw(p.addr, b"GET / HTTP/1.1\r\n\r\n").await),
        [400],
        "no host"
    );
    let pipelined = b"GET /1 HTTP/1.1\r\nHost: app.example.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.example.test\r\n\r\nGET /3 HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n";
    let text = raw(p.addr, pipelined).await;
    assert_eq!(statuses(&text), [200, 200, 200], "{text}");
    let (i1, i2, i3) = (
        text.find("path=/1").unwrap(),
        text.find("path=/2").unwrap(),
        text.find("path=/3").unwrap(),
    );
    assert!(i1 < i2 && i2 < i3, "answers in request order");
    // An Upgrade header without Connection: upgrade is an ordinary request.
    let text = raw(p.addr, b"GET /u HTTP/1.1\r\nHost: app.example.test\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n").await;
    assert_eq!(statuses(&text), [200], "{text}");
}

#[tokio::test]
async fn a_websocket_echoes_through_the_proxy() {
    let p = fronted("ws.example.test", None, ProxyLimits::default(), None).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: ws.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for msg in [&b"ping"[..], b"second message"] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
}

#[tokio::test]
async fn http2_by_prior_knowledge_and_grpc_trailers_pass_through() {
    let p = fronted("h2.example.test", None, ProxyLimits::default(), None).await;
    // A real h2c client by prior knowledge: `:authority` names the host.
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("http://h2.example.test/two")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("path=/two") && body.contains("xfh=h2.example.test"),
        "{body}"
    );

    // gRPC: HTTP/2 to the upstream too, and the trailers come back.
    let grpc = Request::builder()
        .method("POST")
        .uri("http://h2.example.test/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let resp = h2.send_request(grpc).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(
        collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .map(|v| v.to_str().unwrap()),
        Some("0")
    );
}

mod raw_requests {
    use super::*;
    use proptest::prelude::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// Arbitrary, half-valid request heads never crash the proxy; every
        /// answer is a well-formed status, and the proxy serves on afterwards.
        #[test]
        fn arbitrary_request_heads_get_a_status_and_no_crash(
            method in prop_oneof![Just("GET".to_string()), Just("POST".to_string()), Just("CONNECT".to_string()), "[A-Z(){}]{1,8}"],
            target in prop_oneof![Just("/".to_string()), "/[ -~]{0,40}", "http://[a-z.]{1,20}/[a-z]{0,5}", "\\*"],
            version in prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0"), Just("HTTP/2.0"), Just("HTTP/9")],
            host in prop_oneof![Just("app.example.test".to_string()), "[ -~]{0,30}"],
            extra in proptest::collection::vec(("[a-zA-Z-]{1,12}", "[ -~]{0,60}"), 0..6),
            upgrade in any::<bool>(),
            big in 0usize..3,
        ) {
            let rt = runtime();
            rt.block_on(async {
                let p = fronted("app.example.test", None, ProxyLimits::default(), None).await;
                let mut head = format!("{method} {target} {version}\r\nHost: {host}\r\n");
                for (k, v) in &extra {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                if upgrade {
                    head.push_str("Connection: upgrade\r\nUpgrade: h2c\r\n");
                }
                if big == 2 {
                    head.push_str(&format!("X-Big: {}\r\n", "b".repeat(40 * 1024)));
                }
                head.push_str("Connection: close\r\n\r\n");
                let text = raw(p.addr, head.as_bytes()).await;
                for s in statuses(&text) {
                    prop_assert!((100..600).contains(&s), "{text}");
                }
                if big == 2 {
                    // Too large (431), unless already malformed before that (400).
                    let s = statuses(&text);
                    prop_assert!(s == [431] || s == [400], "{text}");
                }
                let (status, _, _) = get(p.addr, "app.example.test", "/after", &[]).await;
                prop_assert_eq!(status, StatusCode::OK);
                Ok(())
            })?;
        }
    }
}

// ---------- plain HTTP/1.1 framing, against a hand-written backend ----------

/// A backend that writes its answers byte for byte, to check framing that a
/// hyper backend never produces. By path: `/chunked` (three chunks 20 ms
/// apart, then a trailer), `/close` (no length: the body ends at the close),
/// `/drop` (an answer with a length, then the connection is closed without
/// saying so), `/sum` (the request body's length and byte sum), else the path.
/// HEAD gets a length and no body. Counts the connections it accepts.
async fn scripted() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some((method, path, body)) = read_request(&mut s, &mut buf).await {
                    let pieces: Vec<Vec<u8>> = match (method.as_str(), path.as_str()) {
                        ("HEAD", _) => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()],
                        (_, "/chunked") => vec![
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5\r\nhel".to_vec(),
                            b"lo\r\n6;ext=1\r\n world\r\n".to_vec(),
                            b"0\r\nx-sum: 11\r\n\r\n".to_vec(),
                        ],
                        (_, "/close") => vec![b"HTTP/1.1 200 OK\r\n\r\nuntil".to_vec(), b" close".to_vec()],
                        (_, "/drop") => vec![b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndrop".to_vec()],
                        (_, "/sum") => {
                            let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
                            let text = format!("len={} sum={sum}", body.len());
                            vec![format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len()).into_bytes()]
                        }
                        _ => vec![format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}", path.len()).into_bytes()],
                    };
                    for (i, p) in pieces.iter().enumerate() {
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if s.write_all(p).await.is_err() {
                            return;
                        }
                    }
                    if path == "/close" || path == "/drop" {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// One request from `s` (head, then a body of its Content-Length).
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String, Vec<u8>)> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .map_or(0, |v| v.parse().unwrap());
    buf.drain(..end);
    while buf.len() < len {
        let mut chunk = vec![0u8; 64 * 1024];
        let n = s.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.drain(..len).collect();
    Some((method, path, body))
}

async fn fronted_scripted() -> (Running, Arc<AtomicUsize>) {
    let (b, accepted) = scripted().await;
    let p = start_proxy(
        &format!("routes:\n{}", route("app.example.test", b, None)),
        ProxyLimits::default(),
        None,
    )
    .await;
    (p, accepted)
}

#[tokio::test]
async fn chunked_head_and_length_answers_keep_one_upstream_connection_alive() {
    let (p, accepted) = fronted_scripted().await;
    let c = http_client();
    for round in 0..2 {
        // Trailers reach a client that says it takes them (hyper's path
        // sends them only then; the fast path passes chunks as they are).
        let req = Request::get(format!("http://{}/chunked", p.addr))
            .header("host", "app.example.test")
            .header("te", "trailers")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap();
        let trailers = body.trailers().cloned().expect("the trailer is passed on");
        assert_eq!(trailers["x-sum"], "11");
        assert_eq!(body.to_bytes(), "hello world", "round {round}");
        let head = Request::head(format!("http://{}/x", p.addr))
            .header("host", "app.example.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = c.request(head).await.unwrap();
        assert_eq!(resp.headers()["content-length"], "5");
        assert!(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .is_empty()
        );
        assert_eq!(
            get(p.addr, "app.example.test", "/plain", &[]).await.2,
            "/plain"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection for every request"
    );
}

#[tokio::test]
async fn an_answer_without_length_ends_at_the_close_and_so_does_the_client_connection() {
    let (p, _) = fronted_scripted().await;
    let text = raw(
        p.addr,
        b"GET /close HTTP/1.1\r\nHost: app.example.test\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    if fast_path() {
        // Passed through as it came: the body ends at the close.
        assert!(
            text.to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\nuntil close"), "{text}");
    } else {
        // hyper frames the body itself, in chunks.
        assert!(
            text.to_ascii_lowercase()
                .contains("\r\ntransfer-encoding: chunked\r\n"),
            "{text}"
        );
        let body: String = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .split("\r\n")
            .skip(1)
            .step_by(2)
            .collect();
        assert_eq!(body, "until close", "{text}");
        assert!(text.ends_with("\r\n0\r\n\r\n"), "{text}");
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_connection_close_is_honoured() {
    let (p, _) = fronted_scripted().await;
    let text = raw(
        p.addr,
        b"GET /a HTTP/1.1\r\nHost: app.example.test\r\n\r\nGET /b HTTP/1.1\r\nHost: app.example.test\r\n\r\n\
          GET /c HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: app.example.test\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&text), [200, 200, 200], "{text}");
    let (a, b, c) = (
        text.find("\r\n\r\n/a"),
        text.find("\r\n\r\n/b"),
        text.find("\r\n\r\n/c"),
    );
    assert!(a < b && b < c && a.is_some(), "{text}");
    assert!(
        !text.contains("/never"),
        "nothing is served after Connection: close: {text}"
    );
}

#[tokio::test]
async fn a_large_request_body_reaches_the_backend_intact() {
    let (p, _) = fronted_scripted().await;
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let req = Request::post(format!("http://{}/sum", p.addr))
        .header("host", "app.example.test")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = http_client().request(req).await.unwrap();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text, format!("len={} sum={sum}", 3 * 1024 * 1024));
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_not_reused() {
    let (p, accepted) = fronted_scripted().await;
    for _ in 0..3 {
        let (status, _, body) = get(p.addr, "app.example.test", "/drop", &[]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "drop"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

// ---------- with the cluster ----------

#[tokio::test]
async fn forwards_while_awake_and_counts_the_request() {
    let kube = client().await;
    let ns = namespace(&kube, "awake", "awake", &[]).await;
    let p = fronted(
        "awake.example.test",
        Some(&ns),
        ProxyLimits::default(),
        Some(kube.clone()),
    )
    .await;
    let (status, _, body) = get(p.addr, "awake.example.test", "/", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        p.proxy.reporter().seen(&ns).and_then(|s| s.http).is_some(),
        "the request is activity"
    );
    // A health check is forwarded but not counted.
    let before = p.proxy.reporter().seen(&ns).and_then(|s| s.http);
    get(
        p.addr,
        "awake.example.test",
        "/healthz",
        &[("user-agent", "kube-probe/1.36")],
    )
    .await;
    assert_eq!(p.proxy.reporter().seen(&ns).and_then(|s| s.http), before);
    remove_namespace(&kube, &ns).await;
}

#[tokio::test]
async fn a_sleeping_namespace_is_woken_by_one_request_which_then_gets_the_backends_answer() {
    let kube = client().await;
    let ns = namespace(&kube, "wake", "asleep", &[]).await;
    let writes = controller_stand_in(kube.clone(), ns.clone(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
    })
    .await;
    let p = fronted(
        "wake.example.test",
        Some(&ns),
        ProxyLimits::default(),
        Some(kube.clone()),
    )
    .await;
    let started = tokio::time::Instant::now();
    let (status, _, body) = get(
        p.addr,
        "wake.example.test",
        "/first",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("path=/first"));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it was held until awake"
    );
    assert_eq!(writes.load(Ordering::SeqCst), 1);
    let lease = Api::<Lease>::namespaced(kube.clone(), &ns)
        .get("siesta-activity")
        .await
        .unwrap();
    let ann = lease.metadata.annotations.unwrap_or_default();
    assert!(ann.contains_key("siesta.dev/last-http"), "{ann:?}");
    remove_namespace(&kube, &ns).await;
}

/// Read from `s` until `text` has `n` answers from the backend (or 10 s pass).
async fn read_answers(s: &mut TcpStream, text: &mut String, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while text.matches("backend path=").count() < n {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await;
        match read {
            Ok(Ok(k)) if k > 0 => text.push_str(&String::from_utf8_lossy(&chunk[..k])),
            _ => break,
        }
    }
}

#[tokio::test]
async fn a_held_http1_connection_is_answered_after_the_wake_then_serves_pipelined_and_keep_alive_requests()
 {
    let kube = client().await;
    let ns = namespace(&kube, "pipe", "asleep", &[]).await;
    let writes = controller_stand_in(kube.clone(), ns.clone(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
    })
    .await;
    let p = fronted(
        "pipe.example.test",
        Some(&ns),
        ProxyLimits::default(),
        Some(kube.clone()),
    )
    .await;
    let started = tokio::time::Instant::now();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    // Two requests at once: the first is held; the second waits behind it.
    s.write_all(b"POST /first HTTP/1.1\r\nHost: pipe.example.test\r\nContent-Length: 4\r\n\r\nbodyGET /second HTTP/1.1\r\nHost: pipe.example.test\r\n\r\n")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while p.proxy.held(&ns) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.proxy.held(&ns), 1, "the first request is held");
    let mut text = String::new();
    read_answers(&mut s, &mut text, 2).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "held until awake"
    );
    assert_eq!(statuses(&text), [200, 200], "{text}");
    let (first, second) = (
        text.find("path=/first").unwrap(),
        text.find("path=/second").unwrap(),
    );
    assert!(first < second, "answers in request order: {text}");
    // The connection stays open for more requests.
    s.write_all(b"GET /third HTTP/1.1\r\nHost: pipe.example.test\r\n\r\n")
        .await
        .unwrap();
    read_answers(&mut s, &mut text, 3).await;
    assert_eq!(statuses(&text), [200, 200, 200], "{text}");
    assert!(text.contains("path=/third"), "{text}");
    assert_eq!(writes.load(Ordering::SeqCst), 1, "one wake write");
    assert_eq!(p.proxy.held(&ns), 0);
    remove_namespace(&kube, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_to_a_sleeping_namespace_make_one_wake_write_and_all_get_answers()
 {
    let kube = client().await;
    let ns = namespace(&kube, "many", "asleep", &[]).await;
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let writes = controller_stand_in(kube.clone(), ns.clone(), async move {
        let _ = release_rx.await;
    })
    .await;
    let p = fronted(
        "many.example.test",
        Some(&ns),
        ProxyLimits::default(),
        Some(kube.clone()),
    )
    .await;
    let c = http_client();
    let requests = (0..1000).map(|i| {
        let c = c.clone();
        let uri = format!("http://{}/r{i}", p.addr);
        async move {
            let req = Request::builder()
                .uri(uri)
                .header("host", "many.example.test")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = c.request(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, body.starts_with(b"backend"))
        }
    });
    let all = tokio::spawn(futures::future::join_all(requests));
    // While it wakes, all of them wait.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while p.proxy.held(&ns) < 1000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(p.proxy.held(&ns), 1000);
    // The wake write may still be on its way to a busy API server.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while writes.load(Ordering::SeqCst) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        writes.load(Ordering::SeqCst),
        1,
        "one wake write for a thousand requests"
    );
    let _ = release_tx.send(());
    let answers = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answers.len(), 1000);
    assert!(
        answers
            .iter()
            .all(|(s, from_backend)| *s == StatusCode::OK && *from_backend)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(writes.load(Ordering::SeqCst), 1, "exactly one wake write");
    assert_eq!(p.proxy.held(&ns), 0);
    remove_namespace(&kube, &ns).await;
}

#[tokio::test]
async fn a_browser_gets_the_waking_page_unless_the_namespace_says_never() {
    let kube = client().await;
    let ns = namespace(&kube, "page", "asleep", &[]).await;
    let quiet = namespace(
        &kube,
        "nopage",
        "asleep",
        &[("siesta.dev/wake-page", "never")],
    )
    .await;
    let b = backend().await;
    let routes = format!(
        "routes:\n{}{}",
        route("page.example.test", b, Some(&ns)),
        route("nopage.example.test", b, Some(&quiet))
    );
    let limits = ProxyLimits {
        hold_timeout: Duration::from_millis(500),
        ..ProxyLimits::default()
    };
    let p = start_proxy(&routes, limits, Some(kube.clone())).await;
    let browser = [("accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
    let (status, headers, body) = get(p.addr, "page.example.test", "/", &browser).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    assert!(
        body.contains("http-equiv=\"refresh\"") && body.contains("page.example.test"),
        "{body}"
    );
    // The page request was the wake request.
    let leases = Api::<Lease>::namespaced(kube.clone(), &ns);
    let mut written = false;
    for _ in 0..100 {
        written = leases.get_opt("siesta-activity").await.unwrap().is_some();
        if written {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(written, "the page request wrote the Activity Lease");
    // wake-page: never holds the browser instead (here until the hold timeout).
    let (status, _, _) = get(p.addr, "nopage.example.test", "/", &browser).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    remove_namespace(&kube, &ns).await;
    remove_namespace(&kube, &quiet).await;
}

#[tokio::test]
async fn held_requests_time_out_with_504_and_the_queue_limit_answers_503() {
    let kube = client().await;
    let ns = namespace(&kube, "limits", "asleep", &[]).await;
    let b = backend().await;
    let limits = ProxyLimits {
        hold_timeout: Duration::from_secs(2),
        max_held_per_namespace: 3,
        ..ProxyLimits::default()
    };
    let p = start_proxy(
        &format!("routes:\n{}", route("limits.example.test", b, Some(&ns))),
        limits,
        Some(kube.clone()),
    )
    .await;
    let held: Vec<_> = (0..3)
        .map(|_| {
            let addr = p.addr;
            tokio::spawn(async move { get(addr, "limits.example.test", "/", &[]).await.0 })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.proxy.held(&ns), 3);
    let (status, headers, _) = get(p.addr, "limits.example.test", "/", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    for h in held {
        assert_eq!(h.await.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    }
    assert_eq!(p.proxy.held(&ns), 0);
    remove_namespace(&kube, &ns).await;
}

#[tokio::test]
async fn a_held_http1_client_that_hangs_up_frees_its_place_at_once() {
    let kube = client().await;
    let ns = namespace(&kube, "hangup", "asleep", &[]).await;
    let limits = ProxyLimits {
        max_held_per_namespace: 1,
        ..ProxyLimits::default()
    };
    let p = fronted("hangup.example.test", Some(&ns), limits, Some(kube.clone())).await;
    let held_within = |n: usize| {
        let (proxy, ns) = (p.proxy.clone(), ns.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while proxy.held(&ns) != n && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            proxy.held(&ns)
        }
    };
    let request = b"GET / HTTP/1.1\r\nHost: hangup.example.test\r\n\r\n";
    let mut first = TcpStream::connect(p.addr).await.unwrap();
    first.write_all(request).await.unwrap();
    assert_eq!(held_within(1).await, 1);
    drop(first);
    assert_eq!(held_within(0).await, 0, "the hang-up freed the place");
    // A client that sent a body far larger than what is read while held:
    // its hang-up is seen behind the unread bytes all the same.
    let mut post =
        b"POST / HTTP/1.1\r\nHost: hangup.example.test\r\nContent-Length: 65536\r\n\r\n".to_vec();
    post.resize(post.len() + 65536, b'x');
    let mut with_body = TcpStream::connect(p.addr).await.unwrap();
    with_body.write_all(&post).await.unwrap();
    assert_eq!(held_within(1).await, 1);
    drop(with_body);
    assert_eq!(
        held_within(0).await,
        0,
        "the hang-up behind a 64 KiB body freed the place"
    );
    let mut second = TcpStream::connect(p.addr).await.unwrap();
    second.write_all(request).await.unwrap();
    assert_eq!(
        held_within(1).await,
        1,
        "the next request is held, not refused"
    );
    remove_namespace(&kube, &ns).await;
}

fn ingress(host: &str, service: &str, port: u16) -> Ingress {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": service },
        "spec": { "ingressClassName": "siesta", "rules": [{ "host": host, "http": { "paths": [
            { "path": "/", "pathType": "Prefix", "backend": { "service": { "name": service, "port": { "number": port } } } }
        ]}}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn ingress_routes_wait_for_their_service_then_forward_to_it() {
    let kube = client().await;
    let ns = namespace(&kube, "ing", "awake", &[]).await;
    let b = backend().await;
    let host = format!("{ns}.example.test");
    Api::<Ingress>::namespaced(kube.clone(), &ns)
        .create(&PostParams::default(), &ingress(&host, "web", b.port()))
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = proxy::start(listener, Options::default(), Some(kube.clone()))
        .await
        .unwrap();

    // No Service yet, so no endpoint: the request waits for one.
    let (addr, h) = (p.addr, host.clone());
    let waiting = tokio::spawn(async move { get(addr, &h, "/via-ingress", &[]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished());
    assert_eq!(p.proxy.held(&ns), 1);
    // Endpoint addresses may not be loopback, so the Service that makes the
    // route ready is an ExternalName naming 127.0.0.1.
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "web" },
        "spec": { "type": "ExternalName", "externalName": "127.0.0.1", "ports": [{ "name": "http", "port": b.port() }] }
    }))
    .unwrap();
    Api::<Service>::namespaced(kube.clone(), &ns)
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("path=/via-ingress") && body.contains(&format!("host={host}")),
        "{body}"
    );
    assert_eq!(
        get(p.addr, "other.example.test", "/", &[]).await.0,
        StatusCode::NOT_FOUND
    );
    remove_namespace(&kube, &ns).await;
}

/// Resolution only: these addresses are documentation addresses (192.0.2.0/24)
/// and no request is ever sent to them.
#[tokio::test]
async fn ingress_routes_resolve_to_the_ready_endpoints_of_endpoint_slices() {
    let kube = client().await;
    let ns = namespace(&kube, "eps", "awake", &[]).await;
    let host = format!("{ns}.example.test");
    Api::<Ingress>::namespaced(kube.clone(), &ns)
        .create(&PostParams::default(), &ingress(&host, "api", 80))
        .await
        .unwrap();
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "api" },
        "spec": { "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] }
    }))
    .unwrap();
    Api::<Service>::namespaced(kube.clone(), &ns)
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = proxy::start(listener, Options::default(), Some(kube.clone()))
        .await
        .unwrap();
    assert_eq!(p.proxy.upstream_for(&host, "/"), None, "no endpoint yet");

    let slice = |ready: bool| -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "api-1", "labels": {
                "kubernetes.io/service-name": "api",
                "endpointslice.kubernetes.io/managed-by": "siesta-tests"
            }},
            "addressType": "IPv4",
            "endpoints": [
                { "addresses": ["192.0.2.10"], "conditions": { "ready": ready } },
                { "addresses": ["192.0.2.11"], "conditions": { "ready": false } }
            ],
            "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }]
        }))
        .unwrap()
    };
    let slices = Api::<EndpointSlice>::namespaced(kube.clone(), &ns);
    slices
        .create(&PostParams::default(), &slice(true))
        .await
        .unwrap();
    let eventually = |want: Option<&'static str>| {
        let (proxy, host) = (p.proxy.clone(), host.clone());
        async move {
            for _ in 0..100 {
                if proxy.upstream_for(&host, "/").as_deref() == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(
        eventually(Some("192.0.2.10:8080")).await,
        "the ready endpoint, on the target port"
    );
    assert!(
        eventually(Some("192.0.2.10:8080")).await,
        "never the unready one"
    );
    slices
        .patch(
            "api-1",
            &PatchParams::apply("siesta-tests").force(),
            &Patch::Apply(&slice(false)),
        )
        .await
        .unwrap();
    assert!(eventually(None).await, "no ready endpoint left");
    remove_namespace(&kube, &ns).await;
}

/// A CA and a leaf certificate for `host`, made with the openssl CLI.
fn certificates(dir: &std::path::Path, host: &str) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "1",
            "-subj",
            "/CN=siesta-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-subj",
            &format!("/CN={host}"),
            "-keyout",
            "tls.key",
            "-out",
            "tls.csr",
        ],
    ]
    .concat());
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=DNS:{host}\n")).unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "tls.crt",
    ]);
}

#[tokio::test]
async fn h2_over_tls_is_negotiated_by_alpn() {
    let host = "tls.example.test";
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path(), host);
    let b = backend().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = proxy::server::tls_acceptor(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
        .unwrap();
    let options = Options {
        routes: Some(parse_routes(&format!("routes:\n{}", route(host, b, None))).unwrap()),
        tls: Some(tls),
        http1_fast_path: fast_path(),
        ..Options::default()
    };
    let p = proxy::start(listener, options, None).await.unwrap();

    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    for cert in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("https://{host}/secure"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("path=/secure") && body.contains("xfp=https"),
        "{body}"
    );
}

#[tokio::test]
async fn worker_threads_with_their_own_runtimes_serve_the_same_listener() {
    let b = backend().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = Options {
        routes: Some(
            parse_routes(&format!(
                "routes:\n{}",
                route("workers.example.test", b, None)
            ))
            .unwrap(),
        ),
        workers: 2,
        http1_fast_path: fast_path(),
        ..Options::default()
    };
    let p = proxy::start(listener, options, None).await.unwrap();
    for i in 0..20 {
        let (status, _, body) = get(p.addr, "workers.example.test", &format!("/w{i}"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains(&format!("path=/w{i}")), "{body}");
    }
}

#[tokio::test]
async fn a_changed_routes_file_takes_effect_without_restart_and_a_bad_one_is_ignored() {
    let (a, b) = (backend().await, backend().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.yaml");
    let routes_to = |to: SocketAddr| format!("routes:\n{}", route("reload.example.test", to, None));
    std::fs::write(&path, routes_to(a)).unwrap();
    let options = Options {
        routes_file: Some(path.clone()),
        http1_fast_path: fast_path(),
        ..Options::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = proxy::start(listener, options, None).await.unwrap();
    let upstream = || p.proxy.upstream_for("reload.example.test", "/");
    assert_eq!(upstream(), Some(a.to_string()));

    std::fs::write(&path, routes_to(b)).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while upstream() != Some(b.to_string()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(upstream(), Some(b.to_string()), "reloaded");
    let (status, _, body) = get(p.addr, "reload.example.test", "/after", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A bad file is logged and ignored: the routes in force stay.
    std::fs::write(
        &path,
        "routes:\n  - {host: 'not a host', upstream: ftp://x}\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(upstream(), Some(b.to_string()), "kept");
}

/// A backend whose answers take `delay`.
async fn slow_backend(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"slow done"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn sigterm_refuses_new_connections_finishes_requests_in_flight_and_closes_idle_ones() {
    let (slow, quick) = (
        slow_backend(Duration::from_millis(1500)).await,
        backend().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        format!(
            "routes:\n{}{}",
            route("drain.example.test", slow, None),
            route("quick.example.test", quick, None)
        ),
    )
    .unwrap();
    let (port, admin) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_siesta"))
        .args(["proxy", "--workers", "1", "--drain-timeout", "10s"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{admin}"))
        .arg("--routes")
        .arg(&routes)
        // No cluster: routes file only.
        .env_remove("KUBECONFIG")
        .env("HOME", dir.path())
        .env("SIESTA_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_err() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An idle keep-alive connection, and one with a slow request in flight.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /quick HTTP/1.1\r\nHost: quick.example.test\r\n\r\n")
        .await
        .unwrap();
    let mut busy = TcpStream::connect(addr).await.unwrap();
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: drain.example.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "new connections are refused while draining"
    );
    // The idle keep-alive connection is closed.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed")
        .unwrap();
    // The request in flight is answered, then its connection closes.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), busy.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("slow done"), "{answer}");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the proxy exits once drained")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn held_requests_with_bodies_share_one_budget_and_the_held_body_arrives_whole() {
    let kube = client().await;
    let ns = namespace(&kube, "bodies", "asleep", &[]).await;
    let (b, _) = scripted().await;
    let limits = ProxyLimits {
        // Room for one held request with a body.
        max_held_body_bytes: siesta::config::HELD_BODY_RESERVE,
        ..ProxyLimits::default()
    };
    let p = start_proxy(
        &format!("routes:\n{}", route("bodies.example.test", b, Some(&ns))),
        limits,
        Some(kube.clone()),
    )
    .await;
    let body = vec![7u8; 100 * 1024];
    let post = |body: Vec<u8>| {
        let mut req = format!(
            "POST /sum HTTP/1.1\r\nHost: bodies.example.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend(body);
        req
    };
    let addr = p.addr;
    let first = {
        let req = post(body.clone());
        tokio::spawn(async move { raw(addr, &req).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.proxy.held(&ns), 1);
    // A second held body is past the budget: 503 with Retry-After, at once.
    let second = raw(p.addr, &post(vec![1u8; 10])).await;
    assert!(second.starts_with("HTTP/1.1 503"), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("retry-after"),
        "{second}"
    );
    // A request without a body still waits.
    let third = tokio::spawn(async move { get(addr, "bodies.example.test", "/plain", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(p.proxy.held(&ns), 2);
    set_state(&kube, &ns, "awake").await;
    let first = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .unwrap()
        .unwrap();
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    assert!(
        first.ends_with(&format!("len={} sum={sum}", body.len())),
        "the held body reached the backend whole: {first}"
    );
    let (status, _, text) = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status, text.as_str()), (StatusCode::OK, "/plain"));
    remove_namespace(&kube, &ns).await;
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_is_cut_off_while_others_are_served() {
    // Half a body, then nothing: on either path the request is given up 30 s
    // after the last byte (the fast path closes; hyper's path answers 408),
    // so a stalled body cannot keep its slot and an upstream connection.
    let (p, _) = fronted_scripted().await;
    let mut stalled = TcpStream::connect(p.addr).await.unwrap();
    stalled
        .write_all(
            b"POST /sum HTTP/1.1\r\nHost: app.example.test\r\nContent-Length: 100\r\n\r\nhalf",
        )
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let other = raw(
        p.addr,
        b"GET /drop HTTP/1.1\r\nHost: app.example.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stalled.read_to_end(&mut out))
        .await
        .expect("the stalled request is given up")
        .ok();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(29) && waited < Duration::from_secs(45),
        "given up after {waited:?}"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answer_is_let_go_and_so_is_the_upstream() {
    // A backend that answers with an endless body and notes when its
    // connection is dropped: the proxy gave up the request.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (gone_tx, mut gone) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let gone = gone_tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_request(&mut s, &mut buf).await.is_none() {
                    return;
                }
                let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n";
                let chunk = vec![b'z'; 64 * 1024];
                let mut ok = s.write_all(head).await.is_ok();
                while ok {
                    ok = s.write_all(&chunk).await.is_ok();
                }
                let _ = gone.send(tokio::time::Instant::now());
            });
        }
    });
    let p = start_proxy(
        &format!("routes:\n{}", route("endless.example.test", backend, None)),
        ProxyLimits::default(),
        None,
    )
    .await;
    let mut reader = TcpStream::connect(p.addr).await.unwrap();
    reader
        .write_all(b"GET /endless HTTP/1.1\r\nHost: endless.example.test\r\n\r\n")
        .await
        .unwrap();
    // It reads the head and a little, then nothing.
    let mut first = [0u8; 4096];
    let n = reader.read(&mut first).await.unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );
    let started = tokio::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(60), gone.recv())
        .await
        .expect("the upstream connection is let go")
        .unwrap();
    let waited = ended - started;
    assert!(
        waited >= Duration::from_secs(29) && waited < Duration::from_secs(45),
        "let go after {waited:?}"
    );
    // The client's connection was closed too: what was sent drains, then it ends.
    let mut rest = Vec::new();
    let drained =
        tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut rest)).await;
    assert!(drained.is_ok(), "the client connection ends");
}
