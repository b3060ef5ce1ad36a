//! Namespaces nobody uses any more: a policy's `abandonAfter` marks a
//! namespace asleep that long without counted activity (annotation, Warning
//! Event, gauge), a similar namespace outside the policy is left unmarked,
//! and `siesta.dev/keep: "true"` clears the mark. Under a policy with
//! `deleteAfter` the abandoned namespace is announced (label and Warning
//! Event) and deleted that long after; one outside it, or with `keep`, is not.
use std::time::Duration;

use serde_json::json;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const GROUP: &str = "abandoned";

/// A controller for the namespaces of `group` with this admin config (the
/// file lives as long as it is kept).
async fn controller(group: &str, config: &str) -> (Siesta, tempfile::NamedTempFile) {
    let file = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(file.path(), config).expect("write config");
    let ctl = Siesta::controller(SIESTA, group, &["--config", file.path().to_str().unwrap()]);
    ctl.wait_ready().await;
    (ctl, file)
}

/// A one-replica Deployment in `ns`, and the namespace put to sleep.
async fn put_to_sleep(c: &kube::Client, ns: &str) {
    create(c, ns, &workload("web").replicas(1).deployment()).await;
    annotate_namespace(c, ns, json!({"siesta.dev/action": "sleep"})).await;
    state_is(c, ns, "asleep", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_asleep_past_abandon_after_is_marked_and_keep_clears_it() {
    let c = client().await;
    let (ctl, _config) = controller(
        GROUP,
        "policies:\n  - name: previews\n    namespaceSelector: {matchLabels: {preview: \"true\"}}\n    idleAfter: \"off\"\n    abandonAfter: 4s\n",
    )
    .await;
    let selected = namespace(&c, "abandoned-in", GROUP, &[]).await;
    kubectl(&["label", "ns", &selected, "preview=true"], None);
    let outside = namespace(&c, "abandoned-out", GROUP, MANUAL).await;
    for ns in [&selected, &outside] {
        put_to_sleep(&c, ns).await;
    }
    let slept = ns_annotation(&c, &selected, "siesta.dev/state-since")
        .await
        .expect("state-since");

    eventually(
        "the policy's namespace marked",
        Duration::from_secs(30),
        || {
            let (c, ns) = (c.clone(), selected.clone());
            async move {
                ns_annotation(&c, &ns, "siesta.dev/abandoned-since")
                    .await
                    .is_some()
            }
        },
    )
    .await;
    let since = ns_annotation(&c, &selected, "siesta.dev/abandoned-since")
        .await
        .unwrap();
    let gap = chrono::DateTime::parse_from_rfc3339(&since).unwrap()
        - chrono::DateTime::parse_from_rfc3339(&slept).unwrap();
    assert_eq!(gap.num_seconds(), 4, "abandoned 4 s after it fell asleep");
    let events = events_for(&c, &selected, &selected).await;
    let marks: Vec<_> = events.iter().filter(|(r, _)| r == "Abandoned").collect();
    assert_eq!(marks.len(), 1, "{events:?}");
    let metrics = ctl.metrics().await;
    let gauge = format!("siesta_namespace_abandoned{{namespace=\"{selected}\"}} 1");
    assert!(metrics.contains(&gauge), "no {gauge}");
    let status = std::process::Command::new(SIESTA)
        .args(["status", "-n", &selected])
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("siesta status");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("asleep (abandoned)"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // Outside the policy: asleep as long, never marked.
    assert_eq!(
        ns_annotation(&c, &outside, "siesta.dev/abandoned-since").await,
        None
    );
    assert_eq!(
        ns_annotation(&c, &outside, "siesta.dev/state")
            .await
            .as_deref(),
        Some("asleep")
    );

    // keep: "true" clears the mark; the namespace stays asleep and is not deleted.
    annotate_namespace(&c, &selected, json!({"siesta.dev/keep": "true"})).await;
    eventually("the mark cleared", Duration::from_secs(20), || {
        let (c, ns) = (c.clone(), selected.clone());
        async move {
            ns_annotation(&c, &ns, "siesta.dev/abandoned-since")
                .await
                .is_none()
        }
    })
    .await;
    assert_eq!(
        ns_annotation(&c, &selected, "siesta.dev/state")
            .await
            .as_deref(),
        Some("asleep")
    );
    let metrics = ctl.metrics().await;
    let cleared = format!("siesta_namespace_abandoned{{namespace=\"{selected}\"}} 0");
    assert!(metrics.contains(&cleared), "no {cleared}");
    for ns in [&selected, &outside] {
        remove_namespace(&c, ns).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_abandoned_under_delete_after_is_announced_then_deleted_and_no_other() {
    const GROUP: &str = "abandoned-delete";
    let c = client().await;
    let (ctl, _config) = controller(
        GROUP,
        "policies:\n  - name: doomed\n    namespaceSelector: {matchLabels: {doomed: \"true\"}}\n    idleAfter: \"off\"\n    abandonAfter: 3s\n    deleteAfter: 5s\n",
    )
    .await;
    let doomed = namespace(&c, "doomed", GROUP, &[]).await;
    let kept = namespace(&c, "doomed-kept", GROUP, &[("siesta.dev/keep", "true")]).await;
    for ns in [&doomed, &kept] {
        kubectl(&["label", "ns", ns, "doomed=true"], None);
    }
    let outside = namespace(&c, "doomed-out", GROUP, MANUAL).await;
    for ns in [&doomed, &kept, &outside] {
        put_to_sleep(&c, ns).await;
    }

    // Marked after 3 s, and at once announced: label and Warning Event.
    eventually("the deletion announced", Duration::from_secs(30), || {
        let (c, ns) = (c.clone(), doomed.clone());
        async move {
            events_for(&c, &ns, &ns)
                .await
                .iter()
                .any(|(r, _)| r == "DeletionScheduled")
        }
    })
    .await;
    let events = events_for(&c, &doomed, &doomed).await;
    let note = &events
        .iter()
        .find(|(r, _)| r == "DeletionScheduled")
        .expect("announced")
        .1;
    let label = kubectl(
        &[
            "get",
            "ns",
            &doomed,
            "-o",
            "jsonpath={.metadata.labels.siesta\\.dev/delete-after}",
        ],
        None,
    );
    let at = chrono::DateTime::from_timestamp(label.trim().parse().expect("unix seconds"), 0)
        .expect("an instant");
    assert!(
        note.contains(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            && note.contains("doomed"),
        "the Event names the date and the policy: {note}"
    );
    let since = ns_annotation(&c, &doomed, "siesta.dev/abandoned-since")
        .await
        .expect("marked");
    let grace = at
        - chrono::DateTime::parse_from_rfc3339(&since)
            .unwrap()
            .to_utc();
    assert!(
        grace >= chrono::Duration::seconds(5) && grace <= chrono::Duration::seconds(7),
        "deleteAfter after the mark: {grace:?}"
    );
    let metrics = ctl.metrics().await;
    let gauge = format!(
        "siesta_namespace_deletion_timestamp_seconds{{namespace=\"{doomed}\"}} {}",
        at.timestamp()
    );
    assert!(metrics.contains(&gauge), "no {gauge}");

    // At the date: a Warning that outlives the namespace, then the deletion.
    eventually("the namespace deleted", Duration::from_secs(30), || {
        let (c, ns) = (c.clone(), doomed.clone());
        async move {
            kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(c)
                .get_opt(&ns)
                .await
                .expect("get namespace")
                .is_none_or(|n| n.metadata.deletion_timestamp.is_some())
        }
    })
    .await;
    assert!(
        chrono::Utc::now() >= at,
        "not deleted before the announced instant"
    );
    let warned = events_for(&c, "default", &doomed).await;
    assert!(warned.iter().any(|(r, _)| r == "Deleting"), "{warned:?}");
    let metrics = ctl.metrics().await;
    assert!(
        metrics.contains("siesta_namespace_deletions_total{result=\"deleted\"} 1"),
        "{metrics}"
    );

    // keep: "true" under the same policy, and a namespace outside it: asleep
    // as long, never marked, never labelled, still there.
    for ns in [&kept, &outside] {
        assert_eq!(
            ns_annotation(&c, ns, "siesta.dev/state").await.as_deref(),
            Some("asleep"),
            "{ns}"
        );
        assert_eq!(
            ns_annotation(&c, ns, "siesta.dev/abandoned-since").await,
            None,
            "{ns}"
        );
        let labels = kubectl(
            &["get", "ns", ns, "-o", "jsonpath={.metadata.labels}"],
            None,
        );
        assert!(!labels.contains("delete-after"), "{ns}: {labels}");
    }
    for ns in [&kept, &outside] {
        remove_namespace(&c, ns).await;
    }
}
