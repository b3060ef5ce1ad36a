//! Namespaces nobody uses any more: a policy's `abandonAfter` marks a
//! namespace asleep that long without counted activity (annotation, Warning
//! Event, gauge), a similar namespace outside the policy is left unmarked,
//! and `siesta.dev/keep: "true"` clears the mark. Nothing is deleted.
use std::time::Duration;

use serde_json::json;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const GROUP: &str = "abandoned";

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_asleep_past_abandon_after_is_marked_and_keep_clears_it() {
    let c = client().await;
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        "policies:\n  - name: previews\n    namespaceSelector: {matchLabels: {preview: \"true\"}}\n    idleAfter: \"off\"\n    abandonAfter: 4s\n",
    )
    .expect("write config");
    let ctl = Siesta::controller(
        SIESTA,
        GROUP,
        &["--config", config.path().to_str().unwrap()],
    );
    ctl.wait_ready().await;
    let selected = namespace(&c, "abandoned-in", GROUP, &[]).await;
    kubectl(&["label", "ns", &selected, "preview=true"], None);
    let outside = namespace(&c, "abandoned-out", GROUP, MANUAL).await;
    for ns in [&selected, &outside] {
        create(&c, ns, &workload("web").replicas(1).deployment()).await;
        annotate_namespace(&c, ns, json!({"siesta.dev/action": "sleep"})).await;
        state_is(&c, ns, "asleep", Duration::from_secs(30)).await;
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
