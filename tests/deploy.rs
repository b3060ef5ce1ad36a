//! The install artifacts against a real API server: the Kustomize base in
//! `deploy/` passes a server-side dry run, the Helm chart in
//! `deploy/helm/siesta` renders the same objects, and the shipped RBAC is
//! least privilege: no wildcard, no Secrets, and the proxy cannot scale.
//!
//! Needs the local cluster (`tests/cluster/cluster.sh up`). The cluster comes
//! from `KUBECONFIG`, or from `tests/cluster/cluster.sh env` when it is unset
//! and the local cluster is up. Helm is built once by `tests/deploy/helm.sh`.
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use siesta_test_kit::root;

const SYSTEM_NAMESPACE: &str = "siesta-system";

/// How to reach the cluster: a kubeconfig and a kubectl.
struct Cluster {
    kubeconfig: String,
    kubectl: PathBuf,
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        // `cluster.sh env` prints `export KUBECONFIG=...` and `export PATH=<kubectl dir>:$PATH`.
        let script = root().join("tests/cluster/cluster.sh");
        let local = Command::new(&script).arg("env").output().ok().filter(|o| o.status.success());
        let exports: BTreeMap<String, String> = local
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let kubeconfig = match std::env::var("KUBECONFIG") {
            Ok(k) if !k.is_empty() => k,
            _ => {
                let up = Command::new(&script).arg("status").output().is_ok_and(|o| o.status.success());
                match exports.get("KUBECONFIG") {
                    Some(k) if up => k.clone(),
                    _ => panic!(
                        "KUBECONFIG is unset and the local cluster is down: run `tests/cluster/cluster.sh up` \
                         and `eval \"$(tests/cluster/cluster.sh env)\"`, or point KUBECONFIG at a test cluster"
                    ),
                }
            }
        };
        // Prefer the kubectl built with the local cluster; else the one on PATH.
        let kubectl = exports
            .get("PATH")
            .and_then(|p| p.split(':').next())
            .map(|dir| Path::new(dir).join("kubectl"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("kubectl"));
        Cluster { kubeconfig, kubectl }
    })
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{shown}: {e}"))
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> Output {
    let c = cluster();
    let mut cmd = Command::new(&c.kubectl);
    cmd.env("KUBECONFIG", &c.kubeconfig)
        .current_dir(root())
        .args(args);
    run(&mut cmd, stdin)
}

/// Run kubectl and return its stdout, failing the test with stderr otherwise.
fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let out = kubectl(args, stdin);
    assert!(
        out.status.success(),
        "kubectl {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Split a multi-document YAML stream into JSON values, skipping empty documents.
fn documents(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn key(obj: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&obj["kind"]),
        s(&obj["metadata"]["namespace"]),
        s(&obj["metadata"]["name"]),
    )
}

fn kustomize_base() -> Vec<Value> {
    documents(&kubectl_ok(&["kustomize", "deploy"], None))
}

fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let out = run(&mut Command::new(root().join("tests/deploy/helm.sh")), None);
        assert!(
            out.status.success(),
            "tests/deploy/helm.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// The Kubernetes version of the local cluster, for `helm template --kube-version`.
fn kube_version() -> String {
    let env =
        std::fs::read_to_string(root().join("tests/cluster/versions.env")).expect("versions.env");
    env.lines()
        .find_map(|l| l.strip_prefix("K8S_VERSION="))
        .expect("K8S_VERSION in versions.env")
        .trim()
        .to_string()
}

/// `helm template` of the chart in siesta-system with extra `--set` values.
fn helm_template(sets: &[&str]) -> String {
    let version = kube_version();
    let mut cmd = Command::new(helm());
    cmd.current_dir(root()).args([
        "template",
        "siesta",
        "deploy/helm/siesta",
        "--namespace",
        SYSTEM_NAMESPACE,
        "--kube-version",
        &version,
    ]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = run(&mut cmd, None);
    assert!(
        out.status.success(),
        "helm template {sets:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// An object without what legitimately differs between Kustomize and Helm:
/// the labels and annotations on the object itself (Helm adds its own).
/// Selectors, pod template labels, specs and RBAC rules must be identical.
fn comparable(mut obj: Value) -> Value {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        meta.remove("labels");
        meta.remove("annotations");
    }
    obj
}

fn rbac_rules(objects: &[Value]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("ClusterRole" | "Role")))
        .flat_map(|o| {
            let name = format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            );
            o["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |r| (name.clone(), r))
        })
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

#[test]
fn kustomize_base_passes_a_server_side_dry_run() {
    let out = kubectl_ok(&["apply", "-k", "deploy", "--dry-run=server"], None);
    for kind in [
        "deployment.apps/siesta-controller",
        "deployment.apps/siesta-proxy",
        "ingressclass.networking.k8s.io/siesta",
    ] {
        assert!(
            out.contains(kind),
            "{kind} missing from the dry run:\n{out}"
        );
    }
}

/// Kustomize and Helm render the same objects: the same kinds and names, and
/// equal objects but for their own labels and annotations. Helm installs into
/// a namespace it is given (--create-namespace); the base creates its own.
fn assert_same_objects(chart: &[Value], base: &[Value]) {
    // Kustomize's namespace transformer also stamps the cluster-scoped kinds
    // it has no schema for (admission policies); the API server ignores it.
    let index = |objects: &[Value]| -> BTreeMap<_, _> {
        objects
            .iter()
            .map(|o| {
                let mut o = o.clone();
                if o["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("ValidatingAdmissionPolicy"))
                {
                    remove(&mut o["metadata"], "namespace");
                }
                (key(&o), comparable(o))
            })
            .collect()
    };
    let (chart, base) = (index(chart), index(base));
    let base_only: Vec<_> = base.keys().filter(|k| !chart.contains_key(*k)).collect();
    let chart_only: Vec<_> = chart.keys().filter(|k| !base.contains_key(*k)).collect();
    let namespace = (
        "Namespace".to_string(),
        String::new(),
        SYSTEM_NAMESPACE.to_string(),
    );
    assert_eq!(base_only, [&namespace], "only in the Kustomize base");
    assert!(
        chart_only.is_empty(),
        "only in the Helm chart: {chart_only:?}"
    );
    for (k, obj) in &base {
        if let Some(other) = chart.get(k) {
            assert_eq!(
                obj, other,
                "{k:?} differs between Kustomize and Helm:\nkustomize: {obj:#}\nhelm:      {other:#}"
            );
        }
    }
}

#[test]
fn helm_chart_renders_the_same_objects_as_the_kustomize_base() {
    let lint = run(
        Command::new(helm()).current_dir(root()).args([
            "lint",
            "deploy/helm/siesta",
            "--kube-version",
            &kube_version(),
        ]),
        None,
    );
    assert!(
        lint.status.success(),
        "helm lint failed:\n{}",
        String::from_utf8_lossy(&lint.stdout)
    );

    let rendered = helm_template(&[]);
    assert_same_objects(&documents(&rendered), &kustomize_base());
    // And the API server accepts what Helm renders.
    kubectl_ok(&["apply", "--dry-run=server", "-f", "-"], Some(&rendered));
}

#[test]
fn client_certificate_component_matches_helm_with_client_ca() {
    let overlay = documents(&kubectl_ok(
        &["kustomize", "tests/deploy/overlay-client-ca"],
        None,
    ));
    assert_same_objects(
        &documents(&helm_template(&["audit.auth=clientCA"])),
        &overlay,
    );
    kubectl_ok(
        &[
            "apply",
            "-k",
            "tests/deploy/overlay-client-ca",
            "--dry-run=server",
        ],
        None,
    );
}

#[test]
fn delete_namespaces_component_matches_helm_with_delete_namespaces_and_is_off_by_default() {
    let overlay = documents(&kubectl_ok(
        &["kustomize", "tests/deploy/overlay-delete-namespaces"],
        None,
    ));
    let on = helm_template(&["controller.deleteNamespaces=true"]);
    assert_same_objects(&documents(&on), &overlay);
    kubectl_ok(
        &[
            "apply",
            "-k",
            "tests/deploy/overlay-delete-namespaces",
            "--dry-run=server",
        ],
        None,
    );
    kubectl_ok(&["apply", "--dry-run=server", "-f", "-"], Some(&on));
    // It adds exactly one right: delete on namespaces.
    let added: Vec<_> = rbac_rules(&overlay)
        .into_iter()
        .filter(|(n, _)| n == "ClusterRole/siesta-controller-delete-namespaces")
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    let rule = added[0].1;
    assert_eq!(strings(&rule["verbs"]), ["delete"]);
    assert_eq!(strings(&rule["resources"]), ["namespaces"]);
    assert_eq!(strings(&rule["apiGroups"]), [""]);
    let kinds: BTreeSet<String> = overlay
        .iter()
        .filter(|o| key(o).2 == "siesta-controller-delete-namespaces")
        .map(|o| key(o).0)
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
    // Off by default, in both.
    for (what, docs) in [
        ("the Kustomize base", kustomize_base()),
        ("the Helm chart", documents(&helm_template(&[]))),
    ] {
        assert!(
            !docs
                .iter()
                .any(|o| key(o).2 == "siesta-controller-delete-namespaces"),
            "{what} lets the controller delete namespaces by default"
        );
    }
    // Installed elsewhere, the chart's policy names that namespace's
    // ServiceAccount and protects that namespace too.
    let out = run(
        Command::new(helm()).current_dir(root()).args([
            "template",
            "siesta",
            "deploy/helm/siesta",
            "--namespace",
            "ops",
            "--kube-version",
            &kube_version(),
            "--set",
            "controller.deleteNamespaces=true",
        ]),
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&String::from_utf8_lossy(&out.stdout));
    let policy = docs
        .iter()
        .find(|o| o["kind"] == "ValidatingAdmissionPolicy")
        .expect("the policy");
    let spec = policy["spec"].to_string();
    assert!(
        spec.contains("system:serviceaccount:ops:siesta-controller")
            && spec.contains("'default', 'siesta-system', 'ops'"),
        "{spec}"
    );
}

#[test]
fn helm_values_switch_audit_auth_service_type_and_ingress_status() {
    let env_names = |yaml: &str, deployment: &str| -> Vec<String> {
        let docs = documents(yaml);
        let d = docs.iter().find(|o| {
            key(o)
                == (
                    "Deployment".into(),
                    SYSTEM_NAMESPACE.into(),
                    deployment.into(),
                )
        });
        let d = d.unwrap_or_else(|| panic!("no Deployment {deployment}"));
        d["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{}={}",
                    e["name"].as_str().unwrap_or(""),
                    e["value"].as_str().unwrap_or("<from>")
                )
            })
            .collect()
    };

    let mtls = helm_template(&["audit.auth=clientCA"]);
    let env = env_names(&mtls, "siesta-controller");
    assert!(
        env.contains(&"SIESTA_AUDIT_CLIENT_CA=/var/run/secrets/siesta/audit-auth/ca.crt".into()),
        "{env:?}"
    );
    assert!(
        !env.iter()
            .any(|e| e.starts_with("SIESTA_AUDIT_TOKEN_FILE=")),
        "{env:?}"
    );

    let no_audit = helm_template(&["audit.enabled=false"]);
    let env = env_names(&no_audit, "siesta-controller");
    assert!(
        env.contains(&"SIESTA_AUDIT_LISTEN=127.0.0.1:8443".into()),
        "{env:?}"
    );
    assert!(
        !documents(&no_audit)
            .iter()
            .any(|o| key(o).2 == "siesta-audit"),
        "audit Service rendered while disabled"
    );

    let internal = helm_template(&[
        "proxy.service.type=ClusterIP",
        "proxy.publishIngressStatus=true",
    ]);
    let docs = documents(&internal);
    let svc = docs
        .iter()
        .find(|o| {
            key(o)
                == (
                    "Service".into(),
                    SYSTEM_NAMESPACE.into(),
                    "siesta-proxy".into(),
                )
        })
        .unwrap();
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert!(
        svc["spec"].get("externalTrafficPolicy").is_none(),
        "externalTrafficPolicy on a ClusterIP Service"
    );
    let rules = rbac_rules(&docs);
    assert!(rules.iter().any(|(n, r)| n == "ClusterRole/siesta-proxy"
        && strings(&r["resources"]) == ["ingresses/status"]));
    kubectl_ok(&["apply", "--dry-run=server", "-f", "-"], Some(&internal));

    let bad = run(
        Command::new(helm()).current_dir(root()).args([
            "template",
            "siesta",
            "deploy/helm/siesta",
            "--set",
            "audit.auth=basic",
        ]),
        None,
    );
    assert!(!bad.status.success(), "audit.auth=basic should be refused");
}

#[test]
fn rbac_has_no_wildcard_no_secrets_and_no_escalation() {
    let objects = kustomize_base();
    let rules = rbac_rules(&objects);
    assert!(
        rules.len() >= 10,
        "expected the controller's and the proxy's rules, got {}",
        rules.len()
    );
    for (role, rule) in &rules {
        for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
            assert!(
                !strings(&rule[field]).contains(&"*"),
                "{role}: wildcard in {field}: {rule}"
            );
        }
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "{role}: nonResourceURLs: {rule}"
        );
        assert!(
            !strings(&rule["resources"]).contains(&"secrets"),
            "{role}: access to Secrets: {rule}"
        );
        for verb in ["deletecollection", "escalate", "bind", "impersonate"] {
            assert!(
                !strings(&rule["verbs"]).contains(&verb),
                "{role}: verb {verb}: {rule}"
            );
        }
        // One delete: the controller's own redirect slices (the admission
        // policy keeps it to those).
        if strings(&rule["verbs"]).contains(&"delete") {
            assert_eq!(
                (strings(&rule["apiGroups"]), strings(&rule["resources"])),
                (vec!["discovery.k8s.io"], vec!["endpointslices"]),
                "{role}: verb delete: {rule}"
            );
        }
    }
    // Only the controller touches workloads.
    for (role, rule) in rules.iter().filter(|(n, _)| n.contains("siesta-proxy")) {
        let writes = strings(&rule["verbs"])
            .iter()
            .any(|v| matches!(*v, "create" | "update" | "patch"));
        let on = strings(&rule["resources"]);
        assert!(
            !writes
                || on
                    .iter()
                    .all(|r| matches!(*r, "leases" | "ingresses/status")),
            "{role} writes something other than Leases: {rule}"
        );
    }
}

