//! Redirect while asleep, on the local cluster and its test pod network (not a
//! timed test: run by `make bench`). A sleeping Deployment behind a Service is
//! woken SIESTA_BENCH_WAKES times (50) by a first HTTP request from the pod
//! network, sent where the Service resolves (the proxy's redirect port). For
//! each wake it records when the Service's own endpoint became ready (the
//! workload's readiness, seen by a watch on its EndpointSlices) and when the
//! answer came. Reports, p50 and p99:
//! - added latency: answer minus readiness, what the redirect adds to the
//!   workload's own wake (noticing the endpoint, forwarding, the pod's answer);
//! - the whole wake as the caller sees it (request to answer);
//!
//! and, after every wake, where the Service resolves: its pods only (an awake
//! Service costs no hop through the proxy).
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::watcher;
use serde_json::json;
use siesta_test_kit::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const GROUP: &str = "redirect-bench";
const PORTS: &str = "22000-22049";
const POD_PORT: u16 = 18090;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether a slice is the endpoint controller's and lists a ready endpoint.
fn own_ready(s: &EndpointSlice) -> bool {
    let labels = s.metadata.labels.as_ref();
    labels
        .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
        .is_some_and(|m| m == "endpointslice-controller.k8s.io")
        && s.endpoints.iter().flatten().any(|e| {
            e.conditions.as_ref().and_then(|c| c.ready) == Some(true) && !e.addresses.is_empty()
        })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let wakes: usize = std::env::var("SIESTA_BENCH_WAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let kube = client().await;
    let proxy_svc = unique("siesta-proxy");
    create_proxy_service(&kube, &proxy_svc).await;
    pod_http_backend(POD_PORT);
    let ctl = Siesta::redirect_controller(SIESTA, GROUP, &proxy_svc, PORTS);
    let listen = SocketAddr::new(host_ip(), free_port());
    let proxy = Siesta::start(
        SIESTA,
        &[
            "proxy",
            "--listen",
            &listen.to_string(),
            "--redirect-ports",
            PORTS,
        ],
        &[],
    );
    ctl.wait_ready().await;
    proxy.wait_ready().await;
    let ns = namespace(&kube, "redirect-bench", GROUP, MANUAL).await;
    create(&kube, &ns, &workload("web").replicas(1).deployment()).await;
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "targetPort": POD_PORT}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(kube.clone(), &ns)
        .create(&PostParams::default(), &svc)
        .await
        .expect("create Service");

    // The instant the Service's own endpoint was last seen becoming ready.
    let ready_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    {
        let (api, ready_at) = (
            Api::<EndpointSlice>::namespaced(kube.clone(), &ns),
            ready_at.clone(),
        );
        let cfg = watcher::Config::default().labels("kubernetes.io/service-name=web");
        tokio::spawn(async move {
            let mut ready = std::collections::HashSet::new();
            let events = watcher(api, cfg);
            futures::pin_mut!(events);
            while let Some(Ok(event)) = events.next().await {
                if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = event {
                    let name = s.metadata.name.clone().unwrap_or_default();
                    if own_ready(&s) {
                        if ready.insert(name) {
                            *ready_at.lock().unwrap() = Some(Instant::now());
                        }
                    } else {
                        ready.remove(&name);
                    }
                }
            }
        });
    }

    let host = format!("web.{ns}.svc");
    let (mut added, mut whole) = (Vec::new(), Vec::new());
    let mut not_pods = 0;
    for i in 0..wakes {
        sleep_and_wait(&kube, &ns).await;
        let to = loop {
            let got = resolve_service(&kube, &ns, "web", "http").await;
            if let [to] = got[..]
                && to.ip() == host_ip()
            {
                break to;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        *ready_at.lock().unwrap() = None;
        let mut s = loop {
            match connect_from_pod(to).await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let sent = Instant::now();
        s.write_all(
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        let answered = Instant::now();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "wake {i}: {answer}");
        let ready = ready_at
            .lock()
            .unwrap()
            .expect("the endpoint became ready before the answer");
        added.push(answered.saturating_duration_since(ready));
        whole.push(answered - sent);
        // Awake: once the redirect is gone, the Service leads to its pod only.
        let mut resolved = Vec::new();
        for _ in 0..500 {
            resolved = resolve_service(&kube, &ns, "web", "http").await;
            if !resolved.is_empty() && resolved.iter().all(|a| a.ip() != host_ip()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        not_pods += resolved.iter().filter(|a| a.ip() == host_ip()).count();
    }
    added.sort();
    whole.sort();
    println!(
        "redirect first request over {wakes} wakes: added over the workload's readiness p50 {:.1} ms, p99 {:.1} ms; request to answer p50 {:.1} ms, p99 {:.1} ms; awake Service endpoints through the proxy: {not_pods}",
        ms(percentile(&added, 0.5)),
        ms(percentile(&added, 0.99)),
        ms(percentile(&whole, 0.5)),
        ms(percentile(&whole, 0.99)),
    );
    remove_namespace(&kube, &ns).await;
    remove_proxy_service(&kube, &proxy_svc).await;
}
