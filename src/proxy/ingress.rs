//! Routes from the cluster: Ingresses of class `siesta` (and, beside them,
//! HTTPRoutes: [`super::gateway`]), resolved through their Services to ready
//! endpoints (EndpointSlices) or an ExternalName, so a freshly woken pod is
//! used the moment it is ready. Also the Namespace watch that feeds the hold
//! gate. Watch events only mark the table stale; one task rebuilds it,
//! coalescing bursts.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, watch};

use crate::metrics::{ErrorKind, Metrics};

use super::gateway;
use super::hold::Namespaces;
use super::routes::{Backend, PathMatch, Route, RouteTable, ServiceTarget};

/// The Ingress class this proxy serves.
pub const CLASS: &str = "siesta";
use crate::redirect::{Allocation, ENDPOINTSLICE_CONTROLLER, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
/// Bursts of watch events within this window make one rebuild.
const REBUILD_DEBOUNCE: Duration = Duration::from_millis(20);

/// Keep `namespaces` in step with the cluster until the process ends.
pub async fn watch_namespaces(
    client: kube::Client,
    namespaces: Arc<Namespaces>,
    synced: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    let events =
        watcher(Api::<Namespace>::all(client), watcher::Config::default()).default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(ns)) => namespaces.apply(&ns),
            Ok(watcher::Event::Delete(ns)) => {
                if let Some(name) = ns.metadata.name.as_deref() {
                    namespaces.delete(name);
                }
            }
            Ok(watcher::Event::Init) => namespaces.relist_start(),
            Ok(watcher::Event::InitApply(ns)) => namespaces.relist_item(&ns),
            Ok(watcher::Event::InitDone) => {
                namespaces.relist_done();
                synced.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %e, "namespace watch");
                metrics.error(ErrorKind::KubeApi);
            }
        }
    }
}

/// The three stores behind Ingress routes and redirect ports, and the
/// HTTPRoute source.
#[derive(Clone)]
pub struct ClusterRoutes {
    ingresses: Store<Ingress>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    /// The redirect ports this proxy serves; `None`: none.
    redirect_ports: Option<RangeInclusive<u16>>,
    /// Redirect ports seen lately, kept for [`PORT_LINGER`] after their slice
    /// goes, so that a caller that still has the proxy's address (a
    /// kube-proxy rule not yet rewritten, a kept-alive connection of an
    /// ingress controller) is still forwarded to the Service's pods.
    recent: Arc<Mutex<BTreeMap<u16, (Allocation, Instant)>>>,
    gateway: gateway::Source,
}

/// How long a redirect port stays served after its slice is deleted.
pub const PORT_LINGER: Duration = Duration::from_secs(60);

/// Start the Ingress, Service and EndpointSlice watches and the rebuild task;
/// returns once the first table is built. `redirect_ports`: the redirect
/// ports to route (`None`: none). HTTPRoutes join the table when their
/// watches are synced, without holding it back (nor when the Gateway API is
/// not installed).
pub async fn start(
    client: kube::Client,
    routes: watch::Sender<Arc<RouteTable>>,
    namespaces: Arc<Namespaces>,
    metrics: Arc<Metrics>,
    redirect_ports: Option<RangeInclusive<u16>>,
) -> crate::Result<()> {
    let stale = Arc::new(Notify::new());
    let (ingresses, w1) = reflector::store();
    let (services, w2) = reflector::store();
    let (slices, w3) = reflector::store();
    drive(
        reflector(
            w1,
            watcher(
                Api::<Ingress>::all(client.clone()),
                watcher::Config::default(),
            ),
        ),
        stale.clone(),
        metrics.clone(),
    );
    drive(
        reflector(
            w2,
            watcher(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
            ),
        ),
        stale.clone(),
        metrics.clone(),
    );
    drive(
        reflector(
            w3,
            watcher(
                Api::<EndpointSlice>::all(client.clone()),
                watcher::Config::default(),
            ),
        ),
        stale.clone(),
        metrics.clone(),
    );
    let view = ClusterRoutes {
        ingresses,
        services,
        slices,
        redirect_ports,
        recent: Arc::default(),
        gateway: gateway::Source::start(client, stale.clone(), metrics.clone()),
    };
    let synced = tokio::try_join!(
        view.ingresses.wait_until_ready(),
        view.services.wait_until_ready(),
        view.slices.wait_until_ready()
    );
    synced.map_err(|e| crate::Error::Other(format!("route watches ended before syncing: {e}")))?;
    routes.send_replace(Arc::new(view.build()));
    tokio::spawn(async move {
        loop {
            // Also by time, so that a lingering redirect port ends.
            let _ = tokio::time::timeout(PORT_LINGER, stale.notified()).await;
            tokio::time::sleep(REBUILD_DEBOUNCE).await;
            routes.send_replace(Arc::new(view.build()));
            // Endpoints may have become ready: let held requests look again.
            namespaces.notify_all();
        }
    });
    Ok(())
}