#[test]
fn admin_config_in_the_configmap_is_valid() {
    let objects = kustomize_base();
    let cm = objects
        .iter()
        .find(|o| {
            key(o)
                == (
                    "ConfigMap".into(),
                    SYSTEM_NAMESPACE.into(),
                    "siesta-config".into(),
                )
        })
        .expect("ConfigMap siesta-config");
    let text = cm["data"]["siesta.yaml"]
        .as_str()
        .expect("data.siesta.yaml");
    let config = siesta::config::parse("ConfigMap siesta-config", text)
        .unwrap_or_else(|e| panic!("siesta.yaml in the ConfigMap: {e}\n{text}"));
    assert_eq!(
        config.defaults.idle_after,
        siesta::annotations::IdleAfter::After(std::time::Duration::from_secs(30 * 60))
    );
}

/// The example audit policy drops at least what the local cluster's drops, in
/// the same order, and ends with the same catch-all.
#[test]
fn example_audit_policy_keeps_the_local_cluster_rules() {
    let read = |path: &str| -> Value {
        let text =
            std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let local = read("tests/cluster/audit-policy.yaml");
    let example = read("config/audit-policy.yaml");
    for field in ["apiVersion", "kind", "omitStages"] {
        assert_eq!(local[field], example[field], "{field}");
    }
    let (local, example) = (
        local["rules"].as_array().unwrap(),
        example["rules"].as_array().unwrap(),
    );
    let (local_catch_all, local_drops) = local.split_last().unwrap();
    assert_eq!(
        &example[..local_drops.len()],
        local_drops,
        "the local cluster's rules come first"
    );
    assert_eq!(example.last(), Some(local_catch_all));
    assert_eq!(local_catch_all, &serde_json::json!({"level": "Metadata"}));
    let extra = &example[local_drops.len()..example.len() - 1];
    assert!(
        extra.iter().all(|r| r["level"] == "None"),
        "extra rules only drop: {extra:?}"
    );
}

/// Every `SIESTA_*` variable the Deployments set is a flag of the subcommand
/// they run, so renaming a flag in src/ without deploy/ fails here.
#[test]
fn deployments_set_only_environment_variables_the_binary_reads() {
    // What the binary itself says it reads: `[env: SIESTA_...=]` in --help.
    let known = |sub: &str| -> BTreeSet<String> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_siesta"))
            .args([sub, "--help"])
            .output()
            .expect("siesta runs");
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut names: BTreeSet<String> = help
            .split("[env: ")
            .skip(1)
            .filter_map(|rest| rest.split(['=', ']']).next())
            .map(str::to_string)
            .collect();
        assert!(names.contains("SIESTA_CONFIG"), "{help}");
        names.insert("SIESTA_LOG".into()); // the log filter, read by main
        names
    };
    let controller = known("controller");
    let proxy = known("proxy");
    assert!(
        controller.contains("SIESTA_CONTROLLER_ADMIN_LISTEN")
            && proxy.contains("SIESTA_PROXY_ADMIN_LISTEN")
            && !controller.contains("SIESTA_PROXY_ADMIN_LISTEN"),
        "each admin listener has its own variable"
    );
    // Every variable any chart variant may set.
    let mut docs = kustomize_base();
    docs.extend(documents(&helm_template(&["audit.auth=clientCA"])));
    docs.extend(documents(&helm_template(&["audit.enabled=false"])));
    for d in docs.iter().filter(|o| o["kind"] == "Deployment") {
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        let sub = strings(&container["args"])
            .first()
            .copied()
            .unwrap_or_default()
            .to_string();
        let flags = match sub.as_str() {
            "controller" => &controller,
            "proxy" => &proxy,
            other => panic!("{:?} runs an unknown subcommand {other:?}", key(d)),
        };
        for e in container["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().unwrap_or_default();
            assert!(
                flags.contains(name),
                "{:?} sets {name}, which `siesta {sub}` does not read",
                key(d)
            );
        }
    }
}

