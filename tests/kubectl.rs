//! Siesta as a kubectl tool, through the real kubectl against the local
//! cluster: the binary installed as `kubectl-siesta` is the plugin
//! `kubectl siesta`, honours `--context`, `--kubeconfig` and `-n` as kubectl
//! does, and the namespace's state and reason are labels, so `kubectl get ns
//! -L siesta.dev/state` shows them. Also `wake --for` against a controller:
//! the namespace stays awake until the (clamped) instant and sleeps after.
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const GROUP: &str = "kubectl";

fn text(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory holding `kubectl-siesta`, a symlink to the binary, as the
/// README's install puts it on PATH.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::os::unix::fs::symlink(SIESTA, dir.path().join("kubectl-siesta")).expect("symlink");
    dir
}

/// The real kubectl with the plugin directory first on PATH.
fn kubectl_with_plugin(dir: &Path, args: &[&str], kubeconfig: &str) -> Output {
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("kubectl")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run kubectl")
}

fn siesta(args: &[&str]) -> Output {
    Command::new(SIESTA)
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("run siesta")
}

/// The test cluster's kubeconfig with its current context renamed to
/// `siesta-test` and a current context that points nowhere: only
/// `--context siesta-test` reaches the cluster.
fn kubeconfig_with_context(dir: &Path) -> String {
    let path = dir.join("kubeconfig");
    std::fs::copy(kubeconfig(), &path).expect("copy kubeconfig");
    let p = path.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", p)
            .output()
            .expect("kubectl config");
        text(&out)
    };
    let current = run(&["config", "current-context"]);
    run(&["config", "rename-context", current.trim(), "siesta-test"]);
    run(&[
        "config",
        "set-context",
        "nowhere",
        "--cluster",
        "nowhere",
        "--user",
        "nobody",
    ]);
    run(&[
        "config",
        "set-cluster",
        "nowhere",
        "--server",
        "https://127.0.0.1:1",
    ]);
    run(&["config", "use-context", "nowhere"]);
    p.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_siesta_is_siesta_and_state_and_reason_are_labels() {
    let c = client().await;
    let _controller = Siesta::controller(SIESTA, GROUP, &[]);
    // No workloads: its savings are 0 whenever the two tables are printed.
    let ns = namespace(
        &c,
        "kubectl-plugin",
        GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "off"),
        ],
    )
    .await;
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "sleep"})).await;
    state_is(&c, &ns, "asleep", Duration::from_secs(30)).await;

    // `kubectl get ns -L` shows state and reason; `-l` selects by state.
    let shown = kubectl(
        &["get", "ns", &ns, "-L", "siesta.dev/state,siesta.dev/reason"],
        None,
    );
    let mut lines = shown.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let column = |name: &str| {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no column {name} in {shown}"));
        row[i]
    };
    assert_eq!(column("STATE"), "asleep", "{shown}");
    assert_eq!(column("REASON"), "manual", "{shown}");
    let selected = kubectl(
        &["get", "ns", "-l", "siesta.dev/state=asleep", "-o", "name"],
        None,
    );
    assert!(
        selected.lines().any(|l| l == format!("namespace/{ns}")),
        "{selected}"
    );

    // `kubectl siesta status` through the real kubectl prints siesta's table.
    let dir = plugin_dir();
    let direct = text(&siesta(&["status", "-n", &ns]));
    let plugin = text(&kubectl_with_plugin(
        dir.path(),
        &["siesta", "status", "-n", &ns],
        &kubeconfig(),
    ));
    assert_eq!(plugin, direct);
    assert!(
        direct.contains(&ns) && direct.contains("asleep"),
        "{direct}"
    );

    // --context picks the context, as kubectl's own flag would; without it
    // the file's current context (nowhere) is used and the command fails.
    let kc = kubeconfig_with_context(dir.path());
    let lost = kubectl_with_plugin(dir.path(), &["siesta", "status", "-n", &ns], &kc);
    assert!(!lost.status.success(), "the current context points nowhere");
    let found = kubectl_with_plugin(
        dir.path(),
        &["siesta", "--context", "siesta-test", "status", "-n", &ns],
        &kc,
    );
    assert_eq!(text(&found), direct);
    let by_file = Command::new(SIESTA)
        .args([
            "--kubeconfig",
            &kc,
            "--context",
            "siesta-test",
            "status",
            "-n",
            &ns,
        ])
        .env_remove("KUBECONFIG")
        .output()
        .expect("run siesta");
    assert_eq!(text(&by_file), direct);

    // `kubectl siesta wake -n NS --for 1h`, written as kubectl users write it.
    let woke = kubectl_with_plugin(
        dir.path(),
        &["siesta", "wake", "-n", &ns, "--for", "1h"],
        &kubeconfig(),
    );
    assert!(text(&woke).contains("kept awake until"));
    state_is(&c, &ns, "awake", Duration::from_secs(30)).await;
    // Who asked, as the API server knows them (the CLI's SelfSubjectReview).
    let me = kubectl(
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    assert!(!me.trim().is_empty());
    let last = ns_annotation(&c, &ns, "siesta.dev/last-activity")
        .await
        .unwrap_or_default();
    assert!(last.contains(&format!("manual {} ", me.trim())), "{last}");
    let waking: Vec<_> = events_for(&c, &ns, &ns)
        .await
        .into_iter()
        .filter(|(reason, _)| reason == "Waking")
        .collect();
    assert!(
        waking.iter().any(|(_, note)| note.contains(me.trim())),
        "{waking:?}"
    );
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/requested-by").await,
        None
    );
    let shown = kubectl(&["get", "ns", &ns, "-L", "siesta.dev/state"], None);
    assert!(shown.lines().nth(1).unwrap().contains("awake"), "{shown}");
    remove_namespace(&c, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wake_for_keeps_a_namespace_awake_until_the_admins_maximum_and_it_sleeps_after() {
    let c = client().await;
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(config.path(), "defaults:\n  maxKeepAwake: 12s\n").expect("write config");
    let group = "kubectl-keep";
    let _controller = Siesta::controller(
        SIESTA,
        group,
        &["--config", config.path().to_str().unwrap()],
    );
    let ns = namespace(
        &c,
        "kubectl-keep",
        group,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "2s"),
        ],
    )
    .await;
    create(&c, &ns, &workload("web").replicas(1).deployment()).await;
    // Asked for a year's worth; the admin allows 12 s.
    let asked = tokio::time::Instant::now();
    text(&siesta(&["wake", &ns, "--for", "8760h"]));
    eventually(
        "keep-awake-until brought back to the maximum",
        Duration::from_secs(10),
        || {
            let c = c.clone();
            let ns = ns.clone();
            async move {
                events_for(&c, &ns, &ns)
                    .await
                    .iter()
                    .any(|(reason, _)| reason == "KeepAwakeClamped")
            }
        },
    )
    .await;
    let until = ns_annotation(&c, &ns, "siesta.dev/keep-awake-until")
        .await
        .expect("keep-awake-until");
    let until = chrono::DateTime::parse_from_rfc3339(&until).expect("an instant");
    let ahead = (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    assert!((0..=12).contains(&ahead), "clamped to {ahead} s ahead");
    // Idle after 2 s, yet awake until the instant: still awake 7 s after the
    // request, then asleep soon after the instant.
    tokio::time::sleep_until(asked + Duration::from_secs(7)).await;
    let state = ns_annotation(&c, &ns, "siesta.dev/state").await;
    assert_ne!(state.as_deref(), Some("asleep"), "slept before the instant");
    assert_eq!(
        replicas_of::<k8s_openapi::api::apps::v1::Deployment>(&c, &ns, "web").await,
        Some(1)
    );
    state_is(&c, &ns, "asleep", Duration::from_secs(20)).await;
    let slept = ns_annotation(&c, &ns, "siesta.dev/state-since")
        .await
        .expect("state-since");
    let slept = chrono::DateTime::parse_from_rfc3339(&slept).expect("an instant");
    assert!(slept >= until, "slept at {slept}, before {until}");
    remove_namespace(&c, &ns).await;
}
