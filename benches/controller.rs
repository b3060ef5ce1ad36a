//! Controller at scale, on the local cluster (not a timed test: run by
//! `make bench`). 10,000 opted-in namespaces with a one-replica Deployment each.
//! Reports the controller's RSS, time from start to synced, API requests per
//! second at steady state, and the time to put 1,000 namespaces to sleep (and
//! to wake them again). Targets: RSS <= 64 MiB, < 1 request/s, 1,000 asleep in
//! <= 30 s.
//!
//! Knobs: SIESTA_BENCH_NAMESPACES (10000), SIESTA_BENCH_SLEEP (1000),
//! SIESTA_BENCH_STEADY_SECS (60).
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, Namespace, Node, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use siesta_test_kit::{Siesta, client, free_port, http_get};

const LABEL: &str = "siesta-bench";
const GROUP: &str = "siesta-bench-group";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn metric_sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

async fn ensure_nodes(client: &kube::Client, pods: usize) {
    let nodes: Api<Node> = Api::all(client.clone());
    let count = pods.div_ceil(1000) + 1;
    for i in 0..count {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": format!("kwok-bench-{i}"), "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                         "labels": {"type": "kwok", "kubernetes.io/os": "linux"}},
            "status": {"allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "1100"}, "capacity": {"cpu": "1000", "memory": "4Ti", "pods": "1100"}}
        }))
        .unwrap();
        let _ = nodes.create(&PostParams::default(), &node).await;
    }
}

