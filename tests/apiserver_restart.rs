//! The API server stopped and restarted in the middle of transitions: every
//! namespace still reaches its state and every count comes back exactly.
//! (Its own test binary: nothing else may run while the apiserver is down.)
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

fn restart_apiserver(down_for_secs: u32) {
    let script = root().join("tests/cluster/cluster.sh");
    let out = std::process::Command::new(script)
        .args(["restart-apiserver", &down_for_secs.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restart-apiserver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transitions_survive_an_apiserver_restart() {
    let c = client().await;
    let group = "apiserver-restart";
    let ctl = Siesta::controller(SIESTA, group, &[]);
    ctl.wait_ready().await;
    let mut names = Vec::new();
    for i in 0..8 {
        let ns = namespace(
            &c,
            &format!("restart{i}"),
            group,
            &[
                ("siesta.dev/enabled", "true"),
                ("siesta.dev/idle-after", "off"),
            ],
        )
        .await;
        create(&c, &ns, &workload("web").replicas(1 + i % 3).deployment()).await;
        create(&c, &ns, &workload("api").replicas(2).deployment()).await;
        names.push(ns);
    }
    for (round, (action, target)) in [("sleep", "asleep"), ("wake", "awake")]
        .into_iter()
        .enumerate()
    {
        for ns in &names {
            annotate_namespace(&c, ns, json!({"siesta.dev/action": action})).await;
        }
        // kill the apiserver while the controller is at work, keep it down for 3 s
        tokio::time::sleep(Duration::from_millis(150 + 200 * round as u64)).await;
        tokio::task::spawn_blocking(|| restart_apiserver(3))
            .await
            .unwrap();
        eventually(
            &format!("every namespace {target}"),
            Duration::from_secs(90),
            || all_in_state(&c, &names, target),
        )
        .await;
    }
    for (i, ns) in names.iter().enumerate() {
        assert_eq!(
            replicas_of::<Deployment>(&c, ns, "web").await,
            Some(1 + i as i32 % 3),
            "{ns}/web"
        );
        assert_eq!(
            replicas_of::<Deployment>(&c, ns, "api").await,
            Some(2),
            "{ns}/api"
        );
        for w in ["web", "api"] {
            assert_eq!(
                annotation_of::<Deployment>(&c, ns, w, "siesta.dev/original-replicas").await,
                None,
                "{ns}/{w}: no record left"
            );
        }
    }
    assert!(
        ctl.metrics().await.contains("siesta_kube_responses_total"),
        "the controller was talking to the apiserver"
    );
}
