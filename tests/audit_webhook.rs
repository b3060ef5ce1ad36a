//! The audit webhook as an exposed API server would reach it: TLS from
//! certificate files, bearer-token and client-certificate authentication,
//! and clients too slow to send their request. In-process (the webhook and a
//! real TLS client on 127.0.0.1), so no cluster is needed; certificates are
//! made fresh by each test.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::ServerName;
use siesta::activity::{AllAwake, Reporter};
use siesta::audit::admission::BodyBudget;
use siesta::audit::webhook::{Settings, Webhook};
use siesta::audit::{Ingest, Rules};
use siesta::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A CA that signs certificates into files of one directory.
struct Ca {
    name: &'static str,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl Ca {
    fn new(name: &'static str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert_pem = params.self_signed(&key).unwrap().pem();
        Ca {
            name,
            issuer: Issuer::new(params, key),
            cert_pem,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses): (cert, key) PEM.
    fn sign(&self, common_name: &str, names: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.crt", self.name));
        std::fs::write(&path, &self.cert_pem).unwrap();
        path
    }
}

/// A webhook on 127.0.0.1 with a server certificate for that address,
/// signed by `ca`; the test's settings on top.
struct Served {
    addr: SocketAddr,
    reporter: Reporter,
    _dir: tempfile::TempDir,
}

async fn serve(ca: &Ca, settings: impl FnOnce(&Path) -> Settings) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.sign("siesta-audit", &["127.0.0.1"]);
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let settings = Settings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tls_cert: Some(cert_path),
        tls_key: Some(key_path),
        ..settings(dir.path())
    };
    let (addr, reporter) = start(settings).await;
    Served {
        addr,
        reporter,
        _dir: dir,
    }
}

async fn start(settings: Settings) -> (SocketAddr, Reporter) {
    let (addr, reporter, _) = start_with_budget(settings).await;
    (addr, reporter)
}

/// Like [`start`], and the webhook's count of body bytes in flight.
async fn start_with_budget(settings: Settings) -> (SocketAddr, Reporter, BodyBudget) {
    start_with_metrics(settings, Arc::default()).await
}

/// Like [`start_with_budget`], counting into `metrics`.
async fn start_with_metrics(
    settings: Settings,
    metrics: Arc<Metrics>,
) -> (SocketAddr, Reporter, BodyBudget) {
    let reporter = Reporter::new(Arc::new(AllAwake), None, None, metrics);
    let ingest = Ingest::new(Rules::default(), reporter.clone());
    let webhook = Webhook::bind(&settings).await.expect("webhook binds");
    let addr = webhook.local_addr().unwrap();
    let budget = webhook.body_budget();
    tokio::spawn(webhook.serve(ingest));
    (addr, reporter, budget)
}

fn token_file(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path
}

/// How a test client presents itself: which CA it trusts, and its own certificate.
struct Client {
    trusts: String,
    cert: Option<(String, String)>,
}

impl Client {
    fn trusting(ca: &Ca) -> Client {
        Client {
            trusts: ca.cert_pem.clone(),
            cert: None,
        }
    }

    fn with_cert(mut self, cert: (String, String)) -> Client {
        self.cert = Some(cert);
        self
    }

    fn config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.trusts.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        match &self.cert {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    rustls_pemfile::certs(&mut cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap(),
                    rustls_pemfile::private_key(&mut key.as_bytes())
                        .unwrap()
                        .unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        }
    }

    /// POST `body` to `/audit` over a fresh TLS connection: the status, or
    /// what failed (the handshake, or the connection before an answer).
    async fn post(
        &self,
        addr: SocketAddr,
        token: Option<&str>,
        body: String,
    ) -> Result<u16, String> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.config()));
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("http: {e}"))?;
        tokio::spawn(conn);
        let mut request = http::Request::post(format!("https://{addr}/audit"))
            .header(http::header::HOST, addr.to_string())
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = sender
            .send_request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .map_err(|e| format!("request: {e} ({:?})", std::error::Error::source(&e)))?;
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        Ok(status)
    }
}

