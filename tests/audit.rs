//! API activity through the real API server of tests/cluster: its audit webhook
//! (batch mode, 1 s) posts to 127.0.0.1:8443, where this test serves the audit
//! ingest. Needs `eval "$(tests/cluster/cluster.sh env)"` (KUBECONFIG, kubectl).
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use siesta::activity::{AllAwake, Reporter};
use siesta::audit::webhook::{Settings, Webhook};
use siesta::audit::{Ingest, Rules};
use siesta_test_kit::{kubeconfig, kubectl, unique};

/// The address the local cluster's API server sends audit events to.
const AUDIT_ADDRESS: &str = "127.0.0.1:8443";

/// Bind the cluster's audit address; other tests may hold it for a while.
async fn bind_audit_address() -> Webhook {
    let settings = Settings {
        listen: Some(AUDIT_ADDRESS.parse().unwrap()),
        max_body: 16 << 20,
        ..Settings::default()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match Webhook::bind(&settings).await {
            Ok(w) => return w,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("waiting for {AUDIT_ADDRESS}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("cannot serve the audit webhook on {AUDIT_ADDRESS}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_kubectl_request_is_activity_and_a_kube_system_service_account_is_not() {
    kubeconfig();
    let reporter = Reporter::new(Arc::new(AllAwake), None, None, Arc::default());
    let ingest = Ingest::new(Rules::default(), reporter.clone());
    let webhook = bind_audit_address().await;
    let server = tokio::spawn(webhook.serve(ingest));

    let person_ns = unique("audit-person");
    let ghost_ns = unique("audit-ghost");
    // First the ignored identity (impersonated, with rights enough to succeed) ...
    tokio::task::spawn_blocking({
        let ghost_ns = ghost_ns.clone();
        move || {
            kubectl(
                &[
                    "--as=system:serviceaccount:kube-system:foo",
                    "--as-group=system:masters",
                    "get",
                    "configmaps",
                    "-n",
                    &ghost_ns,
                ],
                None,
            )
        }
    })
    .await
    .unwrap();
    // ... then a person, in a namespace of their own.
    let started = tokio::time::Instant::now();
    tokio::task::spawn_blocking({
        let ns = person_ns.clone();
        move || {
            kubectl(&["create", "namespace", &ns], None);
            kubectl(&["get", "configmaps", "-n", &ns], None);
        }
    })
    .await
    .unwrap();
    let requested = started.elapsed();

    let mut seen = None;
    while started.elapsed() < requested + Duration::from_secs(5) {
        if let Some(s) = reporter.seen(&person_ns)
            && s.detail
                .as_deref()
                .is_some_and(|d| d.contains("list configmaps"))
        {
            seen = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let latency = started.elapsed() - requested;
    let seen = seen.unwrap_or_else(|| {
        panic!(
            "no API activity for {person_ns} within 5 s: {:?}",
            reporter.seen(&person_ns)
        )
    });
    eprintln!("activity seen {latency:?} after the kubectl requests returned: {seen:?}");
    assert!(seen.api.is_some());
    assert!(
        seen.detail
            .as_deref()
            .is_some_and(|d| d.contains("siesta-admin"))
    );

    // The ignored request was sent before the person's, in the same or an earlier batch.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        reporter.seen(&ghost_ns),
        None,
        "a kube-system service account is not activity"
    );

    server.abort();
    let _ = Command::new("kubectl")
        .args(["delete", "namespace", &person_ns, "--wait=false"])
        .env("KUBECONFIG", kubeconfig())
        .output();
}

/// Activity for a name that is no namespace of the cluster (any request's
/// namespace counts, a 404 included) is dropped at its first Lease write,
/// not retried at every flush; a real namespace's Lease is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_for_a_namespace_that_does_not_exist_is_dropped_at_its_first_write() {
    use k8s_openapi::api::coordination::v1::Lease;
    use siesta::activity::{Activity, LeaseSink};
    use siesta::model::Source;
    let client = siesta_test_kit::client().await;
    let real = siesta_test_kit::namespace(&client, "activity-real", "audit-none", &[]).await;
    let missing = unique("activity-missing");
    let metrics = Arc::new(siesta::metrics::Metrics::new());
    let reporter = Reporter::new(
        Arc::new(AllAwake),
        Some(Arc::new(LeaseSink(client.clone()))),
        None,
        metrics,
    );
    for ns in [&real, &missing] {
        reporter.report(Activity {
            namespace: ns.clone(),
            at: chrono::Utc::now(),
            source: Source::Api,
            detail: "alice get".into(),
        });
    }
    assert_eq!(reporter.flush().await, 0, "no write counted as failed");
    assert!(reporter.seen(&real).is_some());
    assert_eq!(reporter.seen(&missing), None, "dropped from the book");
    assert_eq!(reporter.flush().await, 0, "and not written again");
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), &real);
    assert!(
        leases.get_opt("siesta-activity").await.unwrap().is_some(),
        "the real namespace's Activity Lease is written"
    );
}