/// RBAC objects of the base, applied for real into a namespace of their own
/// (so parallel tests and an installed Siesta are untouched), and removed
/// again when dropped.
struct RbacUnderTest {
    namespace: String,
    label: String,
}

impl RbacUnderTest {
    fn apply() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let id = format!("{}-{nanos}", std::process::id());
        let namespace = format!("siesta-rbac-{id}");
        let label = format!("siesta.dev/deploy-test={id}");
        let suffix = format!("-test-{id}");
        kubectl_ok(&["create", "namespace", &namespace], None);
        let guard = RbacUnderTest {
            namespace: namespace.clone(),
            label,
        };

        let mut objects = Vec::new();
        for mut o in kustomize_base() {
            let kind = o["kind"].as_str().unwrap_or_default().to_string();
            if !matches!(
                kind.as_str(),
                "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding"
            ) {
                continue;
            }
            o["metadata"]["labels"]["siesta.dev/deploy-test"] = Value::String(id.clone());
            if kind.starts_with("Cluster") {
                let name = format!(
                    "{}{suffix}",
                    o["metadata"]["name"].as_str().unwrap_or_default()
                );
                o["metadata"]["name"] = Value::String(name);
            } else {
                o["metadata"]["namespace"] = Value::String(namespace.clone());
            }
            if kind.ends_with("Binding") {
                if o["roleRef"]["kind"] == "ClusterRole" {
                    let name = format!(
                        "{}{suffix}",
                        o["roleRef"]["name"].as_str().unwrap_or_default()
                    );
                    o["roleRef"]["name"] = Value::String(name);
                }
                for s in o["subjects"].as_array_mut().into_iter().flatten() {
                    s["namespace"] = Value::String(namespace.clone());
                }
            }
            objects.push(o);
        }
        assert_eq!(
            objects.len(),
            8,
            "2 ServiceAccounts, 2 ClusterRoles and bindings, 1 Role and binding"
        );
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        kubectl_ok(&["apply", "-f", "-"], Some(&list.to_string()));
        guard
    }

    fn user(&self, account: &str) -> String {
        format!("system:serviceaccount:{}:{account}", self.namespace)
    }

    /// `kubectl auth can-i VERB RESOURCE [-n NS | -A]` as a ServiceAccount;
    /// RESOURCE is `type[/name]` or `type:subresource`.
    fn can(&self, account: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        let ns = namespace.unwrap_or(&self.namespace);
        let user = self.user(account);
        let (resource, subresource) = resource.split_once(':').unwrap_or((resource, ""));
        let mut args = vec!["auth", "can-i", verb, resource, "--as", &user];
        if !subresource.is_empty() {
            args.extend(["--subresource", subresource]);
        }
        if ns == "*" {
            args.push("--all-namespaces");
        } else {
            args.extend(["--namespace", ns]);
        }
        let out = kubectl(&args, None);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match answer.as_str() {
            "yes" => true,
            "no" => false,
            _ => panic!(
                "kubectl {}: {answer}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// Wait until the authorizer sees the new bindings.
    fn wait_until_bound(&self) {
        for _ in 0..50 {
            if self.can("siesta-controller", "patch", "deployments.apps", Some("*"))
                && self.can(
                    "siesta-proxy",
                    "list",
                    "ingresses.networking.k8s.io",
                    Some("*"),
                )
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the applied RBAC never took effect");
    }
}

impl Drop for RbacUnderTest {
    fn drop(&mut self) {
        let _ = kubectl(
            &[
                "delete",
                "clusterrolebinding,clusterrole",
                "-l",
                &self.label,
                "--wait=false",
            ],
            None,
        );
        let _ = kubectl(
            &["delete", "namespace", &self.namespace, "--wait=false"],
            None,
        );
    }
}

/// The Gateway API kinds both components read.
const GATEWAY_API: [&str; 4] = [
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
];

#[test]
fn service_accounts_can_do_their_job_and_nothing_more() {
    let rbac = RbacUnderTest::apply();
    rbac.wait_until_bound();
    let all = Some("*");
    let elsewhere = Some("default");
    let check = |account: &str, allowed: bool, verb: &str, resource: &str, ns: Option<&str>| {
        let got = rbac.can(account, verb, resource, ns);
        assert_eq!(
            got,
            allowed,
            "{account} {} `{verb} {resource}` in {}",
            if allowed {
                "should be allowed"
            } else {
                "must not be allowed"
            },
            ns.unwrap_or("its own namespace")
        );
    };

    let c = "siesta-controller";
    // Its job: watch and annotate namespaces, scale workloads by patching them, suspend CronJobs.
    check(c, true, "watch", "namespaces", None);
    check(c, true, "patch", "namespaces", None);
    for workload in [
        "deployments.apps",
        "statefulsets.apps",
        "replicasets.apps",
        "cronjobs.batch",
    ] {
        check(c, true, "list", workload, all);
        check(c, true, "patch", workload, all);
        check(c, false, "delete", workload, all);
        check(c, false, "create", workload, all);
    }
    check(
        c,
        true,
        "watch",
        "horizontalpodautoscalers.autoscaling",
        all,
    );
    check(
        c,
        false,
        "patch",
        "horizontalpodautoscalers.autoscaling",
        all,
    );
    check(c, false, "update", "deployments.apps:scale", all);
    // Activity Leases anywhere, the leader Lease at home, no one else's Lease.
    check(c, true, "watch", "leases.coordination.k8s.io", all);
    check(c, true, "create", "leases.coordination.k8s.io", elsewhere);
    check(
        c,
        true,
        "update",
        "leases.coordination.k8s.io/siesta-activity",
        elsewhere,
    );
    check(
        c,
        true,
        "update",
        "leases.coordination.k8s.io/siesta-controller",
        None,
    );
    check(
        c,
        false,
        "update",
        "leases.coordination.k8s.io/kube-controller-manager",
        Some("kube-system"),
    );
    check(
        c,
        false,
        "delete",
        "leases.coordination.k8s.io/siesta-activity",
        elsewhere,
    );
    check(c, true, "create", "events", elsewhere);
    check(c, true, "create", "events.events.k8s.io", elsewhere);
    // Gateway API: read routes and what they name, write only status, and only route and class status.
    for kind in GATEWAY_API {
        check(c, true, "watch", kind, all);
        check(c, false, "patch", kind, all);
    }
    check(
        c,
        true,
        "patch",
        "httproutes.gateway.networking.k8s.io:status",
        all,
    );
    check(
        c,
        true,
        "patch",
        "gatewayclasses.gateway.networking.k8s.io:status",
        None,
    );
    check(
        c,
        false,
        "patch",
        "gateways.gateway.networking.k8s.io:status",
        all,
    );
    check(c, true, "watch", "services", all);
    // Never Secrets, Pods or anything it does not need.
    check(c, false, "get", "secrets", all);
    check(c, false, "list", "secrets", None);
    check(c, false, "create", "pods", elsewhere);
    check(c, false, "delete", "namespaces", None);
    check(c, false, "patch", "nodes", None);
    check(c, false, "impersonate", "serviceaccounts", all);
    // Redirects: read Services, write EndpointSlices (the policy limits which).
    check(c, true, "watch", "services", all);
    check(c, false, "update", "services", all);
    check(
        c,
        true,
        "create",
        "endpointslices.discovery.k8s.io",
        elsewhere,
    );
    check(
        c,
        true,
        "delete",
        "endpointslices.discovery.k8s.io",
        elsewhere,
    );
    check(
        c,
        false,
        "patch",
        "endpointslices.discovery.k8s.io",
        elsewhere,
    );

    let p = "siesta-proxy";
    // Its job: read routes and upstreams, report activity in the Activity Lease.
    check(p, true, "watch", "ingresses.networking.k8s.io", all);
    check(p, true, "watch", "ingressclasses.networking.k8s.io", None);
    check(p, true, "watch", "services", all);
    check(p, true, "watch", "endpointslices.discovery.k8s.io", all);
    check(p, true, "watch", "namespaces", None);
    for kind in GATEWAY_API {
        check(p, true, "watch", kind, all);
    }
    // Route status is the leader controller's, not each proxy replica's.
    check(
        p,
        false,
        "patch",
        "httproutes.gateway.networking.k8s.io:status",
        all,
    );
    check(p, true, "create", "leases.coordination.k8s.io", elsewhere);
    check(
        p,
        true,
        "get",
        "leases.coordination.k8s.io/siesta-activity",
        elsewhere,
    );
    check(
        p,
        true,
        "update",
        "leases.coordination.k8s.io/siesta-activity",
        elsewhere,
    );
    // Only the controller scales.
    for workload in [
        "deployments.apps",
        "statefulsets.apps",
        "replicasets.apps",
        "cronjobs.batch",
    ] {
        check(p, false, "patch", workload, all);
        check(p, false, "update", workload, all);
    }
    check(p, false, "update", "deployments.apps:scale", all);
    check(p, false, "patch", "namespaces", None);
    check(
        p,
        false,
        "update",
        "leases.coordination.k8s.io/kube-scheduler",
        Some("kube-system"),
    );
    check(
        p,
        false,
        "update",
        "ingresses.networking.k8s.io:status",
        all,
    );
    check(p, false, "get", "secrets", all);
    check(p, false, "list", "pods", all);
    check(
        p,
        false,
        "create",
        "endpointslices.discovery.k8s.io",
        elsewhere,
    );
}

/// The base's ValidatingAdmissionPolicy, applied for real with its user set
/// to the test's controller account and bound to one test namespace (so
/// the controllers other tests run, as the cluster's admin, are untouched):
/// the controller writes only Siesta's redirect slices, no one else writes
/// a slice in Siesta's name, and both get the policy's message.
#[test]
fn only_the_controller_writes_redirect_slices_and_only_those() {
    let rbac = RbacUnderTest::apply();
    rbac.wait_until_bound();
    let id = rbac
        .namespace
        .trim_start_matches("siesta-rbac-")
        .to_string();
    let ns = TempNamespace::create("siesta-vap", &[&format!("siesta.dev/vap-test={id}")]);
    let controller = rbac.user("siesta-controller");
    let name = format!("siesta-redirect-slices-test-{id}");
    let mut objects = Vec::new();
    for mut o in kustomize_base() {
        match o["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => {
                let text = serde_json::to_string(&o["spec"]).expect("json");
                let text = text.replace(
                    "system:serviceaccount:siesta-system:siesta-controller",
                    &controller,
                );
                o["spec"] = serde_json::from_str(&text).expect("json");
            }
            Some("ValidatingAdmissionPolicyBinding") => {
                o["spec"]["policyName"] = Value::String(name.clone());
                o["spec"]["matchResources"] = serde_json::json!({
                    "namespaceSelector": {"matchLabels": {"siesta.dev/vap-test": id}}
                });
            }
            _ => continue,
        }
        o["metadata"]["name"] = Value::String(name.clone());
        o["metadata"]["labels"]["siesta.dev/deploy-test"] = Value::String(id.clone());
        objects.push(o);
    }
    assert_eq!(objects.len(), 2, "a policy and its binding");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
    kubectl_ok(&["apply", "-f", "-"], Some(&list.to_string()));
    let _cleanup = DeleteOnDrop(vec![
        format!("validatingadmissionpolicybinding/{name}"),
        format!("validatingadmissionpolicy/{name}"),
    ]);

    let slice = |name: &str, ours: bool| {
        let mut labels = serde_json::json!({"kubernetes.io/service-name": "web"});
        if ours {
            labels["endpointslice.kubernetes.io/managed-by"] = "siesta.dev".into();
        }
        serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns.0, "labels": labels},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.9"]}],
            "ports": [{"name": "http", "port": 20001, "protocol": "TCP"}],
        })
        .to_string()
    };
    let create = |who: Option<&str>, name: &str, ours: bool| {
        let mut args = vec!["create", "-f", "-"];
        if let Some(user) = who {
            args.extend(["--as", user]);
        }
        kubectl(&args, Some(&slice(name, ours)))
    };
    let refused = |out: &std::process::Output, why: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        !out.status.success() && err.contains(why)
    };
    // A new policy takes a moment to be enforced: until the controller's
    // unlabelled create is refused.
    let mut enforced = false;
    for i in 0..100 {
        let out = create(Some(&controller), &format!("probe-{i}"), false);
        if refused(&out, "may write only EndpointSlices labelled") {
            enforced = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        enforced,
        "the controller's unlabelled slice was never refused"
    );

    let ok = |out: std::process::Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(
        create(Some(&controller), "ours", true),
        "the controller's own slice",
    );
    let other = create(None, "forged", true);
    assert!(
        refused(&other, "only siesta-controller writes"),
        "another user's slice in Siesta's name: {}",
        String::from_utf8_lossy(&other.stderr)
    );
    ok(create(None, "theirs", false), "another user's own slice");
    let delete = |who: &str, name: &str| {
        kubectl(
            &["delete", "endpointslice", name, "-n", &ns.0, "--as", who],
            None,
        )
    };
    let theirs = delete(&controller, "theirs");
    assert!(
        refused(&theirs, "may write only"),
        "the controller deleting a slice not its own: {}",
        String::from_utf8_lossy(&theirs.stderr)
    );
    ok(
        delete(&controller, "ours"),
        "the controller deleting its own",
    );
}

