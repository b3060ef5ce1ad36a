//! The local cluster (tests/cluster/): its kubeconfig, a kube client, kubectl,
//! and the shipped RBAC with kubeconfigs of its ServiceAccounts.
use std::process::{Command, Stdio};

/// The kubeconfig of the test cluster: KUBECONFIG, which must be set (the
/// `siesta` processes and kubectl that the tests start read it too).
pub fn kubeconfig() -> String {
    std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        panic!(
            "KUBECONFIG is unset: start the local cluster with `tests/cluster/cluster.sh up` and `eval \"$(tests/cluster/cluster.sh env)\"`, or run `make test`"
        )
    })
}

/// A kube client for the test cluster.
pub async fn client() -> kube::Client {
    kubeconfig(); // fails the test, saying how to start the cluster, when unset
    kube::Client::try_default()
        .await
        .expect("a kube client from KUBECONFIG")
}

/// Run kubectl (the one on PATH after `cluster.sh env`); panics with its stderr on failure.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH (eval \"$(tests/cluster/cluster.sh env)\")");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A kubeconfig file for the same cluster as KUBECONFIG, authenticating with a
/// ServiceAccount token of the shipped manifests.
pub fn service_account_kubeconfig(namespace: &str, account: &str) -> tempfile::NamedTempFile {
    use std::io::Write;
    let token = kubectl(
        &[
            "create",
            "token",
            account,
            "-n",
            namespace,
            "--duration",
            "1h",
        ],
        None,
    );
    let server = kubectl(
        &[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        None,
    );
    let ca = kubectl(
        &[
            "config",
            "view",
            "--minify",
            "--raw",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority}",
        ],
        None,
    );
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(
        f,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: u\n  user:\n    token: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
        token.trim()
    )
    .unwrap();
    f
}

/// Apply only the ServiceAccounts and RBAC objects of the shipped Kustomize base,
/// once per test process: tests that call it at the same time would otherwise
/// race in `kubectl apply` (both see an object missing, one create fails with
/// AlreadyExists), and every later caller waits until the first has applied.
pub fn apply_shipped_rbac() {
    static APPLIED: std::sync::Once = std::sync::Once::new();
    APPLIED.call_once(apply_shipped_rbac_now);
}

fn apply_shipped_rbac_now() {
    let deploy = crate::root().join("deploy");
    let rendered = kubectl(&["kustomize", deploy.to_str().expect("a UTF-8 path")], None);
    let keep = [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let docs: Vec<String> = rendered
        .split("\n---\n")
        .filter(|doc| {
            keep.iter()
                .any(|k| doc.lines().any(|l| l == format!("kind: {k}")))
        })
        .map(str::to_string)
        .collect();
    kubectl(&["apply", "-f", "-"], Some(&docs.join("\n---\n")));
    // The API server's authorizer learns new bindings from a watch: a process
    // started on a fresh cluster a moment after the apply could be refused.
    // Wait until it grants a right of each shipped role.
    let controller = "system:serviceaccount:siesta-system:siesta-controller";
    let proxy = "system:serviceaccount:siesta-system:siesta-proxy";
    for (who, right) in [
        (controller, ["patch", "namespaces", "-A"]),
        (controller, ["update", "leases", "-nsiesta-system"]),
        (proxy, ["watch", "ingresses.networking.k8s.io", "-A"]),
    ] {
        let granted = || {
            Command::new("kubectl")
                .args(["auth", "can-i", "--quiet", "--as", who])
                .args(right)
                .env("KUBECONFIG", kubeconfig())
                .status()
                .is_ok_and(|s| s.success())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !granted() {
            assert!(
                std::time::Instant::now() < deadline,
                "{who} is not granted {right:?} 30 s after the shipped RBAC was applied"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