/// An EventList with one request a person made in `namespace`.
fn event_list(namespace: &str) -> String {
    let id = format!("{namespace}-{}", std::process::id());
    list(&[audit_event(&id, namespace, "ResponseComplete", Some(200))])
}

/// An EventList of these items, as the API server's webhook posts it.
fn list(items: &[String]) -> String {
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
}

/// One stage of request `id`, alice listing pods in `namespace`; `code` is
/// the answer (none at `RequestReceived`).
fn audit_event(id: &str, namespace: &str, stage: &str, code: Option<u16>) -> String {
    let status = code.map_or(String::new(), |c| {
        format!(r#""responseStatus":{{"metadata":{{}},"code":{c}}},"#)
    });
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"{stage}","requestURI":"/api/v1/namespaces/{namespace}/pods","verb":"list","user":{{"username":"alice","groups":["system:authenticated"]}},"userAgent":"kubectl/v1.36.3","objectRef":{{"resource":"pods","namespace":"{namespace}","apiVersion":"v1"}},{status}"requestReceivedTimestamp":"2026-01-02T03:04:05Z","stageTimestamp":"2026-01-02T03:04:05Z"}}"#
    )
}

/// What a client sees of an answer: the status and its `Retry-After`.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
}

/// POST `body` to `/audit` over plain HTTP from the local address `from`
/// (any of 127/8), on a fresh connection; `None` when the connection ended
/// without an answer.
async fn post_from(from: [u8; 4], addr: SocketAddr, body: &str) -> Option<Answer> {
    post_with(from, addr, "", body).await
}

/// [`post_from`] with `extra` header lines (each ending in CRLF).
async fn post_with(from: [u8; 4], addr: SocketAddr, extra: &str, body: &str) -> Option<Answer> {
    post_after(Duration::ZERO, from, addr, extra, body).await
}

/// [`post_with`], the head sent `delay` after the connection is made (as
/// an API server's comes a TLS handshake or a busy moment later).
async fn post_after(
    delay: Duration,
    from: [u8; 4],
    addr: SocketAddr,
    extra: &str,
    body: &str,
) -> Option<Answer> {
    let mut s = connect_from(from, addr).await.ok()?;
    tokio::time::sleep(delay).await;
    let head = format!(
        "POST /audit HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let out = String::from_utf8_lossy(&out);
    let (head, _) = out.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let retry_after = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().to_string())
    });
    Some(Answer {
        status,
        retry_after,
    })
}

/// A TCP connection from the local address `from` (Linux routes all of
/// 127/8 to the loopback interface).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(addr).await
}

/// The API server's address in these tests, and an attacker's.
const LEGIT: [u8; 4] = [127, 0, 0, 1];
const ATTACKER: [u8; 4] = [127, 0, 0, 2];

fn ok() -> Option<Answer> {
    Some(Answer {
        status: 200,
        retry_after: None,
    })
}

