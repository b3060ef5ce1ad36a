//! Helpers for integration tests against the local cluster (tests/cluster/):
//! a kube client, Siesta processes that die with the test, fixture builders and
//! a polling `eventually`.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, Namespace, PodSpec, PodTemplateSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

pub async fn client() -> kube::Client {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is unset: start the local cluster with `tests/cluster/cluster.sh up` and `eval \"$(tests/cluster/cluster.sh env)\"`, or run `make test`"
    );
    kube::Client::try_default()
        .await
        .expect("a kube client from KUBECONFIG")
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `siesta` subprocess, killed when dropped and exiting by itself when the
/// test process ends (its standard input closes).
pub struct Siesta {
    pub child: Child,
    pub admin: u16,
}

impl Siesta {
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Siesta {
        let admin = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_siesta"));
        cmd.args(args)
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin}"))
            .env("SIESTA_EXIT_WITH_STDIN", "1")
            .env(
                "SIESTA_LOG",
                std::env::var("SIESTA_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start siesta");
        Siesta { child, admin }
    }

    /// A controller managing only namespaces labelled `siesta-test=<group>`.
    pub fn controller(group: &str, extra: &[&str]) -> Siesta {
        let mut args = vec!["--leader-lease-duration", "4s"];
        args.extend_from_slice(extra);
        Siesta::controller_with_env(group, &args, &[])
    }

    /// A controller with extra environment (for example another KUBECONFIG).
    pub fn controller_with_env(group: &str, extra: &[&str], envs: &[(&str, &str)]) -> Siesta {
        let audit = format!("127.0.0.1:{}", free_port());
        let selector = format!("siesta-test={group}");
        // Each group leads through its own Lease, so test groups running at
        // once never wait for each other.
        let lease_ns = format!("siesta-lease-{group}");
        let mut args = vec!["controller", "--namespace-selector", &selector];
        if !extra.contains(&"--audit-listen") {
            args.extend(["--audit-listen", &audit]);
        }
        if !extra.contains(&"--leader-election-namespace") {
            let _ = Command::new("kubectl")
                .args(["create", "namespace", &lease_ns])
                .output();
            args.extend(["--leader-election-namespace", &lease_ns]);
        }
        args.extend_from_slice(extra);
        Siesta::start(&args, envs)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn metrics(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .unwrap_or_default()
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin);
        eventually("siesta ready", Duration::from_secs(30), || {
            let url = url.clone();
            async move { http_get(&url).await.is_some() }
        })
        .await;
    }
}

impl Drop for Siesta {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tiny HTTP/1.1 GET over loopback; Some(body) on 200.
pub async fn http_get(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Poll until `check` is true, or fail the test after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fresh namespace with a unique name, labelled for a test group, with annotations.
pub async fn namespace(
    client: &kube::Client,
    prefix: &str,
    group: &str,
    annotations: &[(&str, &str)],
) -> String {
    let name = format!("{prefix}-{:x}", rand_suffix());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(BTreeMap::from([(
                "siesta-test".to_string(),
                group.to_string(),
            )])),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    name
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() & 0xff_ffff
}

pub async fn annotate_namespace(client: &kube::Client, ns: &str, annotations: serde_json::Value) {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .expect("annotate namespace");
}

pub async fn ns_annotation(client: &kube::Client, ns: &str, key: &str) -> Option<String> {
    let n = Api::<Namespace>::all(client.clone()).get(ns).await.ok()?;
    n.metadata.annotations?.get(key).cloned()
}

fn pod_template(app: &str, cpu: &str, memory: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".into(), app.into())])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.invalid/app:1".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity(memory.into())),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([("app".into(), app.into())])),
        ..Default::default()
    }
}

/// A Deployment fixture: `deployment("web").replicas(3).requests("250m", "128Mi")`.
#[derive(Clone)]
pub struct Workload {
    pub name: String,
    pub replicas: i32,
    pub cpu: String,
    pub memory: String,
    pub annotations: BTreeMap<String, String>,
}

pub fn workload(name: &str) -> Workload {
    Workload {
        name: name.into(),
        replicas: 1,
        cpu: "100m".into(),
        memory: "64Mi".into(),
        annotations: BTreeMap::new(),
    }
}

