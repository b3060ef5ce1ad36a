//! Which GitOps agent manages a workload, and how sleep keeps it from
//! undoing the sleep. Pure: read from a workload's labels, annotations and
//! managedFields managers.
//!
//! - Flux's kustomize-controller skips an object annotated
//!   `kustomize.toolkit.fluxcd.io/reconcile: disabled` in its server-side
//!   apply. The sleep patch sets it (recording a value a user had set in
//!   `siesta.dev/original-reconcile`) and the wake patch puts back what was
//!   there, in the same requests that scale and record: the namespace stays
//!   asleep across reconciliations and wakes to the Git state, a commit made
//!   meanwhile applied at the next interval.
//! - Flux's helm-controller corrects drift only with drift detection on, and
//!   then skips objects annotated `helm.toolkit.fluxcd.io/driftDetection:
//!   disabled`: the same treatment with that annotation.
//! - Argo CD has no per-object switch: with self-heal on it scales a sleeping
//!   workload back up, unless its global config ignores Siesta's field
//!   manager. Siesta cannot fix that for the admin; it says exactly what to
//!   apply ([`ARGO_CD_FIX`]) when it sees Argo CD undo a sleep.
use std::collections::BTreeMap;
use std::fmt;

pub const FLUX_RECONCILE: &str = "kustomize.toolkit.fluxcd.io/reconcile";
pub const HELM_DRIFT_DETECTION: &str = "helm.toolkit.fluxcd.io/driftDetection";
/// The value the agent's annotation had before sleep (`""`: it had none).
pub const ORIGINAL_RECONCILE: &str = "siesta.dev/original-reconcile";
/// Both Flux switches take this value.
pub const DISABLED: &str = "disabled";

const KUSTOMIZE_NAME: &str = "kustomize.toolkit.fluxcd.io/name";
const KUSTOMIZE_NAMESPACE: &str = "kustomize.toolkit.fluxcd.io/namespace";
const HELM_NAME: &str = "helm.toolkit.fluxcd.io/name";
const HELM_NAMESPACE: &str = "helm.toolkit.fluxcd.io/namespace";
const ARGO_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
const ARGO_INSTANCE: &str = "argocd.argoproj.io/instance";

/// The managedFields managers of the agents (server-side apply and their
/// clients' defaults).
const FLUX_MANAGERS: &[&str] = &["kustomize-controller", "helm-controller"];
const ARGO_MANAGERS: &[&str] = &["argocd-controller", "argocd-application-controller"];

/// What Argo CD's admin applies so that Argo CD leaves the replicas Siesta
/// writes alone (global `argocd-cm`; each Application also needs the sync
/// option, or a sync writes them back).
pub const ARGO_CD_FIX: &str = "in ConfigMap argocd/argocd-cm set `resource.customizations.ignoreDifferences.all: \"managedFieldsManagers: [siesta]\"`, and add the sync option RespectIgnoreDifferences=true to the Applications";

/// The agent that manages a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Agent {
    /// A Flux Kustomization (namespace, name).
    Kustomization(String, String),
    /// A Flux HelmRelease (namespace, name).
    HelmRelease(String, String),
    /// An Argo CD Application (its name, as the tracking label or id says).
    ArgoCd(String),
}

impl Agent {
    /// The per-object annotation that makes this agent leave the workload
    /// alone while it sleeps; Argo CD has none.
    pub fn pause_annotation(&self) -> Option<&'static str> {
        match self {
            Agent::Kustomization(..) => Some(FLUX_RECONCILE),
            Agent::HelmRelease(..) => Some(HELM_DRIFT_DETECTION),
            Agent::ArgoCd(_) => None,
        }
    }

    /// Short, for tables: `flux`, `helm`, `argocd`.
    pub fn short(&self) -> &'static str {
        match self {
            Agent::Kustomization(..) => "flux",
            Agent::HelmRelease(..) => "helm",
            Agent::ArgoCd(_) => "argocd",
        }
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Agent::Kustomization(ns, name) => write!(f, "Flux Kustomization {ns}/{name}"),
            Agent::HelmRelease(ns, name) => write!(f, "Flux HelmRelease {ns}/{name}"),
            Agent::ArgoCd(app) => write!(f, "Argo CD Application {app}"),
        }
    }
}

