//! The proxy as an attacker meets it: raw bytes on sockets against a proxy on
//! 127.0.0.1 (attackers bind 127.0.0.2 and up), in front of a backend that
//! records the raw requests it receives. Each test asserts what the upstream
//! received and what a second, honest client sees. `make test` runs this file
//! with the HTTP/1.1 fast path and again with every request through hyper
//! (`SIESTA_HTTP1_FAST_PATH=false`): both must hold.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siesta::config::ProxyLimits;
use siesta::metrics::Metrics;
use siesta::proxy::{self, Options, Running, routes::parse_routes};
use siesta_test_kit::{fast_path, statuses};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// One request as the backend read it off its socket.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A backend that records every request and answers `<name> <target>` with a
/// length, except for targets starting `/answer/`, whose answer head is the
/// rest of the target's script (see `scripted_answer`).
async fn recording_backend(name: &'static str) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(req) = read_one(&mut s, &mut buf).await {
                    seen.lock().unwrap().push(req.clone());
                    let answer = scripted_answer(name, &req);
                    if s.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, log)
}

/// The answer to a recorded request.
fn scripted_answer(name: &str, req: &Seen) -> Vec<u8> {
    match req.target.as_str() {
        // An answer that names its own length in Connection.
        "/answer/connection-length" => {
            b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello".to_vec()
        }
        // Chunks and a length that disagree: a client reading by the length
        // would take the rest of the body for a second answer.
        "/answer/chunked-and-length" => {
            let body = format!("hello{POISON}");
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
            .into_bytes()
        }
        // A switch nobody asked for.
        "/answer/101" => {
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nRAW-TUNNEL-BYTES".to_vec()
        }
        target => {
            let text = format!("{name} {} {target}", req.method);
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len()).into_bytes()
        }
    }
}

/// One request off the socket: the head parsed as an origin server would,
/// the body by its Content-Length or chunks (decoded).
async fn read_one(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let (head_len, method, target, headers) = loop {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut h);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let headers = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect::<Vec<_>>();
            break (n, req.method?.to_string(), req.path?.to_string(), headers);
        }
        fill(s, buf).await?;
    };
    buf.drain(..head_len);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let line = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break buf.drain(..i + 2).collect::<Vec<u8>>();
                }
                fill(s, buf).await?;
            };
            let size = String::from_utf8_lossy(&line[..line.len() - 2]);
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            while buf.len() < size + 2 {
                fill(s, buf).await?;
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(len) = get("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        while buf.len() < len {
            fill(s, buf).await?;
        }
        body = buf.drain(..len).collect();
    }
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = s.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
    buf.extend_from_slice(&chunk[..n]);
    Some(())
}

async fn start(routes: &str, limits: ProxyLimits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = Options {
        routes: Some(parse_routes(routes).unwrap()),
        limits,
        http1_fast_path: fast_path(),
        ..Options::default()
    };
    proxy::start(listener, options, None).await.unwrap()
}

/// A proxy routing `app.test` to `upstream`, with the fast path or without.
async fn proxy_with(upstream: SocketAddr, http1_fast_path: bool) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let routes = format!("routes:\n  - {{host: app.test, upstream: 'http://{upstream}'}}\n");
    let options = Options {
        routes: Some(parse_routes(&routes).unwrap()),
        http1_fast_path,
        ..Options::default()
    };
    proxy::start(listener, options, None).await.unwrap()
}

/// A proxy routing `app.test` to one recording backend.
async fn one_backend() -> (Running, Log) {
    let (b, log) = recording_backend("app").await;
    let p = start(
        &format!("routes:\n  - {{host: app.test, upstream: 'http://{b}'}}\n"),
        ProxyLimits::default(),
    )
    .await;
    (p, log)
}

/// A connection from `ip` (an attacker's address in 127.0.0.0/8).
async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Send `bytes` from `ip`, then read what comes back until the proxy closes
/// or `wait` passes.
async fn exchange(ip: &str, to: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = connect_from(ip, to).await;
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// An attacker's bytes from 127.0.0.2: what comes back within 700 ms.
async fn as_attacker(to: SocketAddr, bytes: &[u8]) -> String {
    exchange("127.0.0.2", to, bytes, Duration::from_millis(700)).await
}

/// An honest client's GET of `target` on a fresh connection: the answer text.
async fn honest_get(to: SocketAddr, target: &str) -> String {
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: app.test\r\nCookie: session=victim\r\nConnection: close\r\n\r\n"
    );
    exchange("127.0.0.1", to, req.as_bytes(), Duration::from_secs(5)).await
}

// ---------- request smuggling ----------

