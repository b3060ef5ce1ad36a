//! A real Flux (tests/cluster/flux.sh: source-controller and kustomize-controller
//! built from their Go modules, a Git server on 127.0.0.1) against the local
//! cluster: a Kustomization applies a Deployment and a StatefulSet from Git into a
//! namespace, and a later commit changing the image is applied.
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::Api;
use siesta_test_kit::*;

const GROUP: &str = "flux";

fn image_of(template: &PodTemplateSpec) -> Option<String> {
    template.spec.as_ref()?.containers[0].image.clone()
}

async fn images(c: &kube::Client, ns: &str) -> (Option<String>, Option<String>) {
    let web = Api::<Deployment>::namespaced(c.clone(), ns)
        .get_opt("web")
        .await
        .unwrap();
    let db = Api::<StatefulSet>::namespaced(c.clone(), ns)
        .get_opt("db")
        .await
        .unwrap();
    (
        web.and_then(|d| image_of(&d.spec?.template)),
        db.and_then(|s| image_of(&s.spec?.template)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kustomization_applies_workloads_from_git_and_then_a_new_image() {
    let c = client().await;
    let ns = namespace(&c, "flux-smoke", GROUP, &[]).await;
    let repo = GitRepo::create("flux-smoke");
    let first = repo.commit(
        &as_files(&app_manifests("registry.invalid/app:1")),
        "web and db",
    );
    flux_sync(&ns, "app", &repo, "./app");

    let took = flux_applied(&c, &ns, "app", &first, Duration::from_secs(90)).await;
    eprintln!("[flux] first commit applied {took:?} after the Kustomization was created");
    let web = Api::<Deployment>::namespaced(c.clone(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(web.spec.as_ref().unwrap().replicas, Some(2));
    let labels = web.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("kustomize.toolkit.fluxcd.io/name")
            .map(String::as_str),
        Some("app"),
        "{labels:?}"
    );
    assert_eq!(
        labels
            .get("kustomize.toolkit.fluxcd.io/namespace")
            .map(String::as_str),
        Some(ns.as_str())
    );
    assert_eq!(replicas_of::<StatefulSet>(&c, &ns, "db").await, Some(1));
    let image1 = Some("registry.invalid/app:1".to_string());
    assert_eq!(images(&c, &ns).await, (image1.clone(), image1));

    let second = repo.commit(&as_files(&app_manifests("registry.invalid/app:2")), "app:2");
    let took = flux_applied(&c, &ns, "app", &second, Duration::from_secs(60)).await;
    eprintln!("[flux] the image commit applied {took:?} after the push");
    let image2 = Some("registry.invalid/app:2".to_string());
    assert_eq!(images(&c, &ns).await, (image2.clone(), image2));
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));

    remove_namespace(&c, &ns).await;
}

/// What Siesta has to live with: Flux puts back `replicas` that someone else
/// scaled down at its next interval, unless the object in the cluster carries
/// `kustomize.toolkit.fluxcd.io/reconcile: disabled`; once that goes, the next
/// interval applies Git again, including a commit made meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn flux_undoes_a_scale_to_zero_unless_the_object_says_reconcile_disabled() {
    const DISABLED: &str = "kustomize.toolkit.fluxcd.io/reconcile";
    let c = client().await;
    let ns = namespace(&c, "flux-drift", GROUP, &[]).await;
    let repo = GitRepo::create("flux-drift");
    let first = repo.commit(
        &as_files(&app_manifests("registry.invalid/app:1")),
        "web and db",
    );
    flux_sync(&ns, "app", &repo, "./app");
    flux_applied(&c, &ns, "app", &first, Duration::from_secs(90)).await;
    let deployments = Api::<Deployment>::namespaced(c.clone(), &ns);

    // Scaled to zero by another field manager: Flux restores 2 within an interval or two.
    scale::<Deployment>(&c, &ns, "web", 0).await;
    let start = tokio::time::Instant::now();
    eventually(
        "Flux restores web to 2",
        Duration::from_secs(30),
        || async { replicas_of::<Deployment>(&c, &ns, "web").await == Some(2) },
    )
    .await;
    eprintln!("[flux] a scale to 0 undone after {:?}", start.elapsed());

    // With reconcile: disabled on the live object, 0 stays through 4 reconciles,
    // and a commit changing the image is not applied to it either.
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {DISABLED: "disabled"}},
                "spec": {"replicas": 0},
            })),
        )
        .await
        .unwrap();
    let second = repo.commit(&as_files(&app_manifests("registry.invalid/app:2")), "app:2");
    let before = flux_reconciles(&ns, "app");
    eventually("4 more reconciles", Duration::from_secs(60), || async {
        flux_reconciles(&ns, "app") >= before + 4
    })
    .await;
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(0));
    let (web, db) = images(&c, &ns).await;
    assert_eq!(web.as_deref(), Some("registry.invalid/app:1"), "skipped");
    assert_eq!(db.as_deref(), Some("registry.invalid/app:2"), "applied");
    assert!(
        flux_revision(&c, &ns, "app")
            .await
            .is_some_and(|r| r.ends_with(&second))
    );

    // The annotation removed: the next interval applies Git, count and image.
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {DISABLED: null}},
            })),
        )
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    eventually(
        "Flux applies web at 2 replicas with app:2",
        Duration::from_secs(30),
        || async {
            replicas_of::<Deployment>(&c, &ns, "web").await == Some(2)
                && images(&c, &ns).await.0.as_deref() == Some("registry.invalid/app:2")
        },
    )
    .await;
    eprintln!(
        "[flux] Git applied {:?} after reconcile: disabled went",
        start.elapsed()
    );

    remove_namespace(&c, &ns).await;
}
