//! Least privilege, proven: the controller runs with a token of the shipped
//! `siesta-controller` ServiceAccount, bound only by the shipped roles, and
//! does its whole job without one forbidden request.
mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_needs_nothing_beyond_its_shipped_role() {
    let c = client().await;
    apply_shipped_rbac();
    let kubeconfig = service_account_kubeconfig("siesta-system", "siesta-controller");
    let path = kubeconfig.path().to_str().unwrap().to_string();
    let ctl = Siesta::controller_with_env(
        "rbac",
        &["--leader-lease-duration", "4s"],
        &[("KUBECONFIG", &path)],
    );
    ctl.wait_ready().await;

    let ns = namespace(
        &c,
        "rbac",
        "rbac",
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "off"),
        ],
    )
    .await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    create(&c, &ns, &workload("db").replicas(1).statefulset()).await;
    create(&c, &ns, &workload("job").cronjob(false)).await;
    let state = |want: &'static str| {
        let (c, ns) = (c.clone(), ns.clone());
        async move { ns_annotation(&c, &ns, "siesta.dev/state").await.as_deref() == Some(want) }
    };
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "sleep"})).await;
    eventually("asleep", Duration::from_secs(30), || state("asleep")).await;
    replicas_become::<Deployment>(&c, &ns, "web", 0).await;
    // someone else's change: an Event on the workload, then a wake
    scale::<StatefulSet>(&c, &ns, "db", 2).await;
    eventually("released", Duration::from_secs(15), || async {
        annotation_of::<StatefulSet>(&c, &ns, "db", "siesta.dev/released")
            .await
            .is_some()
    })
    .await;
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "wake"})).await;
    eventually("awake", Duration::from_secs(30), || state("awake")).await;
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));
    eventually("Events published", Duration::from_secs(10), || async {
        events_for(&c, &ns, &ns)
            .await
            .iter()
            .any(|(r, _)| r == "Awake")
    })
    .await;

    let metrics = ctl.metrics().await;
    let forbidden: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("siesta_kube_responses_total")
                && (l.contains("\"403\"") || l.contains("\"401\""))
        })
        .collect();
    assert!(forbidden.is_empty(), "forbidden requests: {forbidden:?}");
    assert!(
        metrics.contains("siesta_kube_responses_total{code=\"2xx\"}"),
        "the counter works: {metrics}"
    );
    let errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("siesta_errors_total"))
        .collect();
    assert!(errors.is_empty(), "errors: {errors:?}");
}