/// An answer hidden in a body, for the client to misread.
const POISON: &str = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON";

/// A body that is itself a request, for the upstream to misread.
const SMUGGLED: &str = "GET /admin HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 10.6.6.6\r\n\r\n";

#[tokio::test]
async fn connection_naming_a_framing_header_cannot_smuggle_a_request() {
    let (p, log) = one_backend().await;
    for connection in [
        "content-length",
        "close, content-length",
        "Content-Length, keep-alive",
        "host, content-length",
    ] {
        let attack = format!(
            "POST /form HTTP/1.1\r\nHost: app.test\r\nConnection: {connection}\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
            SMUGGLED.len()
        );
        let text = as_attacker(p.addr, attack.as_bytes()).await;
        assert_eq!(statuses(&text), [200], "{connection}: one answer: {text}");
        // The next client is served its own answer, not the attacker's.
        let honest = honest_get(p.addr, "/victim").await;
        assert!(
            honest.ends_with("app GET /victim"),
            "{connection}: {honest}"
        );
    }
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter().all(|r| r.target != "/admin"),
        "the upstream never read the body as a request: {seen:#?}"
    );
    let posts: Vec<_> = seen.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 4);
    for post in posts {
        assert_eq!(
            post.body,
            SMUGGLED.as_bytes(),
            "the body arrives whole, as a body"
        );
        assert_eq!(
            post.header("host"),
            Some("app.test"),
            "Host is never stripped"
        );
        assert_eq!(post.header("x-forwarded-for"), Some("127.0.0.2"));
    }
    let victims = seen.iter().filter(|r| r.target == "/victim").count();
    assert_eq!(victims, 4, "every honest request reached the upstream once");
}

#[tokio::test]
async fn connection_host_never_sends_a_request_without_host() {
    let (p, log) = one_backend().await;
    let text = exchange(
        "127.0.0.2",
        p.addr,
        b"GET /h HTTP/1.1\r\nHost: app.test\r\nConnection: host\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(statuses(&text), [200], "{text}");
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("host"), Some("app.test"));
}