/// A watch kept in a store, retried with backoff (every route source's).
pub fn reflector<K>(
    writer: reflector::store::Writer<K>,
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    reflector::reflector(writer, events.default_backoff())
}

/// Run a store's watch: each event marks `stale`, each error is logged and counted.
pub fn drive<K: Send + 'static>(
    events: impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    stale: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => stale.notify_one(),
                Err(e) => {
                    tracing::warn!(error = %e, "route watch");
                    metrics.error(ErrorKind::KubeApi);
                }
            }
        }
    });
}

fn is_siesta_class(ing: &Ingress) -> bool {
    let by_spec = ing
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        == Some(CLASS);
    let by_annotation = ing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubernetes.io/ingress.class"))
        .is_some_and(|c| c == CLASS);
    by_spec || by_annotation
}

impl ClusterRoutes {
    /// The whole table from the stores' current contents.
    pub fn build(&self) -> RouteTable {
        let mut ingresses: Vec<Arc<Ingress>> = self
            .ingresses
            .state()
            .into_iter()
            .filter(|i| is_siesta_class(i))
            .collect();
        // Conflicting rules: the oldest Ingress wins, as with other controllers.
        ingresses.sort_by(|a, b| {
            (
                a.metadata.creation_timestamp.as_ref().map(|t| t.0),
                &a.metadata.namespace,
                &a.metadata.name,
            )
                .cmp(&(
                    b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    &b.metadata.namespace,
                    &b.metadata.name,
                ))
        });
        let slices_by_service = self.slices_by_service();
        let mut table = RouteTable::default();
        let mut defaults = Vec::new();
        for ing in &ingresses {
            let Some(ns) = ing.metadata.namespace.as_deref() else {
                continue;
            };
            let Some(spec) = ing.spec.as_ref() else {
                continue;
            };
            let namespace: Arc<str> = Arc::from(ns);
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.as_deref().unwrap_or("*");
                for p in rule.http.iter().flat_map(|h| h.paths.iter()) {
                    let path = p.path.clone().unwrap_or_else(|| "/".into());
                    let m = if p.path_type == "Exact" {
                        PathMatch::Exact(path)
                    } else {
                        PathMatch::Prefix(path)
                    };
                    let backend = self.resolve(ns, &p.backend, &slices_by_service);
                    table.add(
                        host,
                        m,
                        Arc::new(Route::new(Some(namespace.clone()), backend)),
                    );
                }
            }
            if let Some(b) = spec.default_backend.as_ref() {
                defaults.push(Arc::new(Route::new(
                    Some(namespace.clone()),
                    self.resolve(ns, b, &slices_by_service),
                )));
            }
        }
        for d in defaults {
            table.add("*", PathMatch::Prefix("/".into()), d);
        }
        for (port, a) in self.redirects(Instant::now()) {
            let backend = self.resolve_port(
                &a.namespace,
                &a.service,
                PortRef::Name(&a.port_name),
                &slices_by_service,
            );
            let route = Route::new(Some(Arc::from(a.namespace.as_str())), backend);
            table.add_port(port, Arc::new(route), a.speaks_http());
        }
        // After every Ingress rule: an Ingress keeps a host and path both claim.
        self.gateway
            .add_routes(self, &mut table, &slices_by_service);
        table
    }

    /// The redirect ports to serve: those Siesta's slices declare now, and
    /// those they declared within [`PORT_LINGER`] whose port no other took.
    fn redirects(&self, now: Instant) -> BTreeMap<u16, Allocation> {
        let Some(range) = &self.redirect_ports else {
            return BTreeMap::new();
        };
        let slices = self.slices.state();
        let mut current = crate::redirect::allocations(slices.iter().map(|s| &**s), range);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|port, (_, seen)| {
            current.contains_key(port) || now.duration_since(*seen) < PORT_LINGER
        });
        for (port, a) in &current {
            recent.insert(*port, (a.clone(), now));
        }
        for (port, (a, _)) in recent.iter() {
            current.entry(*port).or_insert_with(|| a.clone());
        }
        current
    }

    /// Whether the Service exists (a backendRef to a missing one is refused).
    pub fn has_service(&self, ns: &str, name: &str) -> bool {
        self.services
            .get(&ObjectRef::new(name).within(ns))
            .is_some()
    }

    fn resolve(&self, ns: &str, backend: &IngressBackend, slices: &SlicesByService) -> Backend {
        let Some(sb) = backend.service.as_ref() else {
            return Backend::Service(ServiceTarget::default());
        };
        let port = match sb.port.as_ref() {
            Some(p) => match (p.number, p.name.as_deref()) {
                (Some(n), _) => PortRef::Number(n),
                (None, Some(name)) => PortRef::Name(name),
                (None, None) => PortRef::Number(0),
            },
            None => PortRef::Number(0),
        };
        self.resolve_port(ns, &sb.name, port, slices)
    }

    /// A Service port (`port` as a backend names it) as ready endpoints, or
    /// an ExternalName's address. Used by every route source (Ingress,
    /// HTTPRoute, redirect listeners).
    pub fn resolve_port(
        &self,
        ns: &str,
        service: &str,
        wanted: PortRef<'_>,
        slices: &SlicesByService,
    ) -> Backend {
        let Some(svc) = self.services.get(&ObjectRef::new(service).within(ns)) else {
            return Backend::Service(ServiceTarget::new(service.into(), vec![], None, false));
        };
        let spec = svc.spec.clone().unwrap_or_default();
        let port = spec.ports.iter().flatten().find(|p| match wanted {
            PortRef::Number(n) => p.port == n,
            PortRef::Name(n) => p.name.as_deref().unwrap_or("") == n,
        });
        let h2c = port
            .and_then(|p| p.app_protocol.as_deref())
            .is_some_and(|a| matches!(a, "kubernetes.io/h2c" | "h2c" | "grpc"));
        if spec.type_.as_deref() == Some("ExternalName") {
            let number = match wanted {
                PortRef::Number(n) if n != 0 => Some(n),
                _ => None,
            }
            .or(port.map(|p| p.port))
            .unwrap_or(80);
            let external = spec
                .external_name
                .as_deref()
                .and_then(|host| format!("{host}:{number}").parse().ok());
            return Backend::Service(ServiceTarget::new(service.into(), vec![], external, h2c));
        }
        let Some(port) = port else {
            return Backend::Service(ServiceTarget::new(service.into(), vec![], None, h2c));
        };
        let port_name = port.name.as_deref().unwrap_or("");
        let selected = spec.selector.as_ref().is_some_and(|s| !s.is_empty());
        let mut endpoints = BTreeSet::new();
        for slice in slices
            .get(&(ns.to_string(), service.to_string()))
            .into_iter()
            .flatten()
            .filter(|s| trusted_slice(s, selected))
        {
            let Some(target) = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .and_then(|p| p.port)
                .and_then(|p| u16::try_from(p).ok())
            else {
                continue;
            };
            for ep in slice.endpoints.iter().flatten() {
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                for addr in &ep.addresses {
                    if let Ok(ip) = addr.parse::<IpAddr>() {
                        endpoints.insert(SocketAddr::new(ip, target));
                    }
                }
            }
        }
        Backend::Service(ServiceTarget::new(
            service.into(),
            endpoints.into_iter().collect(),
            None,
            h2c,
        ))
    }

    /// Every EndpointSlice by (namespace, service-name label).
    pub fn slices_by_service(&self) -> SlicesByService {
        let mut by: SlicesByService = HashMap::new();
        for s in self.slices.state() {
            let (Some(ns), Some(svc)) = (
                s.metadata.namespace.clone(),
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .cloned(),
            ) else {
                continue;
            };
            by.entry((ns, svc)).or_default().push(s);
        }
        by
    }
}