impl Workload {
    pub fn replicas(mut self, n: i32) -> Self {
        self.replicas = n;
        self
    }
    pub fn requests(mut self, cpu: &str, memory: &str) -> Self {
        self.cpu = cpu.into();
        self.memory = memory.into();
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.annotations.insert(k.into(), v.into());
        self
    }
    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.clone()),
            annotations: Some(self.annotations.clone()),
            ..Default::default()
        }
    }
    pub fn deployment(&self) -> Deployment {
        Deployment {
            metadata: self.meta(),
            spec: Some(DeploymentSpec {
                replicas: Some(self.replicas),
                selector: selector(&self.name),
                template: pod_template(&self.name, &self.cpu, &self.memory),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    pub fn statefulset(&self) -> StatefulSet {
        StatefulSet {
            metadata: self.meta(),
            spec: Some(StatefulSetSpec {
                replicas: Some(self.replicas),
                selector: selector(&self.name),
                template: pod_template(&self.name, &self.cpu, &self.memory),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    pub fn cronjob(&self, suspend: bool) -> CronJob {
        CronJob {
            metadata: self.meta(),
            spec: CronJobSpec {
                schedule: "*/5 * * * *".into(),
                suspend: Some(suspend),
                job_template: JobTemplateSpec {
                    spec: Some(k8s_openapi::api::batch::v1::JobSpec {
                        template: PodTemplateSpec {
                            spec: Some(PodSpec {
                                restart_policy: Some("Never".into()),
                                ..pod_template(&self.name, &self.cpu, &self.memory)
                                    .spec
                                    .unwrap()
                            }),
                            ..Default::default()
                        },
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

pub async fn create<K>(client: &kube::Client, ns: &str, obj: &K) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), obj)
        .await
        .expect("create workload")
}

pub async fn replicas_of<K>(client: &kube::Client, ns: &str, name: &str) -> Option<i32>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let v = serde_json::to_value(
        Api::<K>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .ok()?,
    )
    .ok()?;
    v["spec"]["replicas"].as_i64().map(|n| n as i32)
}

pub async fn annotation_of<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Option<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let obj = Api::<K>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    obj.meta().annotations.as_ref()?.get(key).cloned()
}

pub async fn scale<K>(client: &kube::Client, ns: &str, name: &str, replicas: i32)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("scale");
}

/// Events on an object, newest last: (reason, message).
pub async fn events_for(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String)> {
    use k8s_openapi::api::events::v1::Event;
    let list = Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Run kubectl (the one on PATH after `cluster.sh env`); panics with its stderr on failure.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
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

/// Apply only the ServiceAccounts and RBAC objects of the shipped Kustomize base.
pub fn apply_shipped_rbac() {
    let rendered = kubectl(
        &["kustomize", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy")],
        None,
    );
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
}

/// Wait until a workload has this many replicas (a sleep or wake pass runs just
/// after the namespace's state annotation changes).
pub async fn replicas_become<K>(client: &kube::Client, ns: &str, name: &str, want: i32)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    eventually(
        &format!("{ns}/{name} at {want} replicas"),
        Duration::from_secs(15),
        || async { replicas_of::<K>(client, ns, name).await == Some(want) },
    )
    .await;
}

/// A backend that answers every request with "hello".
pub async fn backend() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
                    )
                    .await;
            });
        }
    });
    port
}

pub async fn get_via_proxy(proxy: u16, host: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", proxy))
        .await
        .unwrap();
    s.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).to_string()
}

/// Annotations of a namespace that sleeps and wakes only when told to.
pub const MANUAL: &[(&str, &str)] = &[
    ("siesta.dev/enabled", "true"),
    ("siesta.dev/idle-after", "off"),
];

/// Ask a namespace to sleep (`siesta.dev/action`) and wait until it is asleep
/// with its Deployment `web` at zero.
pub async fn sleep_and_wait(c: &kube::Client, ns: &str) {
    annotate_namespace(c, ns, serde_json::json!({"siesta.dev/action": "sleep"})).await;
    eventually(&format!("{ns} asleep"), Duration::from_secs(20), || async {
        ns_annotation(c, ns, "siesta.dev/state").await.as_deref() == Some("asleep")
            && replicas_of::<k8s_openapi::api::apps::v1::Deployment>(c, ns, "web").await == Some(0)
    })
    .await;
}
