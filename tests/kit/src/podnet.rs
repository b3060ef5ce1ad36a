//! The test pod network (`tests/cluster/cluster.sh` creates it): backends that
//! answer on the addresses the cluster gave the pods, clients that connect as
//! a pod does, and a Service resolved the way kube-proxy resolves it.
//!
//! A socket belongs to the network namespace it was created in, whatever
//! thread uses it later: sockets are created on a short-lived thread that has
//! joined the pod network, then served on the test's runtime.
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The pod network's name (`SIESTA_TEST_NETNS`, from `cluster.sh env`).
pub fn pod_netns() -> String {
    std::env::var("SIESTA_TEST_NETNS")
        .expect("SIESTA_TEST_NETNS is unset: eval \"$(tests/cluster/cluster.sh env)\"")
}

/// The host's address on the pod network (`SIESTA_TEST_HOST_IP`): where host
/// processes listen to be reachable from pods.
pub fn host_ip() -> IpAddr {
    std::env::var("SIESTA_TEST_HOST_IP")
        .expect("SIESTA_TEST_HOST_IP is unset: eval \"$(tests/cluster/cluster.sh env)\"")
        .parse()
        .expect("SIESTA_TEST_HOST_IP is an address")
}

/// Run `f` on a thread that has joined the pod network.
pub fn in_pod_network<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{}", pod_netns());
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a valid descriptor changes only this thread's network namespace.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("pod network thread")
}

/// A listener in the pod network on every pod address, at `port`.
pub fn pod_listener(port: u16) -> TcpListener {
    let std = in_pod_network(move || {
        let l = std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind in the pod network");
        l.set_nonblocking(true).unwrap();
        l
    });
    TcpListener::from_std(std).unwrap()
}

/// An HTTP backend of "pods" on `port`: every request is answered with
/// `hello from <the pod address it was sent to>`.
pub fn pod_http_backend(port: u16) {
    let listener = pod_listener(port);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let local = s
                    .local_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        let body = format!("hello from {local}");
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        head.clear();
                    }
                }
            });
        }
    });
}

/// A plain TCP backend of "pods" on `port`: it greets each connection with
/// `pong <pod address>\n`, then echoes what it reads.
pub fn pod_tcp_backend(port: u16) {
    let listener = pod_listener(port);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let local = s
                    .local_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                if s.write_all(format!("pong {local}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

/// Connect to `to` from the pod network, as a pod calling a Service does.
pub async fn connect_from_pod(to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = in_pod_network(move || {
        let s = unconnected_socket(to);
        s.inspect(|s| s.set_nonblocking(true).unwrap())
    })?;
    tokio::net::TcpSocket::from_std_stream(socket)
        .connect(to)
        .await
}

fn unconnected_socket(to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    // A std TcpStream cannot exist unconnected: make the socket by hand.
    let domain = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: a plain socket call; the descriptor is owned by the returned stream.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: fd is a fresh, valid socket descriptor owned by nobody else.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

/// Where a Service port leads, as kube-proxy resolves it: the ready endpoints
/// of every EndpointSlice labelled with the Service's name, at the slice's
/// port of that name.
pub async fn resolve_service(
    client: &kube::Client,
    ns: &str,
    service: &str,
    port_name: &str,
) -> Vec<SocketAddr> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .expect("list EndpointSlices");
    let mut out = Vec::new();
    for slice in list {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for ep in slice.endpoints.iter().flatten() {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, port as u16));
                }
            }
        }
    }
    out.sort();
    out
}

/// The proxy's Service as a process install has it: no selector, one slice
/// (not Siesta's) listing the host's address on the pod network.
pub async fn create_proxy_service(kube: &kube::Client, name: &str) {
    let _ = Api::<Namespace>::all(kube.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "siesta-system"}})).unwrap(),
        )
        .await;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": 80}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(kube.clone(), "siesta-system")
        .create(&PostParams::default(), &svc)
        .await
        .expect("proxy Service");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/service-name": name,
            "endpointslice.kubernetes.io/managed-by": "siesta-tests"
        }},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host_ip().to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(kube.clone(), "siesta-system")
        .create(&PostParams::default(), &slice)
        .await
        .expect("proxy EndpointSlice");
}

pub async fn remove_proxy_service(kube: &kube::Client, name: &str) {
    let dp = DeleteParams::default();
    let _ = Api::<EndpointSlice>::namespaced(kube.clone(), "siesta-system")
        .delete(name, &dp)
        .await;
    let _ = Api::<Service>::namespaced(kube.clone(), "siesta-system")
        .delete(name, &dp)
        .await;
}
