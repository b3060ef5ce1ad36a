//! The controller against the local cluster: idle sleep, exact restore,
//! exclusion, manual commands, someone else's change, bad annotations, HPAs.
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const GROUP: &str = "controller";

/// One controller for this test binary, managing namespaces labelled for it.
fn controller() -> &'static std::sync::Mutex<Siesta> {
    static C: OnceLock<std::sync::Mutex<Siesta>> = OnceLock::new();
    C.get_or_init(|| std::sync::Mutex::new(Siesta::controller(SIESTA, GROUP, &[])))
}

async fn setup() -> kube::Client {
    let admin = controller().lock().unwrap().admin;
    wait_ready(admin).await;
    client().await
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_namespace_sleeps_and_wakes_restoring_every_count_exactly() {
    let c = setup().await;
    let ns = namespace(
        &c,
        "ctl-idle",
        GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "3s"),
        ],
    )
    .await;
    create(&c, &ns, &workload("web").replicas(3).deployment()).await;
    create(&c, &ns, &workload("db").replicas(2).statefulset()).await;
    create(&c, &ns, &workload("report").cronjob(false)).await;
    create(&c, &ns, &workload("paused").cronjob(true)).await;
    create(
        &c,
        &ns,
        &workload("keep")
            .replicas(2)
            .annotation("siesta.dev/exclude", "true")
            .deployment(),
    )
    .await;

    state_is(&c, &ns, "asleep", Duration::from_secs(20)).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/reason").await.as_deref(),
        Some("idle")
    );
    replicas_become::<Deployment>(&c, &ns, "web", 0).await;
    assert_eq!(
        annotation_of::<Deployment>(&c, &ns, "web", "siesta.dev/original-replicas")
            .await
            .as_deref(),
        Some("3")
    );
    replicas_become::<StatefulSet>(&c, &ns, "db", 0).await;
    assert_eq!(
        annotation_of::<StatefulSet>(&c, &ns, "db", "siesta.dev/original-replicas")
            .await
            .as_deref(),
        Some("2")
    );
    eventually("report suspended", Duration::from_secs(15), || async {
        let cj = Api::<CronJob>::namespaced(c.clone(), &ns)
            .get("report")
            .await
            .unwrap();
        cj.spec.suspend == Some(true)
    })
    .await;
    assert_eq!(
        annotation_of::<CronJob>(&c, &ns, "report", "siesta.dev/original-suspend")
            .await
            .as_deref(),
        Some("false")
    );
    assert_eq!(
        replicas_of::<Deployment>(&c, &ns, "keep").await,
        Some(2),
        "excluded workloads are never touched"
    );
    assert_eq!(
        annotation_of::<Deployment>(&c, &ns, "keep", "siesta.dev/original-replicas").await,
        None
    );

    // Wake it by hand, with idle sleep off so it stays awake for the checks.
    annotate_namespace(
        &c,
        &ns,
        json!({"siesta.dev/idle-after": "off", "siesta.dev/action": "wake"}),
    )
    .await;
    state_is(&c, &ns, "awake", Duration::from_secs(30)).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/reason").await.as_deref(),
        Some("manual")
    );
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/action").await,
        None,
        "the one-shot command is removed"
    );
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(3));
    assert_eq!(replicas_of::<StatefulSet>(&c, &ns, "db").await, Some(2));
    let cj = Api::<CronJob>::namespaced(c.clone(), &ns)
        .get("report")
        .await
        .unwrap();
    assert_eq!(cj.spec.suspend, Some(false));
    let paused = Api::<CronJob>::namespaced(c.clone(), &ns)
        .get("paused")
        .await
        .unwrap();
    assert_eq!(
        paused.spec.suspend,
        Some(true),
        "a CronJob suspended before sleep stays suspended"
    );
    for (kind, name) in [("d", "web"), ("s", "db")] {
        let record = if kind == "d" {
            annotation_of::<Deployment>(&c, &ns, name, "siesta.dev/original-replicas").await
        } else {
            annotation_of::<StatefulSet>(&c, &ns, name, "siesta.dev/original-replicas").await
        };
        assert_eq!(record, None, "no record is left behind on {name}");
    }
    assert_eq!(
        annotation_of::<CronJob>(&c, &ns, "report", "siesta.dev/original-suspend").await,
        None
    );
    let dep = Api::<Deployment>::namespaced(c.clone(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        dep.status.and_then(|s| s.ready_replicas),
        Some(3),
        "awake means the restored pods are ready"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_that_did_not_opt_in_is_never_touched() {
    let c = setup().await;
    let ns = namespace(&c, "ctl-optout", GROUP, &[("siesta.dev/idle-after", "1s")]).await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));
    assert_eq!(ns_annotation(&c, &ns, "siesta.dev/state").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_sleep_and_wake_through_the_cli() {
    let c = setup().await;
    let ns = namespace(
        &c,
        "ctl-manual",
        GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "off"),
        ],
    )
    .await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    let siesta = |cmd: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_siesta"))
            .args([cmd, &ns])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "siesta {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    siesta("sleep");
    state_is(&c, &ns, "asleep", Duration::from_secs(15)).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/reason").await.as_deref(),
        Some("manual")
    );
    replicas_become::<Deployment>(&c, &ns, "web", 0).await;
    siesta("wake");
    state_is(&c, &ns, "awake", Duration::from_secs(30)).await;
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_siesta"))
        .args(["status", "-n", &ns])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        table.contains("NAMESPACE") && table.contains(&ns) && table.contains("awake"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn someone_elses_scale_up_during_sleep_wins_without_flapping() {
    let c = setup().await;
    let ns = namespace(
        &c,
        "ctl-fight",
        GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "off"),
            ("siesta.dev/action", "sleep"),
        ],
    )
    .await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    // the first reconcile may come before the Deployment exists: the sleep pass covers new workloads
    state_is(&c, &ns, "asleep", Duration::from_secs(15)).await;
    eventually("web asleep", Duration::from_secs(15), || async {
        replicas_of::<Deployment>(&c, &ns, "web").await == Some(0)
    })
    .await;

    // A GitOps agent puts it back to 3, again and again.
    for _ in 0..5 {
        scale::<Deployment>(&c, &ns, "web", 3).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    eventually("released", Duration::from_secs(10), || async {
        annotation_of::<Deployment>(&c, &ns, "web", "siesta.dev/released")
            .await
            .is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        replicas_of::<Deployment>(&c, &ns, "web").await,
        Some(3),
        "Siesta does not scale it back down"
    );
    assert_eq!(
        annotation_of::<Deployment>(&c, &ns, "web", "siesta.dev/original-replicas").await,
        None
    );
    let events = events_for(&c, &ns, "web").await;
    assert_eq!(
        events
            .iter()
            .filter(|(r, _)| r == "ChangedWhileAsleep")
            .count(),
        1,
        "one Event, no flapping: {events:?}"
    );

    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "wake"})).await;
    state_is(&c, &ns, "awake", Duration::from_secs(30)).await;
    assert_eq!(
        replicas_of::<Deployment>(&c, &ns, "web").await,
        Some(3),
        "their count is kept at wake"
    );
    assert_eq!(
        annotation_of::<Deployment>(&c, &ns, "web", "siesta.dev/released").await,
        None
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workloads_created_while_asleep_sleep_too_and_wake_with_the_namespace() {
    let c = setup().await;
    let ns = namespace(
        &c,
        "ctl-new",
        GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "off"),
            ("siesta.dev/action", "sleep"),
        ],
    )
    .await;
    state_is(&c, &ns, "asleep", Duration::from_secs(15)).await;
    create(&c, &ns, &workload("late").replicas(4).deployment()).await;
    eventually("late asleep", Duration::from_secs(15), || async {
        replicas_of::<Deployment>(&c, &ns, "late").await == Some(0)
    })
    .await;
    assert_eq!(
        annotation_of::<Deployment>(&c, &ns, "late", "siesta.dev/original-replicas")
            .await
            .as_deref(),
        Some("4")
    );
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "wake"})).await;
    state_is(&c, &ns, "awake", Duration::from_secs(30)).await;
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "late").await, Some(4));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_annotation_is_reported_changes_nothing_and_its_fix_takes_effect() {
    let c = setup().await;
    let ns = namespace(
        &c,
        "ctl-bad",
        GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "banana"),
        ],
    )
    .await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    eventually(
        "an InvalidAnnotation Event",
        Duration::from_secs(15),
        || async {
            events_for(&c, &ns, &ns)
                .await
                .iter()
                .any(|(r, m)| r == "InvalidAnnotation" && m.contains("siesta.dev/idle-after"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/state").await,
        None,
        "nothing written on the namespace"
    );
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));
    annotate_namespace(&c, &ns, json!({"siesta.dev/idle-after": "2s"})).await;
    state_is(&c, &ns, "asleep", Duration::from_secs(20)).await;
    replicas_become::<Deployment>(&c, &ns, "web", 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hpa_does_not_scale_a_sleeping_workload_back_up() {
    let c = setup().await;
    let ns = namespace(
        &c,
        "ctl-hpa",
        GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "off"),
        ],
    )
    .await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]
        }
    }))
    .unwrap();
    Api::<HorizontalPodAutoscaler>::namespaced(c.clone(), &ns)
        .create(&PostParams::default(), &hpa)
        .await
        .unwrap();
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "sleep"})).await;
    state_is(&c, &ns, "asleep", Duration::from_secs(15)).await;
    // The HPA controller syncs every 15 s; with its target at zero it disables scaling.
    tokio::time::sleep(Duration::from_secs(20)).await;
    replicas_become::<Deployment>(&c, &ns, "web", 0).await;
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "wake"})).await;
    state_is(&c, &ns, "awake", Duration::from_secs(30)).await;
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_sleeps_the_namespace_at_its_window_and_wakes_it_at_the_wake_time() {
    let c = setup().await;
    let at = |secs: i64| {
        (chrono::Utc::now() + chrono::Duration::seconds(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    // awake until 6 s from now, asleep for 14 s, then awake again
    let spec = format!("{}-{}, {}-{}", at(-3600), at(6), at(20), at(3600));
    let ns = namespace(
        &c,
        "ctl-sched",
        GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "off"),
            ("siesta.dev/awake-hours", &spec),
        ],
    )
    .await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/state").await,
        None,
        "awake inside the window"
    );
    state_is(&c, &ns, "asleep", Duration::from_secs(12)).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/reason").await.as_deref(),
        Some("schedule")
    );
    replicas_become::<Deployment>(&c, &ns, "web", 0).await;
    state_is(&c, &ns, "awake", Duration::from_secs(25)).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/reason").await.as_deref(),
        Some("schedule")
    );
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));
}