/// EndpointSlices by (namespace, Service name).
pub type SlicesByService = HashMap<(String, String), Vec<Arc<EndpointSlice>>>;

/// How a route names a Service port: by number or by name.
#[derive(Clone, Copy, Debug)]
pub enum PortRef<'a> {
    Number(i32),
    Name(&'a str),
}

/// Who may tell the proxy where a Service's pods are. For a Service with a
/// selector only Kubernetes' EndpointSlice controller: never Siesta's own
/// redirect slices (that would loop back to the proxy), and never a slice a
/// namespace user wrote to steer the proxy. A Service without a selector has
/// only hand-written or mirrored slices: any but Siesta's.
pub fn trusted_slice(slice: &EndpointSlice, service_has_selector: bool) -> bool {
    let managed_by = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .map(String::as_str);
    if service_has_selector {
        managed_by == Some(ENDPOINTSLICE_CONTROLLER)
    } else {
        managed_by != Some(crate::redirect::MANAGER)
    }
}

/// A store holding these objects, without a cluster (unit tests).
#[cfg(test)]
pub(super) fn store_of<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let (store, mut writer) = reflector::store();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    store
}

#[cfg(test)]
impl ClusterRoutes {
    /// Routes over these objects and HTTPRoute source, without a cluster.
    pub(super) fn over(
        ingresses: Vec<Ingress>,
        services: Vec<Service>,
        gateway: gateway::Source,
    ) -> ClusterRoutes {
        ClusterRoutes {
            ingresses: store_of(ingresses),
            services: store_of(services),
            slices: store_of(vec![]),
            redirect_ports: None,
            recent: Arc::default(),
            gateway,
        }
    }
}
