//! Gateway API status, written by the leader alone: the proxy runs with any
//! number of replicas, which would race each other for one atomic list, so
//! it only reads. For every HTTPRoute, the `status.parents` entries of
//! Siesta's parents ([`crate::gateway::route_status`]: other controllers'
//! entries kept as they are), and `Accepted` for GatewayClasses of
//! `controllerName: siesta.dev/gateway`. The watches run on every replica
//! (a new leader starts synced) once the CRDs are installed; a pass runs
//! after every change, debounced, and writes only what differs.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::gateway::types::{GatewayClass, HTTPRoute};
use crate::metrics::{ErrorKind, Metrics};
use crate::proxy::gateway::Stores;
use crate::proxy::ingress::{drive, reflector};
use crate::supervisor::Supervisor;

const DEBOUNCE: Duration = Duration::from_millis(50);
/// After a failed write, the next pass comes at the latest this much later.
const RETRY: Duration = Duration::from_secs(5);

/// The synced stores a pass reads.
#[derive(Clone)]
struct Watched {
    gateway: Stores,
    /// Service metadata: whether a backendRef's Service exists.
    services: Store<PartialObjectMeta<Service>>,
}

/// The status writer: watches on every replica, passes while leading.
#[derive(Clone)]
pub struct Statuses {
    client: kube::Client,
    watched: watch::Receiver<Option<Watched>>,
    changed: Arc<Notify>,
    metrics: Arc<Metrics>,
}

/// Start the watches (once the Gateway API CRDs are there).
pub fn start(client: &kube::Client, tasks: &mut Supervisor, metrics: Arc<Metrics>) -> Statuses {
    let (tx, watched) = watch::channel(None);
    let changed = Arc::new(Notify::new());
    let (c, ch, m) = (client.clone(), changed.clone(), metrics.clone());
    tasks.spawn_forever("gateway api watches", async move {
        let gateway = Stores::start(c.clone(), ch.clone(), m.clone()).await;
        let (services, writer) = reflector::store();
        drive(
            reflector(
                writer,
                watcher(
                    Api::<PartialObjectMeta<Service>>::all(c),
                    watcher::Config::default(),
                ),
            ),
            ch,
            m,
        );
        let _ = services.wait_until_ready().await;
        tx.send_replace(Some(Watched { gateway, services }));
        std::future::pending::<()>().await
    });
    Statuses {
        client: client.clone(),
        watched,
        changed,
        metrics,
    }
}

impl Statuses {
    /// Passes until dropped (the leader aborts this at the end of its term).
    pub async fn run(mut self) {
        let Ok(watched) = self
            .watched
            .wait_for(Option::is_some)
            .await
            .map(|w| w.clone())
        else {
            return;
        };
        let Some(watched) = watched else { return };
        loop {
            let written = self.pass(&watched).await;
            tokio::select! {
                () = self.changed.notified() => tokio::time::sleep(DEBOUNCE).await,
                () = tokio::time::sleep(RETRY), if !written => {}
            }
        }
    }

    /// One pass over every class and route; false if a write failed.
    async fn pass(&self, w: &Watched) -> bool {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut ok = true;
        for class in w.gateway.classes.state() {
            if let Some(status) = crate::gateway::class_status(&class, &now) {
                let api = Api::<GatewayClass>::all(self.client.clone());
                ok &= self.write(&api, &class.metadata, json!(status)).await;
            }
        }
        let exists =
            |ns: &str, name: &str| w.services.get(&ObjectRef::new(name).within(ns)).is_some();
        for outcome in w.gateway.attach(&exists) {
            let key = ObjectRef::new(&outcome.name).within(&outcome.namespace);
            let Some(route) = w.gateway.routes.get(&key) else {
                continue;
            };
            if let Some(status) =
                crate::gateway::route_status(route.status.as_ref(), &outcome, &now)
            {
                let api = Api::<HTTPRoute>::namespaced(self.client.clone(), &outcome.namespace);
                ok &= self.write(&api, &route.metadata, json!(status)).await;
            }
        }
        ok
    }

    /// Merge-patch the status, guarded by the resourceVersion the pass read:
    /// a conflict means a newer object is on its way to the store, and the
    /// pass it triggers writes from that.
    async fn write<K>(
        &self,
        api: &Api<K>,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        status: serde_json::Value,
    ) -> bool
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let name = meta.name.as_deref().unwrap_or_default();
        let patch = json!({
            "metadata": {"resourceVersion": meta.resource_version},
            "status": status,
        });
        let params = PatchParams {
            field_manager: Some(crate::FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch_status(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                tracing::info!(kind = %K::kind(&()), namespace = ?meta.namespace, name, "gateway api status written");
                true
            }
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => true,
            Err(e) => {
                tracing::warn!(error = %e, name, "gateway api status");
                self.metrics.error(ErrorKind::KubeApi);
                false
            }
        }
    }
}
