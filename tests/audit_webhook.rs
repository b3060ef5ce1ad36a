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
use siesta::audit::webhook::{Settings, Webhook};
use siesta::audit::{Ingest, Rules};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    let reporter = Reporter::new(Arc::new(AllAwake), None, None);
    let ingest = Ingest::new(Rules::default(), reporter.clone());
    let webhook = Webhook::bind(&settings).await.expect("webhook binds");
    let addr = webhook.local_addr().unwrap();
    tokio::spawn(webhook.serve(ingest));
    (addr, reporter)
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
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut s = socket.connect(addr).await.ok()?;
    let head = format!(
        "POST /audit HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
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

const LEGIT: [u8; 4] = [127, 0, 0, 1];

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
