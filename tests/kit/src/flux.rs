//! Flux on the local cluster (tests/cluster/flux.sh): bare repositories on its
//! Git server, commits pushed with the git CLI, and the GitRepository and
//! Kustomization that make Flux apply them to a namespace.
//!
//! ```ignore
//! let repo = GitRepo::create("shop");
//! let rev = repo.commit(&[("app/web.yaml", &yaml(&workload("web").deployment()))], "web");
//! flux_sync(&ns, "shop", &repo, "./app");
//! flux_applied(&c, &ns, "shop", &rev, Duration::from_secs(60)).await;
//! ```
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::Api;
use kube::api::{ApiResource, DynamicObject};

use crate::{kubectl, unique};

/// How often the GitRepository polls Git and the Kustomization re-applies.
pub const FLUX_INTERVAL: &str = "5s";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is unset: start Flux with `tests/cluster/flux.sh up` (after cluster.sh up) and `eval \"$(tests/cluster/flux.sh env)\"`, or run `make test`"
        )
    })
}

/// The Git server's base URL (`http://127.0.0.1:PORT`): SIESTA_GIT_URL.
pub fn git_url() -> String {
    env("SIESTA_GIT_URL")
}

/// The directory of the Git server's bare repositories: SIESTA_GIT_DIR.
pub fn git_dir() -> PathBuf {
    PathBuf::from(env("SIESTA_GIT_DIR"))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Siesta Test",
            "-c",
            "user.email=test@siesta.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git on PATH");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository on the Git server (branch `main`) and a work tree that
/// commits to it and pushes over HTTP, as a person would.
pub struct GitRepo {
    /// `<name>.git` in [`git_dir`].
    pub name: String,
    /// What Flux clones: `http://127.0.0.1:PORT/<name>.git`.
    pub url: String,
    work: tempfile::TempDir,
}

impl GitRepo {
    /// A new empty repository with a unique name.
    pub fn create(prefix: &str) -> GitRepo {
        let name = format!("{}.git", unique(prefix));
        let root = git_dir();
        git(&root, &["init", "--quiet", "--bare", "-b", "main", &name]);
        let url = format!("{}/{name}", git_url());
        let work = tempfile::tempdir().unwrap();
        git(work.path(), &["init", "--quiet", "-b", "main"]);
        git(work.path(), &["remote", "add", "origin", &url]);
        GitRepo { name, url, work }
    }

    /// Write `files` (path in the repository, content), commit them all and push
    /// to `main`. Returns the commit's SHA-1, which Flux's revisions end with.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        let dir = self.work.path();
        for (path, content) in files {
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, content).unwrap();
        }
        git(dir, &["add", "--all"]);
        git(dir, &["commit", "--quiet", "--allow-empty", "-m", message]);
        git(dir, &["push", "--quiet", "origin", "main"]);
        git(dir, &["rev-parse", "HEAD"])
    }

    /// Remove files from the repository, commit and push. Returns the commit.
    pub fn remove(&self, paths: &[&str], message: &str) -> String {
        let dir = self.work.path();
        let mut args = vec!["rm", "--quiet"];
        args.extend_from_slice(paths);
        git(dir, &args);
        self.commit(&[], message)
    }
}

/// One object as a YAML document for a repository (apiVersion and kind included).
pub fn yaml<K: serde::Serialize>(obj: &K) -> String {
    serde_yaml_ng::to_string(obj).unwrap()
}

/// A GitRepository `name` in `ns` following `main` of `repo`, and a
/// Kustomization `name` applying `path` of it into `ns` (`targetNamespace`,
/// prune on), both with a [`FLUX_INTERVAL`] interval. Applied with kubectl, so
/// calling it again updates them.
pub fn flux_sync(ns: &str, name: &str, repo: &GitRepo, path: &str) {
    let url = &repo.url;
    kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: {name}, namespace: {ns}}}
spec:
  interval: {FLUX_INTERVAL}
  url: {url}
  ref: {{branch: main}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: {name}, namespace: {ns}}}
spec:
  interval: {FLUX_INTERVAL}
  sourceRef: {{kind: GitRepository, name: {name}}}
  path: {path:?}
  prune: true
  targetNamespace: {ns}
"
        )),
    );
}

fn kustomizations(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk =
        kube::api::GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "kustomizations"),
    )
}

/// The Kustomization's `status` (null until kustomize-controller has written one).
pub async fn kustomization_status(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> serde_json::Value {
    match kustomizations(client, ns).get_opt(name).await.unwrap() {
        Some(k) => k.data.get("status").cloned().unwrap_or_default(),
        None => serde_json::Value::Null,
    }
}

/// The revision the Kustomization last applied (`main@sha1:<commit>`).
pub async fn flux_revision(client: &kube::Client, ns: &str, name: &str) -> Option<String> {
    kustomization_status(client, ns, name).await["lastAppliedRevision"]
        .as_str()
        .map(str::to_string)
}

/// How many reconciles of the Kustomization `ns/name` kustomize-controller has
/// finished, from its log (SIESTA_FLUX_LOGS/kustomize-controller.log, one JSON
/// line "Reconciliation finished in ..., next run in 5s" each).
pub fn flux_reconciles(ns: &str, name: &str) -> usize {
    let log = PathBuf::from(env("SIESTA_FLUX_LOGS")).join("kustomize-controller.log");
    std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("Reconciliation finished"))
                && l["Kustomization"]["namespace"] == ns
                && l["Kustomization"]["name"] == name
        })
        .count()
}

/// Wait until the Kustomization has applied `commit` and is Ready; returns how
/// long that took. Fails the test with the Kustomization's status after `within`.
pub async fn flux_applied(
    client: &kube::Client,
    ns: &str,
    name: &str,
    commit: &str,
    within: Duration,
) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        let status = kustomization_status(client, ns, name).await;
        let applied = status["lastAppliedRevision"]
            .as_str()
            .is_some_and(|r| r.ends_with(commit));
        let ready = status["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if applied && ready {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "Kustomization {ns}/{name} has not applied {commit} after {within:?}: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The two workloads the Flux tests keep in Git: `web` (a Deployment of 2)
/// and `db` (a StatefulSet of 1), both running `image`, under `app/`.
pub fn app_manifests(image: &str) -> Vec<(&'static str, String)> {
    let set_image = |t: &mut k8s_openapi::api::core::v1::PodTemplateSpec| {
        t.spec.as_mut().expect("a pod spec").containers[0].image = Some(image.into());
    };
    let mut web = crate::workload("web").replicas(2).deployment();
    set_image(&mut web.spec.as_mut().expect("a spec").template);
    let mut db = crate::workload("db").statefulset();
    set_image(&mut db.spec.as_mut().expect("a spec").template);
    vec![("app/web.yaml", yaml(&web)), ("app/db.yaml", yaml(&db))]
}

/// Manifests as the `(path, content)` pairs [`GitRepo::commit`] takes.
pub fn as_files<'a>(m: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    m.iter().map(|(p, c)| (*p, c.as_str())).collect()
}
