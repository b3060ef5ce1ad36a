//! End to end, all real: the controller and the proxy as processes, the local
//! API server, an HTTP backend on 127.0.0.1. A sleeping namespace is woken by
//! one HTTP request through the proxy, which is held and then answered.
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_namespace_wakes_on_its_first_http_request_through_the_proxy() {
    let c = client().await;
    let group = "e2e-http";
    let ctl = Siesta::controller(SIESTA, group, &[]);
    ctl.wait_ready().await;
    let ns = namespace(&c, "e2e-http", group, MANUAL).await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    sleep_and_wait(&c, &ns).await;

    let upstream = backend().await;
    let listen = free_port();
    let proxy = Siesta::proxy_with_route(
        SIESTA,
        &format!("127.0.0.1:{listen}"),
        "app.e2e.test",
        upstream,
        &ns,
    )
    .await;

    let t = Instant::now();
    let answer = get_via_proxy(listen, "app.e2e.test").await;
    let held = t.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    assert_state(&c, &ns, "awake", "http").await;
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));
    println!(
        "first request held {:.2} s while the namespace woke",
        held.as_secs_f64()
    );
    let m = proxy.metrics().await;
    assert!(
        m.contains(&format!(
            "siesta_proxy_requests_total{{code=\"2xx\",namespace=\"{ns}\"}} 1"
        )),
        "{m}"
    );
}

/// A client the audit ingest ignores (a kube-system service account, through
/// impersonation), so the test's own polling is not activity.
async fn ignored_client() -> kube::Client {
    let mut cfg = kube::Config::infer().await.expect("KUBECONFIG");
    cfg.auth_info.impersonate = Some("system:serviceaccount:kube-system:siesta-e2e".into());
    cfg.auth_info.impersonate_groups = Some(vec!["system:masters".into()]);
    kube::Client::try_from(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sleeping_namespace_wakes_on_a_persons_kubectl_request_seen_only_through_audit() {
    let person = client().await;
    let c = ignored_client().await;
    let group = "e2e-api";
    // The local apiserver sends its audit batches to 127.0.0.1:8443.
    let ctl = Siesta::controller(SIESTA, group, &["--audit-listen", "127.0.0.1:8443"]);
    ctl.wait_ready().await;
    let ns = namespace(&c, "e2e-api", group, MANUAL).await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    sleep_and_wait(&c, &ns).await;

    // Requests by ignored identities do not wake it.
    kubectl(
        &[
            "--as",
            "system:serviceaccount:kube-system:foo",
            "--as-group",
            "system:masters",
            "get",
            "pods",
            "-n",
            &ns,
        ],
        None,
    );
    kubectl(
        &[
            "--as",
            "system:kube-scheduler",
            "--as-group",
            "system:masters",
            "get",
            "pods",
            "-n",
            &ns,
        ],
        None,
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/state").await.as_deref(),
        Some("asleep")
    );

    // A person's request does, seen only through the apiserver's audit webhook.
    let t = Instant::now();
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(person, &ns);
    pods.list(&Default::default()).await.unwrap();
    eventually("replicas restored", Duration::from_secs(15), || async {
        replicas_of::<Deployment>(&c, &ns, "web").await == Some(2)
    })
    .await;
    let restored = t.elapsed();
    println!(
        "person's request to restored replicas: {:.2} s (audit batch wait 1 s)",
        restored.as_secs_f64()
    );
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/reason").await.as_deref(),
        Some("api")
    );
    assert!(
        ns_annotation(&c, &ns, "siesta.dev/last-activity")
            .await
            .unwrap_or_default()
            .contains("siesta-admin"),
        "the wake names who woke it"
    );
    assert!(restored < Duration::from_secs(5), "woken in {restored:?}");
    let m = ctl.metrics().await;
    assert!(
        m.contains("siesta_audit_events_total{result=\"counted\"}"),
        "{m}"
    );
}