/// The agent that manages a workload, from its labels and annotations, else
/// from its managedFields managers; `None` for none Siesta knows.
pub fn detect(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    managers: &[&str],
) -> Option<Agent> {
    let pair = |name: &str, namespace: &str| {
        labels.get(name).map(|n| {
            (
                labels.get(namespace).cloned().unwrap_or_default(),
                n.clone(),
            )
        })
    };
    if let Some((ns, name)) = pair(KUSTOMIZE_NAME, KUSTOMIZE_NAMESPACE) {
        return Some(Agent::Kustomization(ns, name));
    }
    if let Some((ns, name)) = pair(HELM_NAME, HELM_NAMESPACE) {
        return Some(Agent::HelmRelease(ns, name));
    }
    // `app:group/kind:namespace/name`: the Application is before the first colon.
    if let Some(id) = annotations.get(ARGO_TRACKING_ID) {
        let app = id.split(':').next().unwrap_or_default();
        return Some(Agent::ArgoCd(app.to_string()));
    }
    if let Some(app) = labels.get(ARGO_INSTANCE) {
        return Some(Agent::ArgoCd(app.clone()));
    }
    // Argo CD's legacy label tracking uses app.kubernetes.io/instance, which
    // Helm charts set too: only Argo CD's own field manager says it is Argo's.
    if managers.iter().any(|m| ARGO_MANAGERS.contains(m)) {
        let app = labels
            .get("app.kubernetes.io/instance")
            .cloned()
            .unwrap_or_default();
        return Some(Agent::ArgoCd(app));
    }
    if managers.iter().any(|m| FLUX_MANAGERS.contains(m)) {
        return Some(Agent::Kustomization(String::new(), String::new()));
    }
    None
}

/// Whether a field manager is Argo CD's (the one that scaled a sleeping
/// workload back up, say).
pub fn is_argo_cd(manager: &str) -> bool {
    ARGO_MANAGERS.contains(&manager)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flux_and_argo_cd_are_told_apart_by_their_own_marks() {
        let none = BTreeMap::new();
        let k = map(&[
            (KUSTOMIZE_NAME, "apps"),
            (KUSTOMIZE_NAMESPACE, "flux-system"),
        ]);
        assert_eq!(
            detect(&k, &none, &[]),
            Some(Agent::Kustomization("flux-system".into(), "apps".into()))
        );
        assert_eq!(
            detect(&k, &none, &[]).unwrap().pause_annotation(),
            Some(FLUX_RECONCILE)
        );
        let h = map(&[(HELM_NAME, "web"), (HELM_NAMESPACE, "team-a")]);
        let helm = detect(&h, &none, &[]).unwrap();
        assert_eq!(helm.pause_annotation(), Some(HELM_DRIFT_DETECTION));
        assert_eq!(helm.to_string(), "Flux HelmRelease team-a/web");
        let argo = map(&[(ARGO_TRACKING_ID, "shop:apps/Deployment:team-a/web")]);
        let a = detect(&none, &argo, &[]).unwrap();
        assert_eq!(a, Agent::ArgoCd("shop".into()));
        assert_eq!(a.pause_annotation(), None);
    }

    #[test]
    fn a_helm_charts_instance_label_alone_is_not_argo_cd() {
        let l = map(&[("app.kubernetes.io/instance", "web")]);
        let none = BTreeMap::new();
        assert_eq!(
            detect(&l, &none, &["helm", "kubectl-client-side-apply"]),
            None
        );
        assert_eq!(
            detect(&l, &none, &["argocd-controller"]),
            Some(Agent::ArgoCd("web".into()))
        );
        assert!(is_argo_cd("argocd-controller") && !is_argo_cd("siesta"));
    }
}
