//! `siesta.dev/wake-with`: waking a namespace wakes the namespaces it names
//! (they must have opted in themselves); a cycle or a namespace that does not
//! exist is an `InvalidAnnotation` Event and changes nothing.
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const GROUP: &str = "wake-with";

#[tokio::test(flavor = "multi_thread")]
async fn one_wake_request_wakes_a_namespace_and_the_one_it_names() {
    let c = client().await;
    let ctl = Siesta::controller(SIESTA, GROUP, &[]);
    ctl.wait_ready().await;
    let db = namespace(&c, "with-db", GROUP, MANUAL).await;
    let app = namespace(&c, "with-app", GROUP, MANUAL).await;
    annotate_namespace(&c, &app, json!({"siesta.dev/wake-with": db})).await;
    for ns in [&db, &app] {
        create(&c, ns, &workload("web").replicas(2).deployment()).await;
        sleep_and_wait(&c, ns).await;
    }
    // One request, on the app's namespace only.
    let out = std::process::Command::new(SIESTA)
        .args(["wake", &app])
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("siesta wake");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ns in [&app, &db] {
        state_is(&c, ns, "awake", Duration::from_secs(60)).await;
        assert_eq!(replicas_of::<Deployment>(&c, ns, "web").await, Some(2));
    }
    let why = ns_annotation(&c, &db, "siesta.dev/last-activity")
        .await
        .unwrap_or_default();
    assert!(why.contains(&format!("wake-with {app}")), "{why}");
    for ns in [&app, &db] {
        remove_namespace(&c, ns).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cycle_or_an_unknown_namespace_is_reported_and_changes_nothing() {
    let c = client().await;
    let ctl = Siesta::controller(SIESTA, "wake-with-bad", &[]);
    ctl.wait_ready().await;
    let x = namespace(&c, "with-x", "wake-with-bad", MANUAL).await;
    let y = namespace(&c, "with-y", "wake-with-bad", MANUAL).await;
    let z = namespace(&c, "with-z", "wake-with-bad", MANUAL).await;
    annotate_namespace(&c, &x, json!({"siesta.dev/wake-with": y})).await;
    annotate_namespace(&c, &y, json!({"siesta.dev/wake-with": x})).await;
    annotate_namespace(
        &c,
        &z,
        json!({"siesta.dev/wake-with": "no-such-namespace-here"}),
    )
    .await;
    for ns in [&x, &z] {
        create(&c, ns, &workload("web").replicas(1).deployment()).await;
        annotate_namespace(&c, ns, json!({"siesta.dev/action": "sleep"})).await;
    }
    for (ns, words) in [(&x, "a cycle"), (&z, "does not exist")] {
        eventually(
            "an InvalidAnnotation Event",
            Duration::from_secs(20),
            || {
                let (c, ns) = (c.clone(), ns.clone());
                async move {
                    events_for(&c, &ns, &ns)
                        .await
                        .iter()
                        .any(|(r, note)| r == "InvalidAnnotation" && note.contains(words))
                }
            },
        )
        .await;
        assert_eq!(ns_annotation(&c, ns, "siesta.dev/state").await, None);
        assert_eq!(replicas_of::<Deployment>(&c, ns, "web").await, Some(1));
    }
    for ns in [&x, &y, &z] {
        remove_namespace(&c, ns).await;
    }
}
