//! `siesta.dev/wake-with`: waking a namespace wakes the namespaces it names
//! (they must have opted in themselves); a cycle or a namespace that does not
//! exist is an `InvalidAnnotation` Event and changes nothing. With
//! `siesta.dev/wake-with-order: before` the named namespace is awake (its
//! Deployment ready) before the first one's replicas go up.
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
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

/// One look at both: (the app's web replicas, the db's ready replicas).
async fn sample(c: &kube::Client, app: &str, db: &str) -> (i32, i32) {
    // web first: if web is seen restored, db's readiness read after it is not older.
    let web = Api::<Deployment>::namespaced(c.clone(), app)
        .get("web")
        .await
        .expect("web");
    let store = Api::<Deployment>::namespaced(c.clone(), db)
        .get("web")
        .await
        .expect("db's web");
    (
        web.spec.and_then(|s| s.replicas).unwrap_or(1),
        store.status.and_then(|s| s.ready_replicas).unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn with_wake_with_order_before_the_named_namespace_is_ready_before_the_first_restores() {
    const GROUP: &str = "wake-with-before";
    let c = client().await;
    let ctl = Siesta::controller(SIESTA, GROUP, &[]);
    ctl.wait_ready().await;
    let db = namespace(&c, "before-db", GROUP, MANUAL).await;
    let app = namespace(&c, "before-app", GROUP, MANUAL).await;
    annotate_namespace(
        &c,
        &app,
        json!({"siesta.dev/wake-with": db, "siesta.dev/wake-with-order": "before"}),
    )
    .await;
    for ns in [&db, &app] {
        create(&c, ns, &workload("web").replicas(2).deployment()).await;
    }
    eventually("db ready", Duration::from_secs(30), || async {
        sample(&c, &app, &db).await.1 == 2
    })
    .await;
    sleep_and_wait(&c, &db).await;
    sleep_and_wait(&c, &app).await;
    eventually("db has no ready pods", Duration::from_secs(30), || async {
        sample(&c, &app, &db).await.1 == 0
    })
    .await;

    annotate_namespace(&c, &app, json!({"siesta.dev/action": "wake"})).await;
    let start = tokio::time::Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        let s = sample(&c, &app, &db).await;
        samples.push((start.elapsed().as_millis(), s));
        if s.0 == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_web = samples
        .iter()
        .position(|(_, s)| s.0 > 0)
        .unwrap_or_else(|| panic!("web never restored: {samples:?}"));
    assert_eq!(
        samples[first_web].1.1, 2,
        "db ready when web is restored: {samples:?}"
    );
    for ns in [&app, &db] {
        state_is(&c, ns, "awake", Duration::from_secs(60)).await;
    }
    let events = events_for(&c, &app, &app).await;
    assert!(
        events.iter().any(|(r, _)| r == "WaitingForWakeWith"),
        "{events:?}"
    );
    for ns in [&app, &db] {
        remove_namespace(&c, ns).await;
    }
}

/// A `before` wake survives a restart of the controller: while the named
/// namespace cannot get ready (its pods cannot be scheduled), the first
/// one's workloads stay at zero, before and after a new controller takes
/// over; once the named namespace is ready they are restored.
#[tokio::test(flavor = "multi_thread")]
async fn a_before_wake_waits_across_a_controller_restart() {
    const GROUP: &str = "wake-with-restart";
    let c = client().await;
    let mut ctl = Siesta::controller(SIESTA, GROUP, &[]);
    ctl.wait_ready().await;
    let db = namespace(&c, "restart-db", GROUP, MANUAL).await;
    let app = namespace(&c, "restart-app", GROUP, MANUAL).await;
    annotate_namespace(
        &c,
        &app,
        json!({"siesta.dev/wake-with": db, "siesta.dev/wake-with-order": "before"}),
    )
    .await;
    let mut unschedulable = workload("web").replicas(1).deployment();
    if let Some(pod) = unschedulable
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
    {
        pod.node_selector = Some([("siesta-test/no-such-node".into(), "x".into())].into());
    }
    create(&c, &db, &unschedulable).await;
    create(&c, &app, &workload("web").replicas(1).deployment()).await;
    sleep_and_wait(&c, &db).await;
    sleep_and_wait(&c, &app).await;

    annotate_namespace(&c, &app, json!({"siesta.dev/action": "wake"})).await;
    state_is(&c, &db, "waking", Duration::from_secs(30)).await;
    let still_waiting = |what: &'static str| {
        let (c, app, db) = (c.clone(), app.clone(), db.clone());
        async move {
            for _ in 0..20 {
                let (web, db_ready) = sample(&c, &app, &db).await;
                assert_eq!((web, db_ready), (0, 0), "{what}: web restored too early");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    still_waiting("before the restart").await;
    ctl.kill();
    let ctl = Siesta::controller(SIESTA, GROUP, &[]);
    ctl.wait_ready().await;
    // The new controller leads once the old lease runs out (4 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    still_waiting("after the restart").await;
    assert_eq!(
        ns_annotation(&c, &app, "siesta.dev/state").await.as_deref(),
        Some("waking")
    );

    // The named namespace can get ready now: then, and only then, web.
    Api::<Deployment>::namespaced(c.clone(), &db)
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"template": {"spec": {"nodeSelector": null}}}}),
            ),
        )
        .await
        .expect("make db schedulable");
    for ns in [&db, &app] {
        state_is(&c, ns, "awake", Duration::from_secs(60)).await;
    }
    assert_eq!(sample(&c, &app, &db).await, (1, 1));
    drop(ctl);
    for ns in [&app, &db] {
        remove_namespace(&c, ns).await;
    }
}