/// The namespace's activity shows up (the worker reports off the request path).
async fn activity_seen(reporter: &Reporter, namespace: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if reporter.seen(namespace).is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Enough time for the worker to have reported anything it was going to.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn over_tls_a_bearer_token_is_required_and_only_the_right_one_counts() {
    let ca = Ca::new("audit-ca");
    let served = serve(&ca, |dir| Settings {
        token_file: Some(token_file(dir, "s3cret")),
        ..Settings::default()
    })
    .await;
    let client = Client::trusting(&ca);

    let ns = "tls-no-credentials";
    assert_eq!(
        client.post(served.addr, None, event_list(ns)).await,
        Ok(401)
    );
    let ns_wrong = "tls-wrong-token";
    assert_eq!(
        client
            .post(served.addr, Some("guess"), event_list(ns_wrong))
            .await,
        Ok(401)
    );
    settle().await;
    assert!(served.reporter.seen(ns).is_none(), "refused, yet counted");
    assert!(
        served.reporter.seen(ns_wrong).is_none(),
        "refused, yet counted"
    );

    let ns_right = "tls-right-token";
    assert_eq!(
        client
            .post(served.addr, Some("s3cret"), event_list(ns_right))
            .await,
        Ok(200)
    );
    assert!(activity_seen(&served.reporter, ns_right).await);
    let seen = served.reporter.seen(ns_right).unwrap();
    assert_eq!(seen.detail.as_deref(), Some("api alice list pods"));
}

#[tokio::test]
async fn a_client_certificate_from_the_configured_ca_is_accepted_and_another_cas_is_refused_at_the_handshake()
 {
    let ca = Ca::new("audit-ca");
    let clients = Ca::new("audit-clients");
    let served = serve(&ca, |dir| Settings {
        client_ca: Some(clients.write(dir)),
        ..Settings::default()
    })
    .await;

    // No certificate and no token: the handshake passes (a token could
    // follow), the request does not.
    let ns = "tls-no-cert";
    assert_eq!(
        Client::trusting(&ca)
            .post(served.addr, None, event_list(ns))
            .await,
        Ok(401)
    );

    let ns_good = "tls-good-cert";
    let good = Client::trusting(&ca).with_cert(clients.sign("kube-apiserver", &[]));
    assert_eq!(
        good.post(served.addr, None, event_list(ns_good)).await,
        Ok(200)
    );
    assert!(activity_seen(&served.reporter, ns_good).await);

    let ns_rogue = "tls-rogue-cert";
    let rogue_ca = Ca::new("rogue");
    let rogue = Client::trusting(&ca).with_cert(rogue_ca.sign("kube-apiserver", &[]));
    let refused = rogue.post(served.addr, None, event_list(ns_rogue)).await;
    // TLS 1.3 finishes the client's side before the server checks the
    // certificate, so the refusal (an alert) can surface at the first read.
    let err = refused.expect_err("a certificate from another CA is refused");
    assert!(err.contains("UnknownCA"), "{err}");
    settle().await;
    assert!(served.reporter.seen(ns).is_none());
    assert!(served.reporter.seen(ns_rogue).is_none());
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_servers_ca_cannot_connect() {
    let ca = Ca::new("audit-ca");
    let served = serve(&ca, |dir| Settings {
        token_file: Some(token_file(dir, "s3cret")),
        ..Settings::default()
    })
    .await;
    let err = Client::trusting(&Ca::new("other"))
        .post(served.addr, Some("s3cret"), event_list("tls-untrusted"))
        .await
        .expect_err("the server's certificate is not trusted");
    assert!(err.starts_with("handshake"), "{err}");
}

#[tokio::test]
async fn an_exposed_address_needs_tls_and_authentication_together() {
    let ca = Ca::new("audit-ca");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.sign("siesta-audit", &["127.0.0.1"]);
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let exposed = Settings {
        listen: Some("0.0.0.0:0".parse().unwrap()),
        ..Settings::default()
    };
    let tls_only = Settings {
        tls_cert: Some(cert_path.clone()),
        tls_key: Some(key_path.clone()),
        ..exposed.clone()
    };
    let token_only = Settings {
        token_file: Some(token_file(dir.path(), "s3cret")),
        ..exposed.clone()
    };
    for (what, settings) in [
        ("plain HTTP, no auth", exposed.clone()),
        ("TLS without auth", tls_only.clone()),
        ("a token over plain HTTP", token_only.clone()),
    ] {
        let err = Webhook::bind(&settings)
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: bound"));
        assert_eq!(
            err.to_string(),
            format!(
                "config: audit listener 0.0.0.0:0 is not loopback: it needs TLS (--audit-tls-cert, --audit-tls-key) \
                 and authentication (--audit-token-file or --audit-client-ca)"
            ),
            "{what}"
        );
    }
    // Both together bind.
    let both = Settings {
        token_file: token_only.token_file.clone(),
        ..tls_only
    };
    Webhook::bind(&both).await.expect("TLS and a token bind");
}

/// Send `bytes` one at a time, `every` apart, until the server stops the
/// connection; meanwhile read what it answers. (answer, bytes sent, time to close)
async fn trickle(
    addr: SocketAddr,
    head: &[u8],
    bytes: &[u8],
    every: Duration,
) -> (String, usize, Duration) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    write.write_all(head).await.unwrap();
    let bytes = bytes.to_vec();
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let sent = sent.clone();
        async move {
            for b in bytes {
                tokio::time::sleep(every).await;
                if write.write_all(&[b]).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut answer = Vec::new();
    let read_all =
        tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer)).await;
    let closed_after = started.elapsed();
    assert!(read_all.is_ok(), "the server never closed the connection");
    writer.abort();
    let sent = sent.load(Ordering::Relaxed);
    (
        String::from_utf8_lossy(&answer).into_owned(),
        sent,
        closed_after,
    )
}

/// Plain HTTP on 127.0.0.1, an ephemeral port, the default limits.
fn loopback() -> Settings {
    Settings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Settings::default()
    }
}

