//! The controller's components under one supervisor, seen from outside: at
//! SIGTERM it stops leading and gives the leader Lease up at once (a standby
//! need not wait for it to expire), and a component that stops ends the
//! process with an error naming it, the Lease released as well.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

async fn lease_namespace(c: &kube::Client, prefix: &str) -> String {
    let name = unique(prefix);
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
        .expect("a namespace");
    Api::<Namespace>::all(c.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the lease namespace");
    name
}

async fn holder(c: &kube::Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(c.clone(), ns)
        .get_opt("siesta-controller")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

fn controller(lease_ns: &str, identity: &str, audit: &str) -> Child {
    Command::new(SIESTA)
        .args([
            "controller",
            "--namespace-selector",
            "siesta-test=supervision",
            "--leader-election-namespace",
            lease_ns,
            "--identity",
            identity,
            "--leader-lease-duration",
            "30s",
            "--audit-listen",
            audit,
            "--admin-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env("SIESTA_LOG", "info")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the controller")
}

/// Wait up to `within` for the process to exit; its status and stderr.
fn exited(mut child: Child, within: Duration) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return (status, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the controller did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then a clean exit within `within`; its stderr.
fn terminated(child: Child, within: Duration) -> String {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    let (status, stderr) = exited(child, within);
    assert!(status.success(), "a clean stop: {status}\n{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_releases_the_leader_lease_at_once() {
    let c = client().await;
    let lease_ns = lease_namespace(&c, "sup-term").await;
    let child = controller(
        &lease_ns,
        "replica-term",
        &format!("127.0.0.1:{}", free_port()),
    );
    eventually("the controller leads", Duration::from_secs(30), || async {
        holder(&c, &lease_ns).await.as_deref() == Some("replica-term")
    })
    .await;
    let stderr = terminated(child, Duration::from_secs(20));
    assert_eq!(
        holder(&c, &lease_ns).await,
        None,
        "the lease is free for a standby at once\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_the_controller_when_the_api_server_is_unreachable() {
    // Nothing listens on port 1: the first list never completes.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- {name: dead, cluster: {server: 'http://127.0.0.1:1'}}\n\
         contexts:\n- {name: dead, context: {cluster: dead, user: u}}\ncurrent-context: dead\n\
         users:\n- {name: u, user: {token: x}}\n",
    )
    .unwrap();
    let admin = free_port();
    let child = Command::new(SIESTA)
        .args([
            "controller",
            "--audit-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("SIESTA_LOG", "info")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the controller");
    // Serving (its admin port answers) while it cannot list.
    eventually(
        "the admin port answers",
        Duration::from_secs(20),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", admin))
                .await
                .is_ok()
        },
    )
    .await;
    // Before, it logged "shutting down" and waited for the first list forever.
    terminated(child, Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_stops_ends_the_process_with_its_name() {
    let c = client().await;
    let lease_ns = lease_namespace(&c, "sup-fail").await;
    // The audit webhook cannot bind: its address is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let audit = taken.local_addr().expect("address").to_string();
    let child = controller(&lease_ns, "replica-fail", &audit);
    let (status, stderr) = exited(child, Duration::from_secs(30));
    assert!(!status.success(), "a failure exits non-zero\n{stderr}");
    assert!(
        stderr.contains("audit ingest"),
        "the log names the component that stopped:\n{stderr}"
    );
    assert_ne!(
        holder(&c, &lease_ns).await.as_deref(),
        Some("replica-fail"),
        "a failed replica holds no lease"
    );
}
