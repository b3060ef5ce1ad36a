//! The redirect pass: while this replica leads, keep Siesta's redirect
//! EndpointSlices as [`crate::redirect::plan`] says, from watches of
//! Services, EndpointSlices, Deployments and StatefulSets (slimmed to what the
//! plan reads) and the controller's namespace store. A pass runs after every
//! change (debounced) and every second (a wake's linger ends by time).
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::proxy::ingress;
use tokio::sync::Notify;

use crate::annotations::{ORIGINAL_REPLICAS, Recorded};
use crate::metrics::{ErrorKind, Metrics};
use crate::redirect::{self, Cluster, NamespaceView, WorkloadView, Write};

/// Where the proxy is and which ports redirects may take.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The proxy's Service (`namespace/name`); its ready endpoints are the
    /// redirect slices' endpoints. `None` turns redirects off.
    pub proxy_service: Option<(String, String)>,
    pub ports: RangeInclusive<u16>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            proxy_service: Some(("siesta-system".into(), "siesta-proxy".into())),
            ports: redirect::DEFAULT_PORTS,
        }
    }
}

/// The watches behind redirect passes (they run on every replica, so a new
/// leader starts from synced stores).
#[derive(Clone)]
pub struct Redirects {
    client: kube::Client,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    changed: Arc<Notify>,
    settings: Settings,
    metrics: Arc<Metrics>,
}

const DEBOUNCE: Duration = Duration::from_millis(50);
const TICK: Duration = Duration::from_secs(1);
/// How long after a wake a redirect may wait for the Service's own pods, at least.
const MIN_LINGER: Duration = Duration::from_secs(60);

/// Start the watches; `None` when redirects are off.
pub fn start(
    client: &kube::Client,
    settings: Settings,
    metrics: Arc<Metrics>,
) -> Option<Redirects> {
    settings.proxy_service.as_ref()?;
    let changed = Arc::new(Notify::new());
    let services = watch(
        Api::all(client.clone()),
        &changed,
        &metrics,
        |s: &mut Service| {
            s.status = None;
            slim_meta(&mut s.metadata);
        },
    );
    let slices = watch(
        Api::all(client.clone()),
        &changed,
        &metrics,
        |s: &mut EndpointSlice| {
            slim_meta(&mut s.metadata);
        },
    );
    let deployments = watch(
        Api::all(client.clone()),
        &changed,
        &metrics,
        |d: &mut Deployment| {
            d.status = None;
            slim_meta(&mut d.metadata);
            if let Some(spec) = d.spec.as_mut() {
                spec.template.spec = None;
            }
        },
    );
    let statefulsets = watch(
        Api::all(client.clone()),
        &changed,
        &metrics,
        |d: &mut StatefulSet| {
            d.status = None;
            slim_meta(&mut d.metadata);
            if let Some(spec) = d.spec.as_mut() {
                spec.template.spec = None;
                spec.volume_claim_templates = None;
            }
        },
    );
    Some(Redirects {
        client: client.clone(),
        services,
        slices,
        deployments,
        statefulsets,
        changed,
        settings,
        metrics,
    })
}

/// What the plan never reads: managed fields, and annotations but Siesta's record.
fn slim_meta(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| k == ORIGINAL_REPLICAS);
    }
}

/// A slimmed store of `api`, its watch run as the proxy runs its route
/// watches (every event pokes `changed`).
fn watch<K>(
    api: Api<K>,
    changed: &Arc<Notify>,
    metrics: &Arc<Metrics>,
    slim: impl FnMut(&mut K) + Send + 'static,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let events = watcher(api, watcher::Config::default().page_size(super::LIST_PAGE)).modify(slim);
    ingress::drive(
        ingress::reflector(writer, events),
        changed.clone(),
        metrics.clone(),
    );
    store
}