fn slow_settings() -> Settings {
    Settings {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..loopback()
    }
}

#[tokio::test]
async fn a_client_sending_its_headers_a_byte_at_a_time_is_disconnected_after_the_header_timeout() {
    let (addr, _) = start(slow_settings()).await;
    let slow_header = [b"x-slow: ".as_slice(), &[b'a'; 60]].concat();
    let (answer, sent, closed_after) = trickle(
        addr,
        b"POST /audit HTTP/1.1\r\nhost: x\r\n",
        &slow_header,
        Duration::from_millis(200),
    )
    .await;
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}"
    );
    assert!(sent < slow_header.len(), "the whole head got through");
    assert!(!answer.contains(" 200 "), "{answer}");
}

#[tokio::test]
async fn a_body_sent_too_slowly_is_cut_off_with_408_after_the_body_timeout() {
    let (addr, reporter) = start(slow_settings()).await;
    let body = event_list("slow-body");
    let head = format!(
        "POST /audit HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let (answer, sent, closed_after) = trickle(
        addr,
        head.as_bytes(),
        body.as_bytes(),
        Duration::from_millis(200),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}"
    );
    assert!(sent < body.len());
    settle().await;
    assert!(reporter.seen("slow-body").is_none());
}

#[tokio::test]
async fn a_client_within_the_timeouts_is_served() {
    let (addr, reporter) = start(slow_settings()).await;
    let body = event_list("prompt-body");
    let head = format!(
        "POST /audit HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    // Slow, but inside both timeouts: the body in two halves 300 ms apart.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let (a, b) = body.as_bytes().split_at(body.len() / 2);
    s.write_all(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(activity_seen(&reporter, "prompt-body").await);
}

#[tokio::test]
async fn a_refused_request_counts_nowhere_whatever_order_its_stages_come_in() {
    let (addr, reporter) = start(loopback()).await;
    // Mallory may not list pods in these namespaces: the API server answers
    // 403, but wrote RequestReceived first (a policy that keeps that stage).
    let (first, second, allowed) = ("stages-403-after", "stages-403-before", "stages-200");
    let received = |id: &str, ns: &str| audit_event(id, ns, "RequestReceived", None);
    let refused = |id: &str, ns: &str| audit_event(id, ns, "ResponseComplete", Some(403));
    let bodies = [
        list(&[received("r1", first), refused("r1", first)]),
        list(&[refused("r2", second)]),
        list(&[received("r2", second)]),
        // Then a request that was allowed, in stages spread over two batches.
        list(&[received("r3", allowed)]),
        list(&[
            audit_event("r3", allowed, "ResponseStarted", Some(200)),
            audit_event("r3", allowed, "ResponseComplete", Some(200)),
        ]),
    ];
    for body in bodies {
        assert_eq!(post_from(LEGIT, addr, &body).await, ok());
    }
    // One worker takes the batches in order: once the last is reported,
    // the refused ones have been judged.
    assert!(activity_seen(&reporter, allowed).await);
    assert_eq!(reporter.seen(first), None, "a 403 woke {first}");
    assert_eq!(reporter.seen(second), None, "a 403 woke {second}");
}

/// Whether the server has closed `s` (or reset it), without waiting.
fn closed(s: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match s.try_read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// The API server's three batches, each answered 200 within 3 s.
async fn three_batches_get_through(addr: SocketAddr, reporter: &Reporter, prefix: &str) {
    for i in 0..3 {
        let ns = format!("{prefix}-{i}");
        let answer = tokio::time::timeout(
            Duration::from_secs(3),
            post_from(LEGIT, addr, &event_list(&ns)),
        )
        .await;
        assert_eq!(answer.ok(), Some(ok()), "batch {i}");
        assert!(activity_seen(reporter, &ns).await, "batch {i} not counted");
    }
}

#[tokio::test]
async fn idle_connections_and_a_reconnect_loop_from_one_address_do_not_keep_the_api_server_out() {
    let (addr, reporter) = start(loopback()).await;
    // More idle connections than there are slots in all (256): only the
    // address's share (32) is held, the rest are closed at once.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect_from(ATTACKER, addr).await.unwrap());
    }
    let reconnecting: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                loop {
                    match connect_from(ATTACKER, addr).await {
                        Ok(mut s) => {
                            let _ = s.read(&mut [0u8; 1]).await;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
            })
        })
        .collect();
    // Closed at once, so well inside the 3 s the held ones have for a head.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut open = idle.len();
    while open > 32 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        open = idle.iter().filter(|s| !closed(s)).count();
    }
    assert_eq!(open, 32, "connections held by one address");
    // Past its limit a request is not read at all: no answer, nothing counted.
    let unread = post_from(ATTACKER, addr, &event_list("over-the-limit")).await;
    assert_eq!(unread, None);

    let started = Instant::now();
    three_batches_get_through(addr, &reporter, "beside-idle").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(reporter.seen("over-the-limit"), None);
    for task in reconnecting {
        task.abort();
    }
}