fn deployment(group: &str) -> Deployment {
    let labels = BTreeMap::from([
        ("app".to_string(), "app".to_string()),
        (GROUP.to_string(), group.to_string()),
    ]);
    Deployment {
        metadata: ObjectMeta {
            name: Some("app".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), "app".into())])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("app:1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create_all(client: &kube::Client, n: usize, sleepers: usize) {
    let t = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let name = format!("bench-{i:05}");
                let group = if i < sleepers { "sleep" } else { "idle" };
                let ns: Namespace = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {LABEL: "controller", GROUP: group},
                                 "annotations": {"siesta.dev/enabled": "true", "siesta.dev/idle-after": "off"}}
                }))
                .unwrap();
                let api = Api::<Namespace>::all(client.clone());
                if api.create(&PostParams::default(), &ns).await.is_err() {
                    // left by an earlier run with other knobs: make its group right
                    let labels = json!({"metadata": {"labels": {GROUP: group}, "annotations": {"siesta.dev/action": null}}});
                    let _ = api.patch(&name, &PatchParams::default(), &Patch::Merge(&labels)).await;
                    let dep = json!({"metadata": {"labels": {GROUP: group}}});
                    let _ = Api::<Deployment>::namespaced(client.clone(), &name)
                        .patch("app", &PatchParams::default(), &Patch::Merge(&dep))
                        .await;
                }
                let _ = Api::<Deployment>::namespaced(client, &name).create(&PostParams::default(), &deployment(group)).await;
            }
        })
        .buffer_unordered(48)
        .collect::<Vec<_>>()
        .await;
    eprintln!(
        "[bench] {n} namespaces with a Deployment each in place after {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

async fn set_action(client: &kube::Client, n: usize, action: &str) {
    stream::iter(0..n)
        .map(|i| {
            let api: Api<Namespace> = Api::all(client.clone());
            async move {
                let patch = json!({"metadata": {"annotations": {"siesta.dev/action": action}}});
                api.patch(
                    &format!("bench-{i:05}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map(|_| ())
            }
        })
        .buffer_unordered(48)
        .try_collect::<Vec<_>>()
        .await
        .expect("patch namespaces");
}

/// Seconds until every namespace of the group has the state and every Deployment the replicas.
async fn wait_group(
    client: &kube::Client,
    states: &[&str],
    replicas: i32,
    n: usize,
    start: Instant,
) -> f64 {
    let sel = ListParams::default().labels(&format!("{GROUP}=sleep"));
    loop {
        let nss = Api::<Namespace>::all(client.clone())
            .list_metadata(&sel)
            .await
            .expect("list namespaces");
        let in_state = nss
            .items
            .iter()
            .filter(|ns| {
                ns.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("siesta.dev/state"))
                    .is_some_and(|s| states.contains(&s.as_str()))
            })
            .count();
        if in_state >= n {
            let deps = Api::<Deployment>::all(client.clone())
                .list(&sel)
                .await
                .expect("list deployments");
            let done = deps
                .items
                .iter()
                .filter(|d| d.spec.as_ref().and_then(|s| s.replicas) == Some(replicas))
                .count();
            if done >= n {
                return start.elapsed().as_secs_f64();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "gave up waiting for {states:?}: {in_state}/{n}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Wake whatever an earlier, interrupted run left asleep.
async fn reset(client: &kube::Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    let sel = ListParams::default().labels(&format!("{LABEL}=controller"));
    let asleep = |ns: &kube::core::PartialObjectMeta<Namespace>| {
        ns.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("siesta.dev/state"))
            .is_some_and(|s| s != "awake")
    };
    let left: Vec<String> = api
        .list_metadata(&sel)
        .await
        .expect("list")
        .items
        .iter()
        .filter(|n| asleep(n))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    if left.is_empty() {
        return;
    }
    eprintln!(
        "[bench] waking {} namespaces left asleep by an earlier run",
        left.len()
    );
    for name in &left {
        let patch = json!({"metadata": {"annotations": {"siesta.dev/action": "wake"}}});
        let _ = api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }
    loop {
        let still = api
            .list_metadata(&sel)
            .await
            .expect("list")
            .items
            .iter()
            .filter(|n| asleep(n))
            .count();
        if still == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let n = env_num("SIESTA_BENCH_NAMESPACES", 10_000);
    let sleepers = env_num("SIESTA_BENCH_SLEEP", 1_000).min(n);
    let steady = env_num("SIESTA_BENCH_STEADY_SECS", 60);
    let client = client().await;
    ensure_nodes(&client, n).await;
    create_all(&client, n, sleepers).await;

    let audit = free_port();
    let start = Instant::now();
    let mut ctl = Siesta::start(
        env!("CARGO_BIN_EXE_siesta"),
        &[
            "controller",
            "--namespace-selector",
            &format!("{LABEL}=controller"),
            "--identity",
            "bench",
            "--audit-listen",
            &format!("127.0.0.1:{audit}"),
        ],
        &[("SIESTA_LOG", "warn")],
    );
    let (admin, pid) = (ctl.admin, ctl.child.id());
    // The highest RSS of each phase, sampled every 50 ms, to tell where a peak comes from.
    let phase_max = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let phase_max = phase_max.clone();
        tokio::spawn(async move {
            loop {
                phase_max.fetch_max(rss_kib(pid, "VmRSS:"), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    let phase = || phase_max.swap(0, std::sync::atomic::Ordering::Relaxed);
    let metrics_url = format!("http://127.0.0.1:{admin}/metrics");
    loop {
        if let Some(m) = http_get(&metrics_url).await
            && m.contains("siesta_leader 1")
            && http_get(&format!("http://127.0.0.1:{admin}/readyz"))
                .await
                .is_some()
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "controller never synced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = start.elapsed().as_secs_f64();
    let rss_sync = phase();
    reset(&client).await;
    // Let the first reconcile of every namespace finish (no more reads), then
    // measure steady state.
    let reads = |m: &str| {
        m.lines()
            .filter(|l| l.starts_with("siesta_kube_requests_total{verb=\"GET\"}"))
            .map(|l| l.to_string())
            .collect::<String>()
    };
    let mut last = reads(&http_get(&metrics_url).await.unwrap_or_default());
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = reads(&http_get(&metrics_url).await.unwrap_or_default());
        if now == last {
            break;
        }
        last = now;
    }
    let before = metric_sum(
        &http_get(&metrics_url).await.unwrap_or_default(),
        "siesta_kube_requests_total",
    );
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(steady as u64)).await;
    let after = metric_sum(
        &http_get(&metrics_url).await.unwrap_or_default(),
        "siesta_kube_requests_total",
    );
    let per_sec = (after - before) / t.elapsed().as_secs_f64();
    let rss_steady = rss_kib(pid, "VmRSS:");
    let rss_steady_max = phase();

    let mib = |k: u64| k as f64 / 1024.0;
    eprintln!(
        "[bench] synced {synced:.1} s; steady {per_sec:.2} requests/s; RSS {:.1} MiB",
        mib(rss_steady)
    );
    let by_verb = |m: &str| -> BTreeMap<String, f64> {
        m.lines()
            .filter(|l| {
                l.starts_with("siesta_kube_requests_total{")
                    || l.starts_with("siesta_kube_responses_total{")
            })
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    };
    let before_sleep = by_verb(&http_get(&metrics_url).await.unwrap_or_default());
    let t = Instant::now();
    set_action(&client, sleepers, "sleep").await;
    let asleep = wait_group(&client, &["asleep"], 0, sleepers, t).await;
    eprintln!("[bench] {sleepers} namespaces asleep in {asleep:.1} s");
    let rss_sleep = phase();
    let after_sleep = by_verb(&http_get(&metrics_url).await.unwrap_or_default());
    let spent: Vec<String> = after_sleep
        .iter()
        .map(|(k, v)| (k, v - before_sleep.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .map(|(k, d)| format!("{}={d}", k.trim_start_matches("siesta_kube_")))
        .collect();
    eprintln!(
        "[bench] API requests and answers while {sleepers} namespaces went to sleep: {}",
        spent.join(" ")
    );
    // Restored means Siesta's part is done (replicas back, state waking or
    // awake); pods becoming ready is the cluster's (KWOK's) part.
    let t = Instant::now();
    set_action(&client, sleepers, "wake").await;
    let awake = wait_group(&client, &["waking", "awake"], 1, sleepers, t).await;
    eprintln!("[bench] {sleepers} namespaces restored in {awake:.1} s");
    let rss_wake = phase();
    let rss_peak = rss_kib(pid, "VmHWM:");
    ctl.kill();

    println!("controller at scale: {n} opted-in namespaces, one Deployment each");
    println!("  start to synced (cache + leader):   {synced:.1} s");
    println!(
        "  API requests at steady state:       {per_sec:.2} /s over {steady} s   (target < 1)"
    );
    println!(
        "  RSS at steady state:                {:.1} MiB   (target <= 64)",
        mib(rss_steady)
    );
    println!(
        "  RSS peak (incl. sleep and wake):    {:.1} MiB   (target <= 64)",
        mib(rss_peak)
    );
    println!(
        "  RSS highest per phase:              sync {:.1}, steady {:.1}, sleeping {:.1}, waking {:.1} MiB",
        mib(rss_sync),
        mib(rss_steady_max),
        mib(rss_sleep),
        mib(rss_wake)
    );
    println!("  {sleepers} namespaces asleep in:          {asleep:.1} s   (target <= 30)");
    println!("  {sleepers} namespaces restored in:       {awake:.1} s");
}
