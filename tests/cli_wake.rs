//! `siesta wake NS --for D` and `siesta sleep NS` against the real API
//! server, as a user runs them: what they write on the namespace, and that a
//! namespace that did not opt in is refused with a clear message and left as
//! it was.
use std::process::Command;

use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

fn siesta(args: &[&str]) -> std::process::Output {
    Command::new(SIESTA)
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("run siesta")
}

#[tokio::test(flavor = "multi_thread")]
async fn wake_for_keeps_awake_until_then_and_sleep_clears_it() {
    let c = client().await;
    let ns = namespace(
        &c,
        "cli-wake",
        "cli-wake",
        &[("siesta.dev/enabled", "true")],
    )
    .await;
    let before = chrono::Utc::now();
    let out = siesta(&["wake", &ns, "--for", "2h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let until = ns_annotation(&c, &ns, "siesta.dev/keep-awake-until")
        .await
        .expect("keep-awake-until written");
    let until = chrono::DateTime::parse_from_rfc3339(&until).expect("an instant");
    let off = (until.with_timezone(&chrono::Utc) - before).num_seconds();
    assert!((7195..=7205).contains(&off), "kept awake {off} s, want 2 h");
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/action").await.as_deref(),
        Some("wake")
    );
    let out = siesta(&["sleep", &ns]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/keep-awake-until").await,
        None
    );
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/action").await.as_deref(),
        Some("sleep")
    );
    remove_namespace(&c, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_that_did_not_opt_in_is_refused_and_left_alone() {
    let c = client().await;
    let ns = namespace(&c, "cli-refused", "cli-wake", &[]).await;
    let out = siesta(&["wake", &ns, "--for", "1h"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has not opted in"), "{err}");
    assert_eq!(ns_annotation(&c, &ns, "siesta.dev/action").await, None);
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/keep-awake-until").await,
        None
    );
    remove_namespace(&c, &ns).await;
}