impl Redirects {
    /// Passes until dropped (the leader aborts this at the end of its term).
    pub async fn run(self, namespaces: Store<Namespace>, hold_timeout: Duration) {
        let synced = tokio::try_join!(
            self.services.wait_until_ready(),
            self.slices.wait_until_ready(),
            self.deployments.wait_until_ready(),
            self.statefulsets.wait_until_ready(),
        );
        if synced.is_err() {
            return;
        }
        let linger = chrono::Duration::from_std(hold_timeout.max(MIN_LINGER)).unwrap_or_default();
        loop {
            self.pass(&namespaces, linger).await;
            tokio::select! {
                () = self.changed.notified() => tokio::time::sleep(DEBOUNCE).await,
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// One pass: read the stores, plan, write.
    pub async fn pass(&self, namespaces: &Store<Namespace>, linger: chrono::Duration) {
        let namespaces: Vec<NamespaceView> = namespaces
            .state()
            .iter()
            .filter_map(|ns| {
                let annotations = ns.metadata.annotations.as_ref()?;
                annotations.get(crate::annotations::STATE)?;
                let recorded = Recorded::parse(annotations);
                Some(NamespaceView {
                    name: ns.metadata.name.clone()?,
                    state: recorded.state,
                    since: recorded.since,
                })
            })
            .collect();
        let services = self.services.state();
        let slices = self.slices.state();
        let mut workloads = Vec::new();
        for d in self.deployments.state() {
            workloads.extend(view(&d.metadata, d.spec.as_ref().map(|s| &s.template)));
        }
        for s in self.statefulsets.state() {
            workloads.extend(view(&s.metadata, s.spec.as_ref().map(|s| &s.template)));
        }
        let proxy = self.proxy_addresses(&slices);
        let services: Vec<&Service> = services.iter().map(AsRef::as_ref).collect();
        let slice_refs: Vec<&EndpointSlice> = slices.iter().map(AsRef::as_ref).collect();
        let writes = redirect::plan(&Cluster {
            namespaces: &namespaces,
            services: &services,
            slices: &slice_refs,
            workloads: &workloads,
            proxy: &proxy,
            ports: self.settings.ports.clone(),
            linger,
            now: chrono::Utc::now(),
        });
        for w in writes {
            if let Err(e) = self.write(&w).await {
                tracing::warn!(error = %e, write = ?short(&w), "redirect slice");
                self.metrics.error(ErrorKind::RedirectWrite);
            }
        }
    }

    /// The ready addresses of the proxy's Service, from slices its
    /// endpoints' owner wrote (see [`crate::proxy::ingress::trusted_slice`]).
    fn proxy_addresses(&self, slices: &[Arc<EndpointSlice>]) -> Vec<IpAddr> {
        let Some((ns, name)) = self.settings.proxy_service.as_ref() else {
            return vec![];
        };
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            return vec![];
        };
        let selected = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|s| !s.is_empty());
        let mut out: Vec<IpAddr> = slices
            .iter()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(redirect::SERVICE_NAME_LABEL))
                        == Some(name)
                    && crate::proxy::ingress::trusted_slice(s, selected)
            })
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .flat_map(|e| e.addresses.iter().filter_map(|a| a.parse().ok()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    async fn write(&self, w: &Write) -> Result<(), kube::Error> {
        let api = |ns: &str| Api::<EndpointSlice>::namespaced(self.client.clone(), ns);
        match w {
            Write::Create(s) => {
                let ns = s.metadata.namespace.as_deref().unwrap_or_default();
                match api(ns).create(&PostParams::default(), s).await {
                    Ok(_) => {
                        tracing::info!(namespace = ns, slice = ?s.metadata.name, "redirecting a sleeping Service to the proxy");
                        Ok(())
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => self.replace(s).await,
                    Err(e) => Err(e),
                }
            }
            Write::Replace(s) => self.replace(s).await,
            Write::Delete { namespace, name } => {
                match api(namespace).delete(name, &DeleteParams::default()).await {
                    Ok(_) => {
                        tracing::info!(namespace, slice = name, "redirect removed");
                        Ok(())
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Replace a slice, on the resource version the cluster has now.
    async fn replace(&self, s: &EndpointSlice) -> Result<(), kube::Error> {
        let (ns, name) = (
            s.metadata.namespace.as_deref().unwrap_or_default(),
            s.metadata.name.as_deref().unwrap_or_default(),
        );
        let api = Api::<EndpointSlice>::namespaced(self.client.clone(), ns);
        let current = api.get(name).await?;
        let mut next = s.clone();
        next.metadata.resource_version = current.metadata.resource_version;
        api.replace(name, &PostParams::default(), &next)
            .await
            .map(|_| ())
    }
}

fn view(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>,
) -> Option<WorkloadView> {
    Some(WorkloadView {
        namespace: meta.namespace.clone()?,
        pod_labels: template?
            .metadata
            .as_ref()?
            .labels
            .clone()
            .unwrap_or_default(),
        stopped: meta
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ORIGINAL_REPLICAS)),
    })
}

fn short(w: &Write) -> String {
    match w {
        Write::Create(s) | Write::Replace(s) => format!(
            "{}/{}",
            s.metadata.namespace.as_deref().unwrap_or(""),
            s.metadata.name.as_deref().unwrap_or("")
        ),
        Write::Delete { namespace, name } => format!("delete {namespace}/{name}"),
    }
}
