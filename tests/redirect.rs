//! Redirect while asleep, against the real cluster and the test pod network:
//! a sleeping namespace's Services resolve (as kube-proxy resolves them) to
//! the proxy's redirect ports; the first HTTP request or TCP connection sent
//! there wakes the namespace and is answered by the real backend on the pod's
//! own address; after the wake the redirect is gone and the Service resolves
//! to its pods only.
//!
//! Each test has its own controller group, proxy Service (in siesta-system,
//! without selector, listing the host's pod-network address as the cluster
//! install's Service lists the proxy pods) and redirect port range, and its
//! own pod ports, so the tests run in parallel.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use siesta::activity::{LeaseSink, Seen, Sink};
use siesta_test_kit::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

/// An opted-in namespace of `group` with the Deployment `web` (one pod) and
/// two Services selecting it: `web` (HTTP, port 80 to `http_port`) and `db`
/// (plain TCP, port 5432 to `tcp_port`). Returns once both resolve to the pod.
async fn app(kube: &kube::Client, group: &str, http_port: u16, tcp_port: u16) -> String {
    let ns = namespace(kube, "redirect", group, MANUAL).await;
    create(kube, &ns, &workload("web").replicas(1).deployment()).await;
    for (name, port, target, port_name) in
        [("web", 80, http_port, "http"), ("db", 5432, tcp_port, "pg")]
    {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": port_name, "port": port, "targetPort": target}]}
        }))
        .unwrap();
        Api::<Service>::namespaced(kube.clone(), &ns)
            .create(&PostParams::default(), &svc)
            .await
            .expect("create Service");
    }
    only_pods(kube, &ns).await;
    ns
}

fn is_pod(a: &SocketAddr) -> bool {
    matches!(a.ip(), IpAddr::V4(ip) if ip.octets()[..2] == [10, 244])
}

/// Wait until both Services resolve to pods only (awake, no redirect).
async fn only_pods(kube: &kube::Client, ns: &str) {
    eventually(
        &format!("{ns}'s Services resolve to their pods only"),
        Duration::from_secs(60),
        || async {
            let web = resolve_service(kube, ns, "web", "http").await;
            let db = resolve_service(kube, ns, "db", "pg").await;
            !web.is_empty() && !db.is_empty() && web.iter().chain(&db).all(is_pod)
        },
    )
    .await;
}

