//! The wait-for-wake gate. A namespace index fed by a Namespace watch (state,
//! state-since, wake page) and, per namespace, a `watch` channel that is poked
//! whenever the namespace or the route table changes. A held request is a
//! future parked on that channel: no thread, no buffered body.
//!
//! Contract (as in the Knative activator): the fast path answers at once when
//! the namespace is awake and an endpoint is ready; the cold path waits for a
//! change and looks again; the caller's timeout answers 504.
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use tokio::sync::watch;

use super::FastMap;

use crate::activity::NamespaceStates;
use crate::annotations::{Recorded, WAKE_PAGE, WakePage};
use crate::model::State;

/// What the proxy needs to know about one namespace.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NamespaceInfo {
    /// `None` while Siesta has never recorded a state: not managed, never held.
    pub state: Option<State>,
    pub since: Option<DateTime<Utc>>,
    pub wake_page: Option<WakePage>,
}

impl NamespaceInfo {
    pub fn from_namespace(ns: &Namespace) -> NamespaceInfo {
        let Some(ann) = ns.metadata.annotations.as_ref() else {
            return NamespaceInfo {
                state: None,
                since: None,
                wake_page: None,
            };
        };
        let recorded = Recorded::parse(ann);
        NamespaceInfo {
            state: ann
                .contains_key(crate::annotations::STATE)
                .then_some(recorded.state),
            since: recorded.since,
            wake_page: ann.get(WAKE_PAGE).and_then(|v| WakePage::parse(v).ok()),
        }
    }

    /// Asleep or waking: requests must wait.
    pub fn sleeping(&self) -> bool {
        matches!(self.state, Some(State::Asleep | State::Waking))
    }
}

/// Namespace states plus one wake-up channel per namespace with waiters.
#[derive(Default)]
pub struct Namespaces {
    infos: RwLock<FastMap<String, NamespaceInfo>>,
    gates: Mutex<HashMap<String, watch::Sender<()>>>,
    /// A relist in progress (watcher Init .. InitDone).
    relist: Mutex<Option<FastMap<String, NamespaceInfo>>>,
}

impl Namespaces {
    pub fn info(&self, namespace: &str) -> Option<NamespaceInfo> {
        self.infos
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace)
            .copied()
    }

    /// A namespace was added or changed.
    pub fn apply(&self, ns: &Namespace) {
        let Some(name) = ns.metadata.name.clone() else {
            return;
        };
        let info = NamespaceInfo::from_namespace(ns);
        let changed = {
            let mut infos = self.infos.write().unwrap_or_else(|p| p.into_inner());
            infos.insert(name.clone(), info) != Some(info)
        };
        if changed {
            self.notify(&name);
        }
    }

    pub fn delete(&self, name: &str) {
        self.infos
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.notify(name);
    }

    pub fn relist_start(&self) {
        *self.relist.lock().unwrap_or_else(|p| p.into_inner()) = Some(FastMap::default());
    }

    pub fn relist_item(&self, ns: &Namespace) {
        if let (Some(name), Some(pending)) = (
            ns.metadata.name.clone(),
            self.relist
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut(),
        ) {
            pending.insert(name, NamespaceInfo::from_namespace(ns));
        }
    }

    pub fn relist_done(&self) {
        if let Some(fresh) = self.relist.lock().unwrap_or_else(|p| p.into_inner()).take() {
            *self.infos.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        }
        self.notify_all();
    }

    /// A receiver that sees every change after this call.
    pub fn subscribe(&self, namespace: &str) -> watch::Receiver<()> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        match gates.get(namespace) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(());
                gates.insert(namespace.to_string(), tx);
                rx
            }
        }
    }

    /// Wake the waiters of one namespace; forget its channel once nobody waits.
    pub fn notify(&self, namespace: &str) {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = gates.get(namespace) {
            if tx.receiver_count() == 0 {
                gates.remove(namespace);
            } else {
                tx.send_replace(());
            }
        }
    }

    /// Wake every waiter: the route table (endpoints) changed.
    pub fn notify_all(&self) {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.retain(|_, tx| {
            tx.send_replace(());
            tx.receiver_count() > 0
        });
    }

    /// Wait until `ready()` holds, looking again at each change of `namespace`.
    /// The caller bounds it with the hold timeout.
    pub async fn wait_until(&self, namespace: &str, mut ready: impl FnMut() -> bool) {
        loop {
            // Subscribe before looking, so a change in between is not lost.
            let mut rx = self.subscribe(namespace);
            if ready() {
                return;
            }
            if rx.changed().await.is_err() {
                // The channel was dropped (never while we hold a receiver); look again.
                tokio::task::yield_now().await;
            }
        }
    }
}

impl NamespaceStates for Namespaces {
    fn state(&self, namespace: &str) -> Option<(State, Option<DateTime<Utc>>)> {
        let info = self.info(namespace)?;
        Some((info.state?, info.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    fn ns(name: &str, state: &str) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        n.metadata.annotations = Some(BTreeMap::from([(
            crate::annotations::STATE.to_string(),
            state.to_string(),
        )]));
        n
    }

    #[tokio::test]
    async fn a_held_waiter_is_released_when_its_namespace_wakes() {
        let nss = Arc::new(Namespaces::default());
        nss.apply(&ns("team-a", "asleep"));
        let n = nss.clone();
        let waiter = tokio::spawn(async move {
            n.wait_until("team-a", || n.info("team-a").is_some_and(|i| !i.sleeping()))
                .await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        nss.apply(&ns("team-a", "waking"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        nss.apply(&ns("team-a", "awake"));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(
            nss.gates
                .lock()
                .unwrap()
                .values()
                .all(|tx| tx.receiver_count() == 0)
        );
    }

    #[test]
    fn unmanaged_namespaces_never_sleep() {
        let nss = Namespaces::default();
        let mut plain = Namespace::default();
        plain.metadata.name = Some("plain".into());
        nss.apply(&plain);
        assert!(!nss.info("plain").unwrap().sleeping());
        assert_eq!(nss.state("plain"), None);
    }

    #[test]
    fn a_relist_replaces_the_index() {
        let nss = Namespaces::default();
        nss.apply(&ns("gone", "asleep"));
        nss.relist_start();
        nss.relist_item(&ns("kept", "awake"));
        nss.relist_done();
        assert!(nss.info("gone").is_none());
        assert_eq!(nss.info("kept").unwrap().state, Some(State::Awake));
    }
}
