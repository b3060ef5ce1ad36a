//! Sleep under a real Flux (tests/cluster/flux.sh): a Kustomization with a 5 s
//! interval manages a namespace's Deployment and StatefulSet. Siesta's sleep
//! pauses Flux on them in the request that scales to zero, so the namespace
//! stays asleep through Flux's reconciliations with nothing released; a
//! commit made while it sleeps waits, and the wake restores the counts and
//! gives the objects back to Flux, which then applies the commit. A controller
//! SIGKILLed mid-sleep and mid-wake loses no count and leaves no pause behind.
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::Api;
use serde_json::json;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const PAUSE: &str = "kustomize.toolkit.fluxcd.io/reconcile";

async fn images(c: &kube::Client, ns: &str) -> (Option<String>, Option<String>) {
    let image = |t: &PodTemplateSpec| t.spec.as_ref()?.containers[0].image.clone();
    let web = Api::<Deployment>::namespaced(c.clone(), ns)
        .get("web")
        .await;
    let db = Api::<StatefulSet>::namespaced(c.clone(), ns)
        .get("db")
        .await;
    (
        web.ok().and_then(|d| image(&d.spec?.template)),
        db.ok().and_then(|s| image(&s.spec?.template)),
    )
}

async fn counts(c: &kube::Client, ns: &str) -> (Option<i32>, Option<i32>) {
    (
        replicas_of::<Deployment>(c, ns, "web").await,
        replicas_of::<StatefulSet>(c, ns, "db").await,
    )
}

/// The annotations of both workloads that say Siesta still holds them:
/// Flux's pause, its record, the replica records and the released marker.
async fn held_marks(c: &kube::Client, ns: &str) -> Vec<String> {
    let mut marks = Vec::new();
    for key in [
        PAUSE,
        "siesta.dev/original-reconcile",
        "siesta.dev/original-replicas",
        "siesta.dev/released",
    ] {
        for (kind, value) in [
            ("web", annotation_of::<Deployment>(c, ns, "web", key).await),
            ("db", annotation_of::<StatefulSet>(c, ns, "db", key).await),
        ] {
            if let Some(v) = value {
                marks.push(format!("{kind} {key}={v}"));
            }
        }
    }
    marks
}

/// A namespace whose `web` and `db` Flux applies from a fresh repository.
async fn flux_namespace(c: &kube::Client, prefix: &str, group: &str) -> (String, GitRepo) {
    let ns = namespace(c, prefix, group, MANUAL).await;
    let repo = GitRepo::create(prefix);
    let first = repo.commit(
        &as_files(&app_manifests("registry.invalid/app:1")),
        "web and db",
    );
    flux_sync(&ns, "app", &repo, "./app");
    flux_applied(c, &ns, "app", &first, Duration::from_secs(90)).await;
    (ns, repo)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flux_managed_namespace_stays_asleep_through_reconciles_and_wakes_to_git() {
    let c = client().await;
    let group = "gitops-flux";
    let ctl = Siesta::controller(SIESTA, group, &[]);
    ctl.wait_ready().await;
    let (ns, repo) = flux_namespace(&c, "gitops-sleep", group).await;

    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "sleep"})).await;
    state_is(&c, &ns, "asleep", Duration::from_secs(30)).await;
    // The state is written first, then the pass, then the Event.
    let announced = |c: kube::Client, ns: String| async move {
        events_for(&c, &ns, &ns).await.iter().any(|(reason, note)| {
            reason == "Sleeping"
                && note.contains("paused on 2")
                && note.contains(&format!("Flux Kustomization {ns}/app"))
        })
    };
    eventually(
        "the Sleeping Event names Flux",
        Duration::from_secs(30),
        || announced(c.clone(), ns.clone()),
    )
    .await;
    assert_eq!(counts(&c, &ns).await, (Some(0), Some(0)));

    // A commit while asleep, then at least 5 of Flux's reconciliations.
    let second = repo.commit(&as_files(&app_manifests("registry.invalid/app:2")), "app:2");
    let before = flux_reconciles(&ns, "app");
    eventually(
        "5 reconciles while asleep",
        Duration::from_secs(90),
        || async { flux_reconciles(&ns, "app") >= before + 5 },
    )
    .await;
    assert!(
        flux_revision(&c, &ns, "app")
            .await
            .is_some_and(|r| r.ends_with(&second)),
        "Flux has fetched the new commit"
    );
    assert_eq!(counts(&c, &ns).await, (Some(0), Some(0)), "still asleep");
    let marks = held_marks(&c, &ns).await;
    assert!(
        !marks.iter().any(|m| m.contains("released")),
        "nothing was released: {marks:?}"
    );
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/state").await.as_deref(),
        Some("asleep")
    );
    let old = Some("registry.invalid/app:1".to_string());
    assert_eq!(
        images(&c, &ns).await,
        (old.clone(), old),
        "the commit waits"
    );
    let fights = events_for(&c, &ns, "web").await;
    assert!(
        !fights.iter().any(|(r, _)| r == "ChangedWhileAsleep"),
        "{fights:?}"
    );

    // The wake restores the counts and gives them back; Flux applies the commit.
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "wake"})).await;
    state_is(&c, &ns, "awake", Duration::from_secs(120)).await;
    assert_eq!(counts(&c, &ns).await, (Some(2), Some(1)));
    assert_eq!(held_marks(&c, &ns).await, Vec::<String>::new());
    let new = Some("registry.invalid/app:2".to_string());
    eventually("Flux applies app:2", Duration::from_secs(60), || async {
        images(&c, &ns).await == (new.clone(), new.clone())
    })
    .await;
    assert_eq!(counts(&c, &ns).await, (Some(2), Some(1)));
    remove_namespace(&c, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_mid_sleep_and_mid_wake_under_flux_loses_nothing() {
    let c = client().await;
    let group = "gitops-kill";
    let (ns, _repo) = flux_namespace(&c, "gitops-kill", group).await;
    // Kill at different instants of each transition: before, during and
    // after its first writes.
    for (round, delay_ms) in [30u64, 150, 400].into_iter().enumerate() {
        for (action, target) in [("sleep", "asleep"), ("wake", "awake")] {
            let mut ctl = Siesta::controller(SIESTA, group, &["--identity", "gitops-kill"]);
            ctl.wait_ready().await;
            annotate_namespace(&c, &ns, json!({"siesta.dev/action": action})).await;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            ctl.kill();
            // A successor finishes whatever was half done.
            let next = Siesta::controller(SIESTA, group, &["--identity", "gitops-kill"]);
            next.wait_ready().await;
            state_is(&c, &ns, target, Duration::from_secs(120)).await;
            let want = if target == "asleep" {
                (Some(0), Some(0))
            } else {
                (Some(2), Some(1))
            };
            eventually(
                &format!("round {round}: {action} finished"),
                Duration::from_secs(60),
                || async { counts(&c, &ns).await == want },
            )
            .await;
            let marks = held_marks(&c, &ns).await;
            if target == "awake" {
                assert_eq!(marks, Vec::<String>::new(), "round {round}: left behind");
            } else {
                for w in ["web", "db"] {
                    assert!(
                        marks.contains(&format!("{w} {PAUSE}=disabled")),
                        "round {round}: {w} not paused: {marks:?}"
                    );
                }
            }
        }
    }
    remove_namespace(&c, &ns).await;
}