/// Where `service` resolves once it is redirected: the proxy's host address
/// only, on a port of `ports`.
async fn redirected(
    kube: &kube::Client,
    ns: &str,
    service: &str,
    port_name: &str,
    ports: std::ops::RangeInclusive<u16>,
) -> SocketAddr {
    let mut last = Vec::new();
    for _ in 0..300 {
        last = resolve_service(kube, ns, service, port_name).await;
        if let [to] = last[..]
            && to.ip() == host_ip()
            && ports.contains(&to.port())
        {
            return to;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{ns}/{service} never resolved to the proxy alone: {last:?}");
}

/// Awake: no redirect slice is left, and both Services lead to the pod only.
async fn awake_without_redirects(kube: &kube::Client, ns: &str) {
    eventually(
        "the redirects are gone",
        Duration::from_secs(30),
        || async { redirect_slices(kube, ns).await == 0 },
    )
    .await;
    only_pods(kube, ns).await;
}

async fn redirect_slices(kube: &kube::Client, ns: &str) -> usize {
    Api::<EndpointSlice>::namespaced(kube.clone(), ns)
        .list(&ListParams::default().labels("endpointslice.kubernetes.io/managed-by=siesta.dev"))
        .await
        .map(|l| l.items.len())
        .unwrap_or(usize::MAX)
}

/// Connect from the pod network, retrying while the proxy opens the port.
async fn connect(to: SocketAddr) -> tokio::net::TcpStream {
    for _ in 0..100 {
        if let Ok(s) = connect_from_pod(to).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on {to}");
}

/// One HTTP/1.1 request on `s`; the whole answer (the request asks for a close).
async fn http_request(mut s: tokio::net::TcpStream, host: &str) -> String {
    let req = format!("GET /first HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn pod_addresses(kube: &kube::Client, ns: &str, service: &str, port: &str) -> Vec<String> {
    resolve_service(kube, ns, service, port)
        .await
        .iter()
        .map(|a| a.ip().to_string())
        .collect()
}

/// What each test starts with: its proxy Service, pod backends (HTTP on
/// `pod_port`, TCP on `pod_port + 1`) and a controller of its group
/// redirecting to that Service on `ports`.
struct Fixture {
    kube: kube::Client,
    proxy_svc: String,
    ports: std::ops::RangeInclusive<u16>,
    controller: Siesta,
}

impl Fixture {
    async fn start(group: &str, ports: std::ops::RangeInclusive<u16>, pod_port: u16) -> Fixture {
        let kube = client().await;
        let proxy_svc = unique("siesta-proxy");
        create_proxy_service(&kube, &proxy_svc).await;
        pod_http_backend(pod_port);
        pod_tcp_backend(pod_port + 1);
        let controller =
            Siesta::redirect_controller(SIESTA, group, &proxy_svc, &self::ports(&ports));
        Fixture {
            kube,
            proxy_svc,
            ports,
            controller,
        }
    }

    async fn remove(self, ns: &str) {
        remove_namespace(&self.kube, ns).await;
        remove_proxy_service(&self.kube, &self.proxy_svc).await;
    }
}

fn ports(range: &std::ops::RangeInclusive<u16>) -> String {
    format!("{}-{}", range.start(), range.end())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_service_wakes_on_its_first_http_request_and_tcp_connection_from_a_pod() {
    let f = Fixture::start("redirect-http-tcp", 21000..=21049, 18081).await;
    let (kube, range) = (f.kube.clone(), f.ports.clone());
    let listen = SocketAddr::new(host_ip(), free_port());
    let proxy = Siesta::start(
        SIESTA,
        &[
            "proxy",
            "--listen",
            &listen.to_string(),
            "--redirect-ports",
            &ports(&range),
        ],
        &[],
    );
    f.controller.wait_ready().await;
    proxy.wait_ready().await;
    let ns = app(&kube, "redirect-http-tcp", 18081, 18082).await;

    // Asleep: both Services lead to the proxy, on ports of the range.
    sleep_and_wait(&kube, &ns).await;
    let web = redirected(&kube, &ns, "web", "http", range.clone()).await;
    let db = redirected(&kube, &ns, "db", "pg", range.clone()).await;
    assert_ne!(web.port(), db.port(), "a port per Service port");

    // The first HTTP request, sent where the Service leads, wakes the
    // namespace and is answered by the pod's backend on the pod's address.
    let answer = http_request(connect(web).await, &format!("web.{ns}.svc")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let pods = pod_addresses(&kube, &ns, "web", "http").await;
    assert!(
        pods.iter()
            .any(|ip| answer.ends_with(&format!("hello from {ip}"))),
        "{answer} (pods {pods:?})"
    );
    assert_eq!(replicas_of::<Deployment>(&kube, &ns, "web").await, Some(1));
    awake_without_redirects(&kube, &ns).await;

    // Asleep again: a plain TCP connection wakes it and is spliced to the
    // pod, which speaks first.
    sleep_and_wait(&kube, &ns).await;
    let db = redirected(&kube, &ns, "db", "pg", range.clone()).await;
    let s = connect(db).await;
    let (r, mut w) = s.into_split();
    // Sent while held: it reaches the pod once the connection is spliced.
    w.write_all(b"early\n").await.unwrap();
    let mut lines = BufReader::new(r).lines();
    let greeting = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("a greeting before the timeout")
        .expect("read")
        .expect("a line");
    let pods = pod_addresses(&kube, &ns, "db", "pg").await;
    assert!(
        pods.iter().any(|ip| greeting == format!("pong {ip}")),
        "{greeting} (pods {pods:?})"
    );
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("early"));
    w.write_all(b"ping\n").await.unwrap();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ping"));
    awake_without_redirects(&kube, &ns).await;
    f.remove(&ns).await;
}

/// The Activity Lease writer, counting its writes.
struct Counting {
    inner: LeaseSink,
    writes: Arc<AtomicUsize>,
}

impl Sink for Counting {
    fn write(
        &self,
        namespace: String,
        seen: Seen,
    ) -> futures::future::BoxFuture<'static, Result<(), siesta::activity::WriteError>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write(namespace, seen)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_first_requests_make_one_wake_write_and_all_get_the_pods_answer() {
    let f = Fixture::start("redirect-many", 21050..=21099, 18083).await;
    let (kube, range) = (f.kube.clone(), f.ports.clone());
    // The proxy in this process, so that its wake writes can be counted;
    // awake activity is flushed only after the test.
    let writes = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(host_ip(), 0))
        .await
        .unwrap();
    let options = siesta::proxy::Options {
        sink: Some(Arc::new(Counting {
            inner: LeaseSink(kube.clone()),
            writes: writes.clone(),
        })),
        flush_interval: Duration::from_secs(3600),
        redirect: Some(siesta::proxy::redirect::Listen {
            ip: host_ip(),
            ports: range.clone(),
        }),
        http1_fast_path: fast_path(),
        ..Default::default()
    };
    let p = siesta::proxy::start(listener, options, Some(kube.clone()))
        .await
        .unwrap();
    f.controller.wait_ready().await;
    let ns = app(&kube, "redirect-many", 18083, 18084).await;
    sleep_and_wait(&kube, &ns).await;
    let web = redirected(&kube, &ns, "web", "http", range).await;
    drop(connect(web).await);

    // Every connection first, then every request at once.
    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(connect(web).await);
    }
    let host = format!("web.{ns}.svc");
    let all = futures::future::join_all(streams.into_iter().map(|s| http_request(s, &host)));
    let answers = tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("every answer within 2 minutes");
    let pods = pod_addresses(&kube, &ns, "web", "http").await;
    let from_pod = answers
        .iter()
        .filter(|a| {
            a.starts_with("HTTP/1.1 200")
                && pods
                    .iter()
                    .any(|ip| a.ends_with(&format!("hello from {ip}")))
        })
        .count();
    assert_eq!(
        from_pod,
        1000,
        "answers from the pod; one other: {:?}",
        answers.iter().find(|a| !a.starts_with("HTTP/1.1 200"))
    );
    assert_eq!(writes.load(Ordering::SeqCst), 1, "one wake write");
    assert_eq!(p.proxy.held(&ns), 0);
    f.remove(&ns).await;
}

/// The attacker's side of a plain TCP redirect port: held connections are
/// bounded per namespace (one over the bound is closed at once, whatever it
/// sends), and one that hangs up, having sent bytes or not, frees its place
/// at once. No controller: the namespace stays
/// asleep, and the redirect slice is written by hand.
#[tokio::test(flavor = "multi_thread")]
async fn held_tcp_connections_are_bounded_and_a_hang_up_frees_its_place() {
    let kube = client().await;
    let ns = unique("redirect-bound");
    let since = siesta::model::format_precise(chrono::Utc::now());
    create_namespace(
        &kube,
        &ns,
        &[],
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/state", "asleep"),
            ("siesta.dev/state-since", &since),
        ],
    )
    .await;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(kube.clone(), &ns)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "siesta-redirect-db", "labels": {
            "kubernetes.io/service-name": "db",
            "endpointslice.kubernetes.io/managed-by": "siesta.dev"
        }},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host_ip().to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "pg", "port": 21100, "protocol": "TCP"}]
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(kube.clone(), &ns)
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(host_ip(), 0))
        .await
        .unwrap();
    let options = siesta::proxy::Options {
        limits: siesta::config::ProxyLimits {
            max_held_per_namespace: 2,
            ..Default::default()
        },
        redirect: Some(siesta::proxy::redirect::Listen {
            ip: host_ip(),
            ports: 21100..=21109,
        }),
        ..Default::default()
    };
    let p = siesta::proxy::start(listener, options, Some(kube.clone()))
        .await
        .unwrap();
    let to = SocketAddr::new(host_ip(), 21100);
    let held = |n: usize| {
        let (proxy, ns) = (p.proxy.clone(), ns.clone());
        async move {
            for _ in 0..100 {
                if proxy.held(&ns) == n {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    let first = connect(to).await;
    let mut second = connect(to).await;
    second.write_all(b"bytes sent while held\n").await.unwrap();
    assert!(held(2).await, "two held: {}", p.proxy.held(&ns));
    let mut third = connect(to).await;
    let _ = third.write_all(b"let me in\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("the connection over the bound is closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert_eq!(p.proxy.held(&ns), 2);
    drop(second);
    assert!(held(1).await, "a hang-up after sending frees its place");
    let _fourth = connect(to).await;
    assert!(held(2).await, "and the place is taken again");
    drop(first);
    assert!(held(1).await, "a hang-up without sending frees its place");
    remove_namespace(&kube, &ns).await;
}
