//! Wake order against the local cluster: a StatefulSet of order 0 is restored
//! and ready before a Deployment of order 1 is restored (observed from their
//! replicas over time).
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::Api;
use serde_json::json;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const GROUP: &str = "wake-order";

/// One look at both workloads: (db replicas, db ready, web replicas).
async fn sample(c: &kube::Client, ns: &str) -> (i32, i32, i32) {
    // web first: if web is seen restored, db's readiness read after it is not older.
    let web = Api::<Deployment>::namespaced(c.clone(), ns)
        .get("web")
        .await
        .expect("web");
    let db = Api::<StatefulSet>::namespaced(c.clone(), ns)
        .get("db")
        .await
        .expect("db");
    let replicas = |s: Option<i32>| s.unwrap_or(1);
    (
        replicas(db.spec.as_ref().and_then(|s| s.replicas)),
        db.status.and_then(|s| s.ready_replicas).unwrap_or(0),
        replicas(web.spec.as_ref().and_then(|s| s.replicas)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_of_order_0_is_restored_and_ready_before_a_deployment_of_order_1() {
    let controller = Siesta::controller(SIESTA, GROUP, &[]);
    wait_ready(controller.admin).await;
    let c = client().await;
    let ns = namespace(&c, "order", GROUP, MANUAL).await;
    create(
        &c,
        &ns,
        &workload("db")
            .replicas(2)
            .annotation("siesta.dev/wake-order", "0")
            .statefulset(),
    )
    .await;
    create(
        &c,
        &ns,
        &workload("web")
            .replicas(2)
            .annotation("siesta.dev/wake-order", "1")
            .deployment(),
    )
    .await;
    eventually("db ready", Duration::from_secs(30), || async {
        sample(&c, &ns).await.1 == 2
    })
    .await;
    sleep_and_wait(&c, &ns).await;
    replicas_become::<StatefulSet>(&c, &ns, "db", 0).await;
    eventually("db has no ready pods", Duration::from_secs(30), || async {
        sample(&c, &ns).await.1 == 0
    })
    .await;

    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "wake"})).await;
    let start = tokio::time::Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        let s = sample(&c, &ns).await;
        samples.push((start.elapsed().as_millis(), s));
        if s.2 == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_web = samples
        .iter()
        .position(|(_, s)| s.2 > 0)
        .unwrap_or_else(|| panic!("web never restored: {samples:?}"));
    // Before web was restored, db was restored while web was still at zero...
    assert!(
        samples[..first_web]
            .iter()
            .any(|(_, (db, _, web))| *db == 2 && *web == 0),
        "{samples:?}"
    );
    // ...and by the time web was seen restored, db was ready.
    assert_eq!(samples[first_web].1.1, 2, "{samples:?}");
    state_is(&c, &ns, "awake", Duration::from_secs(60)).await;
    assert_eq!(ns_annotation(&c, &ns, "siesta.dev/wake-group").await, None);
    remove_namespace(&c, &ns).await;
}