/// `VmRSS` of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse::<usize>().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Held by the tests that flood a webhook from many addresses: one of them
/// measures the process's RSS, and the other's crowd needs the cores to
/// churn, so they do not run beside each other.
static FLOODS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn bodies_held_unfinished_from_many_addresses_stay_within_the_budget_and_the_api_server_gets_through_after()
 {
    let _alone = FLOODS.lock().await;
    const MIB: usize = 1024 * 1024;
    let (addr, reporter, budget) = start_with_budget(Settings {
        max_body: 4 * MIB,
        max_bodies_bytes: 8 * MIB,
        ..loopback()
    })
    .await;
    assert_eq!(budget.limit(), 8 * MIB);
    let before = rss();
    // Eight addresses, four connections each: 4 MiB declared, 3 MiB sent at
    // once, then a byte every 100 ms. Unbounded, that is 96 MiB held.
    static CHUNK: [u8; 64 * 1024] = [b' '; 64 * 1024];
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut attackers = Vec::new();
    for host in 2..=9u8 {
        for _ in 0..4 {
            let mut stopped = stopped.clone();
            attackers.push(tokio::spawn(async move {
                let mut s = connect_from([127, 0, 0, host], addr).await.unwrap();
                let head = format!(
                    "POST /audit HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
                    4 * MIB
                );
                s.write_all(head.as_bytes()).await.unwrap();
                for _ in 0..(3 * MIB / CHUNK.len()) {
                    if s.write_all(&CHUNK).await.is_err() {
                        return;
                    }
                }
                while !*stopped.borrow() {
                    tokio::select! {
                        _ = stopped.changed() => {}
                        () = tokio::time::sleep(Duration::from_millis(100)) => {
                            if s.write_all(b" ").await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }));
        }
    }
    let mut most_held = 0;
    let mut most_rss = before;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        most_held = most_held.max(budget.held());
        most_rss = most_rss.max(rss());
    }
    assert!(most_held <= 8 * MIB, "{most_held} bytes held");
    assert!(
        most_held > 4 * MIB,
        "the attack never filled the budget: {most_held}"
    );
    // What is held is what was sent, plus room for the rest of the process
    // (unbounded, the 32 bodies add 96 MiB).
    let grew = most_rss.saturating_sub(before);
    assert!(grew < 8 * MIB + 16 * MIB, "RSS grew {} MiB", grew / MIB);

    // Meanwhile the API server is either served or told when to retry.
    for i in 0..3 {
        let answer = tokio::time::timeout(
            Duration::from_secs(3),
            post_from(LEGIT, addr, &event_list(&format!("under-attack-{i}"))),
        )
        .await
        .expect("answered in time")
        .expect("answered");
        assert!(
            answer.status == 200
                || (answer.status == 429 && answer.retry_after.as_deref() == Some("1")),
            "{answer:?}"
        );
    }

    // The attackers go: what they held is given back, and a retry is served.
    stop.send(true).unwrap();
    for a in attackers {
        let _ = a.await;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while budget.held() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(budget.held(), 0);
    three_batches_get_through(addr, &reporter, "after-attack").await;
}

/// The value of the series `series` (`name{labels}`) in `metrics`, or 0.
fn sample(metrics: &Metrics, series: &str) -> f64 {
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// From each of `hosts` (127.0.0.N), as many connections as one address may
/// hold (32), each in a loop that connects again as soon as the webhook
/// closes it. The loops run on a runtime of their own, on their own
/// threads, so they reconnect as fast as an attacker's process would rather
/// than taking turns with the webhook.
async fn crowd(addr: SocketAddr, hosts: std::ops::RangeInclusive<u8>) -> Crowd {
    let attackers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for host in hosts {
        for _ in 0..32 {
            attackers.spawn(async move {
                loop {
                    match connect_from([127, 0, 0, host], addr).await {
                        Ok(mut s) => {
                            let _ = s.read(&mut [0u8; 1]).await;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
            });
        }
    }
    Crowd {
        attackers: Some(attackers),
    }
}

/// Attackers' connections; dropping it ends them.
struct Crowd {
    attackers: Option<tokio::runtime::Runtime>,
}

impl Drop for Crowd {
    fn drop(&mut self) {
        if let Some(rt) = self.attackers.take() {
            rt.shutdown_background();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_loops_from_many_addresses_never_evict_the_api_servers_new_connection() {
    let _alone = FLOODS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let (addr, reporter, _) = start_with_metrics(
        Settings {
            token_file: Some(token_file(dir.path(), "s3cret")),
            ..loopback()
        },
        metrics.clone(),
    )
    .await;
    let token = "authorization: Bearer s3cret\r\n";
    // The API server's kept-alive connection, authenticated by its first batch.
    let mut kept = connect_from(LEGIT, addr).await.unwrap();
    assert_eq!(
        post_on_with(&mut kept, token, &event_list("kept-before")).await,
        "HTTP/1.1 200 OK"
    );

    // Ten addresses, 32 reconnect loops each (320, more than the 256 slots
    // in all, each as many as one address may hold).
    let crowd = crowd(addr, 2..=11).await;
    let evicted = || sample(&metrics, "siesta_audit_refusals_total{reason=\"evicted\"}");
    let churning = Instant::now() + Duration::from_secs(10);
    while evicted() <= 200.0 && Instant::now() < churning {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        evicted() > 200.0,
        "the crowd never churned the unauthenticated share: {} evicted",
        evicted()
    );

    // New connections of the API server get in (the crowd evicts its own
    // connections, never the lone new one of another address), and the
    // authenticated one was never evicted.
    for i in 0..5 {
        let ns = format!("beside-crowd-{i}");
        // Its head 50 ms after it connects: oldest-first eviction let the
        // crowd's newer connections evict it before (thousands a second).
        let answer = tokio::time::timeout(
            Duration::from_secs(3),
            post_after(
                Duration::from_millis(50),
                LEGIT,
                addr,
                token,
                &event_list(&ns),
            ),
        )
        .await;
        assert_eq!(answer.ok(), Some(ok()), "batch {i}");
        assert!(activity_seen(&reporter, &ns).await, "batch {i} not counted");
    }
    assert_eq!(
        post_on_with(&mut kept, token, &event_list("kept-during")).await,
        "HTTP/1.1 200 OK"
    );
    assert!(activity_seen(&reporter, "kept-during").await);
    // An attacker without the token is no better off for asking.
    let refused = post_from([127, 0, 0, 12], addr, &event_list("crowd-no-token")).await;
    assert_eq!(refused.map(|a| a.status), Some(401));
    assert_eq!(reporter.seen("crowd-no-token"), None);
    drop(crowd);
}

/// A POST of `body` on `s`, kept alive; the answer's status line, once the
/// whole answer (head and `content-length` bytes of body) is read.
async fn post_on(s: &mut TcpStream, body: &str) -> String {
    post_on_with(s, "", body).await
}

/// [`post_on`] with `extra` header lines (each ending in CRLF).
async fn post_on_with(s: &mut TcpStream, extra: &str, body: &str) -> String {
    let head = format!(
        "POST /audit HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: ")?.parse::<usize>().ok())
                .unwrap_or(0);
            if rest.len() >= length {
                return head.lines().next().unwrap_or_default().to_string();
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_request_without_credentials_ends_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _) = start(Settings {
        token_file: Some(token_file(dir.path(), "s3cret")),
        ..loopback()
    })
    .await;
    // Kept alive, as the API server's client asks, yet closed after the 401:
    // without credentials a client cannot keep its slot by asking again.
    let mut s = connect_from(ATTACKER, addr).await.unwrap();
    let refused = post_on(&mut s, &event_list("no-token")).await;
    assert_eq!(refused, "HTTP/1.1 401 Unauthorized");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "still open after the 401");
}

#[tokio::test]
async fn a_new_connection_has_the_first_head_timeout_and_a_kept_alive_one_the_header_timeout() {
    let (addr, _) = start(Settings {
        first_head_timeout: Duration::from_millis(500),
        header_timeout: Duration::from_secs(3),
        ..loopback()
    })
    .await;
    let started = Instant::now();
    let mut silent = connect_from(ATTACKER, addr).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut rest)).await;
    let closed_after = started.elapsed();
    assert!(read.is_ok() && rest.is_empty(), "{rest:?}");
    assert!(
        closed_after >= Duration::from_millis(450) && closed_after < Duration::from_millis(1500),
        "closed after {closed_after:?}"
    );

    // Once it has sent a request, a connection may idle up to the header timeout.
    let mut kept = connect_from(LEGIT, addr).await.unwrap();
    assert_eq!(
        post_on(&mut kept, &event_list("kept-1")).await,
        "HTTP/1.1 200 OK"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        post_on(&mut kept, &event_list("kept-2")).await,
        "HTTP/1.1 200 OK"
    );
}

#[tokio::test]
async fn a_body_that_does_not_fit_what_is_left_of_the_budget_gets_429_with_retry_after_unread() {
    const KIB: usize = 1024;
    let (addr, reporter, budget) = start_with_budget(Settings {
        max_body: 64 * KIB,
        max_bodies_bytes: 64 * KIB,
        ..loopback()
    })
    .await;
    // One client holds 60 KiB of its 64 KiB body.
    let mut holder = connect_from(ATTACKER, addr).await.unwrap();
    let head = format!(
        "POST /audit HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        64 * KIB
    );
    holder.write_all(head.as_bytes()).await.unwrap();
    holder.write_all(&vec![b' '; 60 * KIB]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while budget.held() < 60 * KIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(budget.held(), 60 * KIB);

    let body = list(&[audit_event(
        "b1",
        "over-budget",
        "ResponseComplete",
        Some(200),
    )]);
    let padded = format!("{body}{}", " ".repeat(8 * KIB));
    assert_eq!(
        post_from(LEGIT, addr, &padded).await,
        Some(Answer {
            status: 429,
            retry_after: Some("1".into())
        })
    );
    assert_eq!(budget.held(), 60 * KIB, "the refused body took nothing");
    // A body that fits is served at once, beside the one held.
    assert_eq!(post_from(LEGIT, addr, &event_list("fits")).await, ok());
    assert!(activity_seen(&reporter, "fits").await);
    // The holder goes; the API server's retry gets through.
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(3);
    while budget.held() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(post_from(LEGIT, addr, &padded).await, ok());
    assert!(activity_seen(&reporter, "over-budget").await);
}