#[tokio::test]
async fn an_answer_naming_its_length_in_connection_keeps_its_length() {
    let (p, _) = one_backend().await;
    // Two pipelined requests on one client connection: the first answer must
    // keep its length, so the second is not glued to it.
    let text = exchange(
        "127.0.0.1",
        p.addr,
        b"GET /answer/connection-length HTTP/1.1\r\nHost: app.test\r\n\r\n\
          GET /next HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(statuses(&text), [200, 200], "{text}");
    let first = text.split("HTTP/1.1 ").nth(1).unwrap().to_ascii_lowercase();
    assert!(first.contains("content-length: 5\r\n"), "{text}");
    assert!(first.ends_with("\r\n\r\nhello"), "{text}");
    assert!(text.ends_with("app GET /next"), "{text}");
}

#[tokio::test]
async fn an_answer_with_chunks_and_a_length_reaches_the_client_by_its_chunks() {
    // RFC 9112 6.3: the chunks frame the answer and the proxy drops the
    // length, on both paths; a client never gets the length with the body.
    let (p, _) = one_backend().await;
    let text = exchange(
        "127.0.0.1",
        p.addr,
        b"GET /answer/chunked-and-length HTTP/1.1\r\nHost: app.test\r\n\r\n\
          GET /next HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let first = text
        .split("HTTP/1.1 200 OK")
        .nth(1)
        .unwrap()
        .to_ascii_lowercase();
    assert!(!first.contains("content-length: 5"), "{text:?}");
    assert!(first.contains("transfer-encoding: chunked"), "{text:?}");
    assert!(
        text.contains(&format!("hello{POISON}")),
        "the whole body, as a body: {text:?}"
    );
    assert!(text.ends_with("app GET /next"), "{text:?}");
}

#[tokio::test]
async fn a_malformed_chunked_body_is_a_400_and_nothing_of_it_is_delivered() {
    let (p, log) = one_backend().await;
    for bad in [
        // a chunk size past u64
        "ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        // a bare LF after the size
        "3\nabc\r\n0\r\n\r\n",
        // no CRLF after the chunk's data
        "3\r\nabcX\r\n0\r\n\r\n",
    ] {
        let attack = format!(
            "POST /bad-chunks HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n{bad}"
        );
        let text = exchange(
            "127.0.0.2",
            p.addr,
            attack.as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(statuses(&text), [400], "{bad:?}: {text}");
        assert!(
            honest_get(p.addr, "/ok").await.ends_with("app GET /ok"),
            "{bad:?}"
        );
    }
    let seen = log.lock().unwrap().clone();
    assert!(
        seen.iter().all(|r| r.target != "/bad-chunks"),
        "no malformed body reached the upstream whole: {seen:#?}"
    );
    assert_eq!(seen.iter().filter(|r| r.target == "/ok").count(), 3);
}

#[tokio::test]
async fn conflicting_lengths_and_obsolete_framing_are_refused_not_forwarded() {
    let (p, log) = one_backend().await;
    for attack in [
        // two different lengths
        "POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
        // an obs-folded header
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-A: 1\r\n  continued\r\n\r\n",
        // two hosts
        "GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n",
    ] {
        let text = as_attacker(p.addr, attack.as_bytes()).await;
        let s = statuses(&text);
        assert!(s.first().is_some_and(|&c| c == 400), "{attack:?}: {text}");
    }
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing reached the upstream: {:#?}",
        log.lock().unwrap()
    );
    assert!(honest_get(p.addr, "/ok").await.ends_with("app GET /ok"));
}

#[tokio::test]
async fn a_length_and_chunks_go_upstream_as_chunks_alone() {
    // RFC 9112 6.1: chunks win and the length is dropped, so the upstream
    // cannot read the body by the length the attacker chose.
    let (p, log) = one_backend().await;
    let attack = format!(
        "POST /cl-te HTTP/1.1\r\nHost: app.test\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n{SMUGGLED}"
    );
    as_attacker(p.addr, attack.as_bytes()).await;
    let seen = log.lock().unwrap().clone();
    let post = seen
        .iter()
        .find(|r| r.target == "/cl-te")
        .expect("forwarded");
    assert_eq!(post.body, b"abc");
    assert_eq!(post.header("content-length"), None, "{post:?}");
    assert!(post.header("transfer-encoding").is_some(), "{post:?}");
    assert!(honest_get(p.addr, "/ok").await.ends_with("app GET /ok"));
}

// ---------- routing ----------

/// A proxy routing `app.test` to a `root` backend and `app.test/api` to an
/// `api` one, with their logs.
async fn root_and_api() -> (Running, Log, Log) {
    let (root, root_log) = recording_backend("root").await;
    let (api, api_log) = recording_backend("api").await;
    let p = start(
        &format!(
            "routes:\n  - {{host: app.test, upstream: 'http://{root}'}}\n  \
             - {{host: app.test, pathPrefix: /api, upstream: 'http://{api}'}}\n"
        ),
        ProxyLimits::default(),
    )
    .await;
    (p, root_log, api_log)
}

/// The targets a backend received, in order.
fn targets(log: &Log) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .map(|r| r.target.clone())
        .collect()
}

#[tokio::test]
async fn routing_sees_the_normalised_path_and_the_upstream_gets_it() {
    let (p, root_log, api_log) = root_and_api().await;
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let ask = |target: &str| {
            format!("GET {target} {version}\r\nHost: app.test\r\nConnection: close\r\n\r\n")
        };
        let got = |target: &str| {
            let req = ask(target);
            async move { exchange("127.0.0.1", p.addr, req.as_bytes(), Duration::from_secs(5)).await }
        };
        let text = got("/api?x=1").await;
        assert!(text.ends_with("api GET /api?x=1"), "{version}: {text}");
        let text = got("/api/../x").await;
        assert!(text.ends_with("root GET /x"), "{version}: {text}");
        let text = got("/x/%2e%2e/api/v?q=/../").await;
        assert!(text.ends_with("api GET /api/v?q=/../"), "{version}: {text}");
        let text = got("//api//v").await;
        assert!(text.ends_with("api GET /api/v"), "{version}: {text}");
        for refused in [
            "/api/..%2fx",
            "/api/..%2Fx",
            "/api/..%5cx",
            "/api\\..\\x",
            "/a%00",
        ] {
            let text = got(refused).await;
            assert_eq!(statuses(&text), [400], "{version} {refused}: {text}");
        }
    }
    assert_eq!(targets(&root_log), ["/x", "/x"]);
    assert_eq!(
        targets(&api_log),
        ["/api?x=1", "/api/v?q=/../", "/api/v"].repeat(2)
    );
}

#[tokio::test]
async fn a_fragment_is_neither_routed_nor_forwarded() {
    // A raw `#` cannot be in a request target; hyper's parser cuts it and
    // what follows, and so does every path, before routing.
    let (p, root_log, api_log) = root_and_api().await;
    for (target, answer) in [
        ("/api#/../x", "api GET /api"),
        ("/x#/../../api/y", "root GET /x"),
        ("/api/v?q#/../../x", "api GET /api/v?q"),
        ("/x#frag", "root GET /x"),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        let text = exchange("127.0.0.1", p.addr, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(text.ends_with(answer), "{target}: {text}");
    }
    assert_eq!(targets(&api_log), ["/api", "/api/v?q"]);
    assert_eq!(targets(&root_log), ["/x", "/x"]);
}

// ---------- upgrades ----------

#[tokio::test]
async fn a_101_the_client_did_not_ask_for_is_never_a_tunnel() {
    let (p, log) = one_backend().await;
    for ask in [
        "GET /answer/101 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "GET /answer/101 HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
        "GET /answer/101 HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ] {
        // After the answer, bytes for "the tunnel": a second request.
        let attack = format!("{ask}GET /after HTTP/1.1\r\nHost: app.test\r\n\r\n");
        let text = as_attacker(p.addr, attack.as_bytes()).await;
        assert!(!text.contains("RAW-TUNNEL-BYTES"), "{ask:?}: {text}");
        assert_eq!(statuses(&text).first(), Some(&502), "{ask:?}: {text}");
    }
    let seen = log.lock().unwrap().clone();
    for r in seen.iter().filter(|r| r.target == "/answer/101") {
        let upgrade = r.header("upgrade");
        assert!(
            upgrade.is_none() || upgrade == Some("websocket"),
            "only WebSocket is offered upstream: {r:?}"
        );
    }
}

// ---------- connection slots ----------

/// A proxy routing `app.test` to a recording backend, with at most `cap`
/// client connections, counting into `metrics`.
async fn capped(cap: usize, metrics: &Arc<Metrics>) -> (Running, Log) {
    let (b, log) = recording_backend("app").await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = Options {
        routes: Some(
            parse_routes(&format!(
                "routes:\n  - {{host: app.test, upstream: 'http://{b}'}}\n"
            ))
            .unwrap(),
        ),
        limits: ProxyLimits {
            max_connections: cap,
            ..ProxyLimits::default()
        },
        http1_fast_path: fast_path(),
        metrics: metrics.clone(),
        ..Options::default()
    };
    (proxy::start(listener, options, None).await.unwrap(), log)
}

/// How many times the proxy evicted a connection for a new one.
fn evictions(metrics: &Metrics) -> f64 {
    let series = "siesta_errors_total{kind=\"proxy_connection_evicted\"}";
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn slow_heads_at_the_cap_are_evicted_for_a_client_that_sends_its_head() {
    let metrics = Arc::new(Metrics::new());
    let (p, _) = capped(16, &metrics).await;
    // Slowloris from four addresses: each connection sends part of a head,
    // then a byte every 100 ms, and connects again once it is cut off.
    let attack: Vec<_> = (0..32)
        .map(|i| {
            let ip = format!("127.0.0.{}", 2 + i % 4);
            let to = p.addr;
            tokio::spawn(async move {
                loop {
                    let mut s = connect_from(&ip, to).await;
                    if s.write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Slow: ")
                        .await
                        .is_err()
                    {
                        continue;
                    }
                    while s.write_all(b"a").await.is_ok() {
                        let mut byte = [0u8; 1];
                        let read =
                            tokio::time::timeout(Duration::from_millis(100), s.read(&mut byte));
                        if let Ok(Ok(0) | Err(_)) = read.await {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(evictions(&metrics) > 0.0, "the attack never filled the cap");
    // Before, the 17th connection was closed unanswered for as long as the
    // attack went on; now each honest request takes a slow one's place.
    for i in 0..5 {
        let target = format!("/honest/{i}");
        let text = honest_get(p.addr, &target).await;
        assert!(
            text.ends_with(&format!("app GET {target}")),
            "request {i}: {text:?}"
        );
    }
    for a in attack {
        a.abort();
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_at_the_cap_make_room_for_a_new_client() {
    let metrics = Arc::new(Metrics::new());
    let (p, _) = capped(8, &metrics).await;
    // Eight connections that each made one request and then idle, kept alive.
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from("127.0.0.2", p.addr).await;
        s.write_all(b"GET /once HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        while !String::from_utf8_lossy(&buf).ends_with("app GET /once") {
            fill(&mut s, &mut buf).await.expect("answered");
        }
        idle.push(s);
    }
    // Whichever path serves keep-alive (the fast path or hyper), an idle
    // connection is evicted for the new one.
    let text = honest_get(p.addr, "/new").await;
    assert!(text.ends_with("app GET /new"), "{text:?}");
    assert_eq!(evictions(&metrics), 1.0);
}

#[tokio::test]
async fn idle_http2_connections_at_the_cap_make_room_for_a_new_client() {
    let metrics = Arc::new(Metrics::new());
    let (p, _) = capped(8, &metrics).await;
    // Eight HTTP/2 connections (the preface and SETTINGS, by prior
    // knowledge) that never open a stream, and stay open.
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut s = connect_from("127.0.0.3", p.addr).await;
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let mut buf = vec![0u8; 64];
        // The proxy's SETTINGS: the connection is HTTP/2 now.
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the server's preface")
            .unwrap();
        assert!(n >= 9 && buf[3] == 4, "a SETTINGS frame: {:?}", &buf[..n]);
        idle.push(s);
    }
    // The first honest client evicts one; the next ones take the place it
    // gives back when it closes.
    for i in 0..3 {
        let target = format!("/after-h2/{i}");
        let text = honest_get(p.addr, &target).await;
        assert!(text.ends_with(&format!("app GET {target}")), "{text:?}");
    }
    assert_eq!(evictions(&metrics), 1.0);
}

#[tokio::test]
async fn connections_serving_requests_fill_the_cap_a_new_one_is_closed_at_once_and_slots_come_back()
{
    let metrics = Arc::new(Metrics::new());
    let (p, log) = capped(3, &metrics).await;
    // Three requests in flight: their bodies (100 bytes declared) never come.
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.2", p.addr).await;
        s.write_all(b"POST /busy HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\n")
            .await
            .unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One more is closed by the proxy at once, without an answer.
    let started = tokio::time::Instant::now();
    let text = honest_get(p.addr, "/full").await;
    assert_eq!(text, "", "closed without an answer");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        evictions(&metrics),
        0.0,
        "a connection serving a request was evicted"
    );
    // A slot that is given back serves the next client.
    busy.pop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(honest_get(p.addr, "/ok").await.ends_with("app GET /ok"));
    assert!(log.lock().unwrap().iter().all(|r| r.target != "/full"));
}

// ---------- the fast path against hyper's path ----------

/// One generated request, as raw bytes.
#[derive(Clone, Debug)]
struct Case {
    method: &'static str,
    target: &'static str,
    http10: bool,
    connection: Vec<&'static str>,
    extra: Vec<&'static str>,
    framing: Framing,
    body: Vec<u8>,
    /// Head lines end with a bare LF instead of CRLF.
    bare_lf: bool,
}

#[derive(Clone, Copy, Debug)]
enum Framing {
    None,
    Length,
    LengthTwice,
    LengthConflict,
    LengthPlus,
    Chunked,
    ChunkedExt,
    ChunkedNotLast,
    LengthAndChunked,
}

impl Case {
    fn bytes(&self) -> Vec<u8> {
        let eol = if self.bare_lf { "\n" } else { "\r\n" };
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let mut head = format!(
            "{} {} {version}{eol}Host: app.test{eol}",
            self.method, self.target
        );
        if !self.connection.is_empty() {
            head += &format!("Connection: {}{eol}", self.connection.join(", "));
        }
        for h in &self.extra {
            head += &format!("{h}{eol}");
        }
        let n = self.body.len();
        let chunked = |ext: &str| {
            let mut b = Vec::new();
            if n > 0 {
                b.extend(format!("{n:x}{ext}\r\n").bytes());
                b.extend(&self.body);
                b.extend(b"\r\n");
            }
            b.extend(b"0\r\n\r\n");
            b
        };
        let (framing, body): (String, Vec<u8>) = match self.framing {
            Framing::None => (String::new(), Vec::new()),
            Framing::Length => (format!("Content-Length: {n}{eol}"), self.body.clone()),
            Framing::LengthTwice => (
                format!("Content-Length: {n}{eol}Content-Length: {n}{eol}"),
                self.body.clone(),
            ),
            Framing::LengthConflict => (
                format!("Content-Length: {n}{eol}Content-Length: {}{eol}", n + 1),
                self.body.clone(),
            ),
            Framing::LengthPlus => (format!("Content-Length: +{n}{eol}"), self.body.clone()),
            Framing::Chunked => (format!("Transfer-Encoding: chunked{eol}"), chunked("")),
            Framing::ChunkedExt => (format!("Transfer-Encoding: chunked{eol}"), chunked(";a=b")),
            Framing::ChunkedNotLast => (
                format!("Transfer-Encoding: chunked, identity{eol}"),
                chunked(""),
            ),
            Framing::LengthAndChunked => (
                format!("Content-Length: {n}{eol}Transfer-Encoding: chunked{eol}"),
                chunked(""),
            ),
        };
        let mut out = (head + &framing + eol).into_bytes();
        out.extend(body);
        out
    }
}

fn cases() -> impl proptest::strategy::Strategy<Value = Vec<Case>> {
    use proptest::prelude::*;
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS"]);
    let target = prop::sample::select(vec![
        "/",
        "/a",
        "/a?x=1",
        "/a/../b",
        "/a/%2e%2e/b",
        "//a",
        "/a/..%2fb",
        "/%61",
        "/a#/../b",
        "/a?x#/../b",
        "*",
        "http://app.test/abs",
    ]);
    let token = prop::sample::select(vec![
        "close",
        "keep-alive",
        "content-length",
        "host",
        "transfer-encoding",
        "x-a",
        "te",
        "upgrade",
        "x-forwarded-for",
    ]);
    let extra = prop::sample::select(vec![
        "X-A: 1",
        "TE: trailers",
        "X-Forwarded-For: 10.9.9.9",
        "Upgrade: h2c",
        "Expect: 100-continue",
        "X-Fold: a\r\n b",
        "Keep-Alive: timeout=5",
        "X-Bare: a\rb",
    ]);
    let framing = prop::sample::select(vec![
        Framing::None,
        Framing::Length,
        Framing::Length,
        Framing::Length,
        Framing::LengthTwice,
        Framing::LengthConflict,
        Framing::LengthPlus,
        Framing::Chunked,
        Framing::ChunkedExt,
        Framing::ChunkedNotLast,
        Framing::LengthAndChunked,
    ]);
    let hostile = (
        method.clone(),
        target,
        prop::bool::weighted(0.1),
        prop::collection::vec(token, 0..3),
        prop::collection::vec(extra, 0..2),
        framing,
        prop::collection::vec(any::<u8>(), 0..48),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(method, target, http10, connection, extra, framing, body, bare_lf)| Case {
                method,
                target,
                http10,
                connection,
                extra,
                framing,
                body,
                bare_lf,
            },
        );
    // What the fast path serves, with the Connection lists that smuggled
    // through it before: it must encode them as hyper's path does.
    let plain = (
        method,
        prop::sample::select(vec![
            "/", "/a", "/a?x=1", "/a/../b", "//a", "/%61/b", "/b#/../a",
        ]),
        prop::collection::vec(
            prop::sample::select(vec![
                "keep-alive",
                "x-a",
                "content-length",
                "host",
                "x-forwarded-for",
                "te",
            ]),
            0..3,
        ),
        prop::sample::select(vec![
            vec![],
            vec!["X-A: 1"],
            vec!["TE: trailers"],
            vec!["X-Forwarded-For: 10.9.9.9"],
        ]),
        prop::sample::select(vec![Framing::None, Framing::Length]),
        prop::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(method, target, connection, extra, framing, body)| Case {
            method,
            target,
            http10: false,
            connection,
            extra,
            framing,
            body,
            bare_lf: false,
        });
    let case = prop_oneof![3 => plain, 2 => hostile];
    // One to three pipelined requests on a connection.
    prop::collection::vec(case, 1..4)
}

/// What an upstream received, in the terms that matter: method, target,
/// framing kind and body (not chunk boundaries or header case).
fn delivered(log: &Log) -> Vec<(String, String, &'static str, Vec<u8>)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|r| {
            let kind = if r.header("transfer-encoding").is_some() {
                "chunked"
            } else if r.body.is_empty() {
                "none"
            } else {
                "length"
            };
            (r.method.clone(), r.target.clone(), kind, r.body.clone())
        })
        .collect()
}

/// Send raw bytes, read until the proxy closes or is quiet for a while.
async fn answers(to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(to).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Generous, so that a slow machine does not cut one path's answer short.
        match tokio::time::timeout(Duration::from_millis(1500), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&chunk[..n]),
            _ => return out,
        }
    }
}

/// Generated requests, adversarial framing included, go through a proxy with
/// the fast path and through one that sends everything to hyper, each in
/// front of its own recording backend: both deliver the same requests
/// (count, method, target, framing kind, body), and their clients see the
/// same statuses. A fair share of the cases must take the fast path (its
/// backend sees the client's `Host` spelling; hyper writes `host`), or the
/// comparison would prove nothing.
#[test]
fn the_fast_path_delivers_what_hyper_delivers() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (fast, fast_log, slow, slow_log) = rt.block_on(async {
        let mut both = Vec::new();
        for fast_path in [true, false] {
            let (b, log) = recording_backend("app").await;
            both.push((proxy_with(b, fast_path).await, log));
        }
        let (slow, slow_log) = both.pop().unwrap();
        let (fast, fast_log) = both.pop().unwrap();
        (fast, fast_log, slow, slow_log)
    });
    let (total, by_fast_path) = (std::cell::Cell::new(0usize), std::cell::Cell::new(0usize));
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&cases(), |mut requests| {
        // The last request asks to close, so that each case ends when the
        // proxy has answered, not at the quiet timeout.
        if let Some(last) = requests.last_mut() {
            last.connection.push("close");
        }
        let bytes: Vec<u8> = requests.iter().flat_map(Case::bytes).collect();
        let (fast_seen, slow_seen, fast_said, slow_said) = rt.block_on(async {
            fast_log.lock().unwrap().clear();
            slow_log.lock().unwrap().clear();
            let (a, b) = tokio::join!(answers(fast.addr, &bytes), answers(slow.addr, &bytes));
            (delivered(&fast_log), delivered(&slow_log), a, b)
        });
        let took_fast = fast_log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.headers.iter().any(|(n, _)| n == "Host"))
            .count();
        total.set(total.get() + requests.len());
        by_fast_path.set(by_fast_path.get() + took_fast);
        let said = |raw: &[u8]| statuses(&String::from_utf8_lossy(raw));
        proptest::prop_assert_eq!(
            &fast_seen,
            &slow_seen,
            "delivered upstream differ for {:?}",
            String::from_utf8_lossy(&bytes)
        );
        proptest::prop_assert_eq!(
            said(&fast_said),
            said(&slow_said),
            "answers differ for {:?}",
            String::from_utf8_lossy(&bytes)
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (total, by_fast_path) = (total.get(), by_fast_path.get());
    let share = by_fast_path as f64 / total as f64;
    eprintln!(
        "fast path served {by_fast_path} of {total} generated requests ({:.0} %)",
        share * 100.0
    );
    assert!(
        share >= 0.25,
        "only {by_fast_path} of {total} took the fast path"
    );
    drop((fast, slow));
}

/// A backend that answers every request with the bytes in its script, then
/// closes when the script says so.
async fn answering_backend() -> (SocketAddr, Arc<Mutex<(Vec<u8>, bool)>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script: Arc<Mutex<(Vec<u8>, bool)>> = Arc::default();
    let shared = script.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let script = shared.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while read_one(&mut s, &mut buf).await.is_some() {
                    let (bytes, close) = script.lock().unwrap().clone();
                    if s.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, script)
}

/// The final answers a client can read whole from `raw`: status and
/// decoded body, in order, up to the first that is cut or malformed.
fn final_answers(mut raw: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut h);
        let Ok(httparse::Status::Complete(n)) = resp.parse(raw) else {
            return out;
        };
        let status = resp.code.unwrap_or(0);
        let get = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        let (chunked, length) = (
            get("transfer-encoding").is_some_and(|v| v.contains("chunked")),
            get("content-length").and_then(|v| v.trim().parse::<usize>().ok()),
        );
        raw = &raw[n..];
        if status < 200 {
            continue;
        }
        let mut body = Vec::new();
        if status == 204 || status == 304 {
        } else if chunked {
            loop {
                let Some(i) = raw.windows(2).position(|w| w == b"\r\n") else {
                    return out;
                };
                let line = String::from_utf8_lossy(&raw[..i]).into_owned();
                let Ok(size) =
                    usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                else {
                    return out;
                };
                raw = &raw[i + 2..];
                if size == 0 {
                    // Trailers, up to the empty line.
                    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|e| e + 4)
                    else {
                        if raw.starts_with(b"\r\n") {
                            raw = &raw[2..];
                            break;
                        }
                        return out;
                    };
                    raw = if raw.starts_with(b"\r\n") {
                        &raw[2..]
                    } else {
                        &raw[end..]
                    };
                    break;
                }
                if raw.len() < size + 2 {
                    return out;
                }
                body.extend_from_slice(&raw[..size]);
                raw = &raw[size + 2..];
            }
        } else if let Some(len) = length {
            if raw.len() < len {
                return out;
            }
            body.extend_from_slice(&raw[..len]);
            raw = &raw[len..];
        } else {
            // Until the close.
            body.extend_from_slice(raw);
            raw = &[];
        }
        out.push((status, body));
        if raw.is_empty() {
            return out;
        }
    }
}

/// Generated upstream answers, hostile ones included (conflicting lengths,
/// Connection naming the length, chunks or another coding beside a length,
/// junk after a chunk size, bare LF in the trailers, interim answers,
/// close-delimited bodies), reach a client the
/// same way through the fast path and through hyper's path: the same final
/// answers, read whole, with the same bodies.
#[test]
fn answers_reach_the_client_the_same_way_on_both_paths() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (proxies, scripts) = rt.block_on(async {
        let (mut proxies, mut scripts) = (Vec::new(), Vec::new());
        for fast_path in [true, false] {
            let (b, script) = answering_backend().await;
            proxies.push(proxy_with(b, fast_path).await);
            scripts.push(script);
        }
        (proxies, scripts)
    });
    let status = prop::sample::select(vec!["200 OK", "404 Not Found", "204 No Content"]);
    let interim = prop::sample::select(vec!["", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"]);
    let framing = prop::sample::select(vec![
        "length",
        "length-twice",
        "length-conflict",
        "chunked",
        "chunked-ext",
        "chunked-junk",
        "chunked-trailer",
        "chunked-trailer-bare-lf",
        "chunked-not-last",
        "chunked-and-length",
        "length-and-chunked",
        "not-chunked-and-length",
        "close",
    ]);
    let connection = prop::sample::select(vec![
        "",
        "content-length",
        "close",
        "x-a",
        "transfer-encoding",
    ]);
    let strategy = (
        status,
        interim,
        framing,
        connection,
        prop::collection::vec(any::<u8>(), 1..40),
    );
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |(status, interim, framing, connection, body)| {
        let n = body.len();
        let conn = if connection.is_empty() {
            String::new()
        } else {
            format!("Connection: {connection}\r\nX-A: 1\r\n")
        };
        let chunks = |ext: &str, trailer: &str| {
            let mut b = format!("{n:x}{ext}\r\n").into_bytes();
            b.extend(&body);
            b.extend(format!("\r\n0\r\n{trailer}\r\n").bytes());
            b
        };
        let (head, payload, close): (String, Vec<u8>, bool) = match framing {
            "length" => (format!("Content-Length: {n}\r\n"), body.clone(), false),
            "length-twice" => (format!("Content-Length: {n}\r\nContent-Length: {n}\r\n"), body.clone(), false),
            "length-conflict" => (format!("Content-Length: {n}\r\nContent-Length: {}\r\n", n + 1), body.clone(), false),
            "chunked" => ("Transfer-Encoding: chunked\r\n".into(), chunks("", ""), false),
            "chunked-ext" => ("Transfer-Encoding: chunked\r\n".into(), chunks(";a=\"b c\"", ""), false),
            "chunked-junk" => ("Transfer-Encoding: chunked\r\n".into(), chunks("junk", ""), false),
            "chunked-trailer" => ("Transfer-Encoding: chunked\r\nTrailer: x-t\r\n".into(), chunks("", "x-t: 1\r\n"), false),
            "chunked-trailer-bare-lf" => ("Transfer-Encoding: chunked\r\n".into(), chunks("", "x-t: 1\nx-u: 2\r\n"), false),
            "chunked-not-last" => ("Transfer-Encoding: chunked, identity\r\n".into(), body.clone(), true),
            "chunked-and-length" => (format!("Transfer-Encoding: chunked\r\nContent-Length: {}\r\n", n / 2), chunks("", ""), false),
            "length-and-chunked" => (format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", n + 7), chunks("", ""), false),
            "not-chunked-and-length" => (format!("Transfer-Encoding: gzip\r\nContent-Length: {}\r\n", n / 2), body.clone(), true),
            _ => (String::new(), body.clone(), true),
        };
        let mut answer = format!("{interim}HTTP/1.1 {status}\r\n{conn}{head}\r\n").into_bytes();
        answer.extend(payload);
        let ask = b"GET /x HTTP/1.1\r\nHost: app.test\r\n\r\nGET /y HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
        let got: Vec<Vec<(u16, Vec<u8>)>> = rt.block_on(async {
            let mut got = Vec::new();
            for (p, script) in proxies.iter().zip(&scripts) {
                *script.lock().unwrap() = (answer.clone(), close);
                // The proxy's own 502 and a cut answer are the same refusal
                // (the generator never makes the upstream answer 502).
                let whole = final_answers(&answers(p.addr, ask).await);
                got.push(whole.into_iter().take_while(|a| a.0 != 502).collect());
            }
            got
        });
        // A body that runs to the close ends the fast path's client
        // connection too; hyper frames it in chunks and goes on. So there the
        // fast path's answers are the first of hyper's, and at least one.
        let (fast, hyper) = (&got[0], &got[1]);
        let compared = if close && !hyper.is_empty() {
            prop_assert!(!fast.is_empty());
            &hyper[..fast.len().min(hyper.len())]
        } else {
            &hyper[..]
        };
        prop_assert_eq!(
            fast,
            compared,
            "fast path vs hyper for {:?}",
            String::from_utf8_lossy(&answer)
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    drop(proxies);
}