/// Delete these cluster objects (`kind/name`) when dropped.
struct DeleteOnDrop(Vec<String>);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        for o in &self.0 {
            let _ = kubectl(&["delete", o, "--wait=false", "--ignore-not-found"], None);
        }
    }
}

/// Remove `field` from `obj` if it is an object that has it.
fn remove(obj: &mut Value, field: &str) {
    if let Some(map) = obj.as_object_mut() {
        map.remove(field);
    }
}

/// A namespace of this test's own, deleted when dropped.
struct TempNamespace(String);

impl TempNamespace {
    fn create(prefix: &str, labels: &[&str]) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("{prefix}-{}-{nanos}", std::process::id());
        kubectl_ok(&["create", "namespace", &name], None);
        let ns = TempNamespace(name);
        if !labels.is_empty() {
            let mut args = vec!["label", "namespace", ns.0.as_str()];
            args.extend(labels);
            kubectl_ok(&args, None);
        }
        ns
    }
}

impl Drop for TempNamespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.0, "--wait=false"], None);
    }
}

/// The pods of both Deployments pass Pod Security admission at the
/// `restricted` level, which siesta-system enforces (and a pod without
/// Siesta's security context does not, so the check is real).
#[test]
fn pods_meet_the_restricted_pod_security_standard() {
    let ns = TempNamespace::create(
        "siesta-psa",
        &[
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ],
    );
    let pod = |name: &str, mut spec: Value| {
        // The ServiceAccounts do not exist here; Pod Security does not look at them.
        remove(&mut spec, "serviceAccountName");
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns.0},
            "spec": spec,
        })
        .to_string()
    };
    let deployments: Vec<Value> = kustomize_base()
        .into_iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert_eq!(deployments.len(), 2);
    for d in &deployments {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let spec = d["spec"]["template"]["spec"].clone();
        kubectl_ok(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&pod(name, spec.clone())),
        );

        let mut bare = spec;
        remove(&mut bare, "securityContext");
        remove(&mut bare["containers"][0], "securityContext");
        let refused = kubectl(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&pod(name, bare)),
        );
        assert!(
            !refused.status.success()
                && String::from_utf8_lossy(&refused.stderr).contains("PodSecurity"),
            "a {name} pod without security contexts should be refused: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }
}

/// `make run` does what it prints: its own config sleeps the demo namespace
/// after 2 idle minutes at any hour (no default schedule that would put it to
/// sleep at once outside office hours).
#[test]
fn the_make_run_demo_config_sleeps_after_two_idle_minutes_at_any_hour() {
    let config = siesta::config::load(&root().join("config/demo.yaml")).expect("config/demo.yaml");
    assert_eq!(config.defaults.schedule, None);
    assert!(config.policies.is_empty());
    assert_eq!(
        config.defaults.idle_after,
        siesta::annotations::IdleAfter::After(Duration::from_secs(120))
    );
    let script = std::fs::read_to_string(root().join("scripts/run.sh")).expect("scripts/run.sh");
    assert!(
        script.contains("config/demo.yaml"),
        "run.sh uses the demo config"
    );
    assert!(script.contains("sleeps after 2 minutes without activity"));
}
