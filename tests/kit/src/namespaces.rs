//! Namespaces: unique names, fixtures labelled for a test group, their
//! annotations and Siesta states.
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::{eventually, replicas_of};

/// Annotations of a namespace that sleeps and wakes only when told to.
pub const MANUAL: &[(&str, &str)] = &[
    ("siesta.dev/enabled", "true"),
    ("siesta.dev/idle-after", "off"),
];

/// A name no other test or run has used: `<prefix>-<up to 10 hex digits>`.
pub fn unique(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{prefix}-{:x}", h.finish() & 0xff_ffff_ffff)
}

/// Create the namespace `name` with these labels and annotations.
pub async fn create_namespace(
    client: &kube::Client,
    name: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(map(labels)),
            annotations: Some(map(annotations)),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// A fresh namespace with a unique name, labelled for a test group
/// (`siesta-test=<group>`, what its controller selects), with annotations.
pub async fn namespace(
    client: &kube::Client,
    prefix: &str,
    group: &str,
    annotations: &[(&str, &str)],
) -> String {
    let name = unique(prefix);
    create_namespace(client, &name, &[("siesta-test", group)], annotations).await;
    name
}

/// Assert a namespace's recorded state and reason.
pub async fn assert_state(c: &kube::Client, ns: &str, state: &str, reason: &str) {
    let got = (
        ns_annotation(c, ns, "siesta.dev/state").await,
        ns_annotation(c, ns, "siesta.dev/reason").await,
    );
    assert_eq!(
        (got.0.as_deref(), got.1.as_deref()),
        (Some(state), Some(reason)),
        "state and reason of {ns}"
    );
}

/// Delete a namespace, if it is there.
pub async fn remove_namespace(client: &kube::Client, ns: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await;
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

/// Wait until a namespace's `siesta.dev/state` is `want`.
pub async fn state_is(c: &kube::Client, ns: &str, want: &str, within: Duration) {
    eventually(&format!("{ns} is {want}"), within, || async {
        ns_annotation(c, ns, "siesta.dev/state").await.as_deref() == Some(want)
    })
    .await;
}

/// Whether every one of these namespaces is in state `want`.
pub async fn all_in_state(c: &kube::Client, names: &[String], want: &str) -> bool {
    for ns in names {
        if ns_annotation(c, ns, "siesta.dev/state").await.as_deref() != Some(want) {
            return false;
        }
    }
    true
}

/// Ask a namespace to sleep (`siesta.dev/action`) and wait until it is asleep
/// with its Deployment `web` at zero.
pub async fn sleep_and_wait(c: &kube::Client, ns: &str) {
    annotate_namespace(c, ns, json!({"siesta.dev/action": "sleep"})).await;
    eventually(&format!("{ns} asleep"), Duration::from_secs(20), || async {
        ns_annotation(c, ns, "siesta.dev/state").await.as_deref() == Some("asleep")
            && replicas_of::<Deployment>(c, ns, "web").await == Some(0)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::unique;

    #[test]
    fn unique_names_are_dns_labels_and_differ() {
        let (a, b) = (unique("ctl-optout"), unique("ctl-optout"));
        assert_ne!(a, b);
        for name in [a, b] {
            let suffix = name.strip_prefix("ctl-optout-").expect("the prefix");
            assert!(
                (1..=10).contains(&suffix.len())
                    && suffix
                        .bytes()
                        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{name}"
            );
        }
    }
}
