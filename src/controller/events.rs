//! Kubernetes Events (`events.k8s.io/v1`) that tell users what Siesta did.
//!
//! Each Event is created once and never patched into a series: Siesta emits a
//! handful per transition, and keeping no cache of past Events keeps memory
//! flat when a thousand namespaces change at once (kube-runtime's Recorder
//! caches every Event it sent, about 9 MiB after 2,000 of them).
use chrono::Utc;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

/// Normal or Warning, as Kubernetes spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

/// Creates Events as `siesta` (reporting controller) and this replica (instance).
#[derive(Clone)]
pub struct Publisher {
    client: kube::Client,
    instance: String,
}

impl Publisher {
    pub fn new(client: kube::Client, instance: String) -> Publisher {
        Publisher { client, instance }
    }

    /// Create one Event about `regarding`, in its namespace (or `default`).
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        kind: Kind,
        reason: &str,
        note: String,
    ) -> kube::Result<()> {
        let event = build(regarding, kind, reason, note, &self.instance);
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        Api::<Event>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }
}

/// The Event object (pure, for tests).
fn build(
    regarding: &ObjectReference,
    kind: Kind,
    reason: &str,
    note: String,
    instance: &str,
) -> Event {
    let now = Utc::now();
    let name = regarding.name.as_deref().unwrap_or("object");
    Event {
        metadata: ObjectMeta {
            // unique without a round trip: object name plus the time in ns
            name: Some(format!(
                "{name}.{:x}",
                now.timestamp_nanos_opt().unwrap_or_default()
            )),
            namespace: Some(
                regarding
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            ),
            ..Default::default()
        },
        event_time: Some(crate::activity::lease::to_micro(now)),
        action: Some(reason.into()),
        reason: Some(reason.into()),
        // events.k8s.io/v1 caps the note at 1 KiB
        note: Some(crate::annotations::truncate(&note, 1000)),
        type_: Some(
            match kind {
                Kind::Normal => "Normal",
                Kind::Warning => "Warning",
            }
            .into(),
        ),
        regarding: Some(regarding.clone()),
        reporting_controller: Some("siesta.dev/controller".into()),
        reporting_instance: Some(crate::annotations::truncate(instance, 120)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_lives_with_what_it_regards_and_stays_within_the_api_limits() {
        let regarding = ObjectReference {
            kind: Some("Deployment".into()),
            name: Some("web".into()),
            namespace: Some("team-a".into()),
            ..Default::default()
        };
        let e = build(
            &regarding,
            Kind::Warning,
            "ChangedWhileAsleep",
            "x".repeat(5000),
            "r1",
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("team-a"));
        assert!(e.metadata.name.as_deref().unwrap().starts_with("web."));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert!(e.note.unwrap().len() <= 1024);
        assert_eq!(e.regarding, Some(regarding));
        assert!(e.event_time.is_some() && e.reporting_instance.is_some());
    }
}
