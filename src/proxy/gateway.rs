//! HTTPRoutes as a route source beside Ingress: the Gateway API watches
//! (GatewayClasses, Gateways, HTTPRoutes, ReferenceGrants) and the routes
//! [`crate::gateway::attach`] makes of them, resolved to endpoints exactly as
//! Ingress backends are ([`ClusterRoutes::resolve_port`]). The proxy only
//! reads; route status is the leader controller's (`controller::gateway`),
//! since the proxy runs with any number of replicas.
//!
//! Without the Gateway API CRDs the proxy serves Ingresses alone: it says so
//! once and looks for the CRDs again every [`RETRY`].
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use tokio::sync::Notify;

use crate::gateway::types::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use crate::gateway::{self, PathRule, Snapshot};
use crate::metrics::{ErrorKind, Metrics};

use super::ingress::{ClusterRoutes, PortRef, SlicesByService, drive, reflector};
use super::routes::{Backend, PathMatch, Route, RouteTable};

/// How often to look for the Gateway API CRDs while they are not installed.
pub const RETRY: Duration = Duration::from_secs(30);

/// The four Gateway API stores, synced; what the proxy's routes and the
/// controller's status writer read.
#[derive(Clone)]
pub struct Stores {
    pub classes: Store<GatewayClass>,
    pub gateways: Store<Gateway>,
    pub routes: Store<HTTPRoute>,
    pub grants: Store<ReferenceGrant>,
}

impl Stores {
    /// Once the CRDs are installed, the watches, synced; every change after
    /// notifies `changed`. Waits for as long as the CRDs are missing.
    pub async fn start(
        client: kube::Client,
        changed: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Stores {
        wait_until_installed(&client, &metrics).await;
        let (classes, w1) = reflector::store();
        let (gateways, w2) = reflector::store();
        let (routes, w3) = reflector::store();
        let (grants, w4) = reflector::store();
        let cfg = watcher::Config::default;
        let (c, m) = (&changed, &metrics);
        drive(
            reflector(w1, watcher(Api::all(client.clone()), cfg())),
            c.clone(),
            m.clone(),
        );
        drive(
            reflector(w2, watcher(Api::all(client.clone()), cfg())),
            c.clone(),
            m.clone(),
        );
        drive(
            reflector(w3, watcher(Api::all(client.clone()), cfg())),
            c.clone(),
            m.clone(),
        );
        drive(
            reflector(w4, watcher(Api::all(client), cfg())),
            c.clone(),
            m.clone(),
        );
        let stores = Stores {
            classes,
            gateways,
            routes,
            grants,
        };
        let synced = tokio::try_join!(
            stores.classes.wait_until_ready(),
            stores.gateways.wait_until_ready(),
            stores.routes.wait_until_ready(),
            stores.grants.wait_until_ready(),
        );
        if let Err(e) = synced {
            tracing::warn!(error = %e, "gateway api watches ended before syncing");
        }
        tracing::info!(
            controller = gateway::CONTROLLER_NAME,
            "Gateway API watches synced"
        );
        changed.notify_one();
        stores
    }

    /// What [`crate::gateway::attach`] makes of the stores now.
    pub fn attach(
        &self,
        service_exists: &dyn Fn(&str, &str) -> bool,
    ) -> Vec<gateway::RouteOutcome> {
        gateway::attach(&Snapshot {
            classes: &self.classes.state(),
            gateways: &self.gateways.state(),
            routes: &self.routes.state(),
            grants: &self.grants.state(),
            service_exists,
        })
    }
}

/// Return once the Gateway API CRDs answer; while they do not, say so once
/// and look again every [`RETRY`].
pub async fn wait_until_installed(client: &kube::Client, metrics: &Metrics) {
    let mut told = false;
    loop {
        match installed(client).await {
            Ok(true) => return,
            Ok(false) if !told => {
                tracing::info!(
                    retry = ?RETRY,
                    "Gateway API CRDs not installed: no HTTPRoutes until they are"
                );
                told = true;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "looking for the Gateway API CRDs");
                metrics.error(ErrorKind::KubeApi);
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Whether all four kinds are served (a list of one item each; 404 means not).
async fn installed(client: &kube::Client) -> Result<bool, kube::Error> {
    Ok(served::<GatewayClass>(client).await?
        && served::<Gateway>(client).await?
        && served::<HTTPRoute>(client).await?
        && served::<ReferenceGrant>(client).await?)
}

async fn served<K>(client: &kube::Client) -> Result<bool, kube::Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match Api::<K>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The proxy's HTTPRoute source: empty until the stores are synced.
#[derive(Clone, Default)]
pub struct Source(Arc<OnceLock<Stores>>);

impl Source {
    /// Start looking for the CRDs and watching them in the background;
    /// `stale` is notified whenever the table should be rebuilt.
    pub fn start(client: kube::Client, stale: Arc<Notify>, metrics: Arc<Metrics>) -> Source {
        let source = Source::default();
        let cell = source.0.clone();
        tokio::spawn(async move {
            let stores = Stores::start(client, stale.clone(), metrics).await;
            let _ = cell.set(stores);
            stale.notify_one();
        });
        source
    }

    /// Add the HTTPRoutes' rules to a table that holds the Ingress rules
    /// already: where both claim a host and path, the Ingress keeps it.
    pub fn add_routes(
        &self,
        cluster: &ClusterRoutes,
        table: &mut RouteTable,
        slices: &SlicesByService,
    ) {
        let Some(stores) = self.0.get() else {
            return;
        };
        let exists = |ns: &str, name: &str| cluster.has_service(ns, name);
        for outcome in stores.attach(&exists) {
            for served in outcome.served {
                let (namespace, backend) = match &served.backend {
                    Some(b) => (
                        Some(Arc::from(b.namespace.as_str())),
                        cluster.resolve_port(
                            &b.namespace,
                            &b.service,
                            PortRef::Number(b.port),
                            slices,
                        ),
                    ),
                    // Refused or missing: 500 for this rule (Gateway API), and no one's activity.
                    None => (None, Backend::Invalid),
                };
                let path = match served.path {
                    PathRule::Exact(p) => PathMatch::Exact(p),
                    PathRule::Prefix(p) => PathMatch::Prefix(p),
                };
                table.add(&served.host, path, Arc::new(Route::new(namespace, backend)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::networking::v1::Ingress;
    use kube::client::Body;
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::ingress::store_of;

    /// A client whose API server knows no Gateway API: every request 404.
    fn without_gateway_api() -> (kube::Client, Arc<AtomicUsize>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                assert!(
                    request
                        .uri()
                        .path()
                        .starts_with("/apis/gateway.networking.k8s.io/v1/")
                );
                counter.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"});
                send.send_response(
                    Response::builder()
                        .status(404)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        (kube::Client::new(service, "default"), asked)
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_crds_the_source_stays_empty_and_looks_again_later() {
        let (client, asked) = without_gateway_api();
        let stale = Arc::new(Notify::new());
        let source = Source::start(client, stale, Arc::default());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(source.0.get().is_none());
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "one probe, not a watch loop"
        );
        tokio::time::sleep(RETRY).await;
        assert_eq!(asked.load(Ordering::SeqCst), 2, "looked again after RETRY");
        // An empty source adds nothing.
        let mut table = RouteTable::default();
        let cluster = ClusterRoutes::over(vec![], vec![], source.clone());
        source.add_routes(&cluster, &mut table, &HashMap::new());
        assert!(table.is_empty());
    }

    fn object<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
        serde_json::from_value(v).unwrap()
    }

    fn external(name: &str, ip: &str, port: u16) -> Service {
        object(json!({"metadata": {"namespace": "team", "name": name},
            "spec": {"type": "ExternalName", "externalName": ip, "ports": [{"name": "http", "port": port}]}}))
    }

    #[test]
    fn http_routes_join_the_table_and_an_ingress_keeps_what_both_claim() {
        let ingress: Ingress = object(json!({"metadata": {"namespace": "team", "name": "ing"},
            "spec": {"ingressClassName": "siesta", "rules": [{"host": "app.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 9000}}}}]}}]}}));
        let stores = Stores {
            classes: store_of(vec![object(json!({"metadata": {"name": "siesta"},
                "spec": {"controllerName": gateway::CONTROLLER_NAME}}))]),
            gateways: store_of(vec![object(
                json!({"metadata": {"namespace": "team", "name": "gw"},
                "spec": {"gatewayClassName": "siesta", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
            )]),
            routes: store_of(vec![object(
                json!({"metadata": {"namespace": "team", "name": "r"},
                "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["app.test", "api.test"], "rules": [
                    {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}, {"path": {"type": "Exact", "value": "/exact"}}],
                     "backendRefs": [{"name": "api", "port": 8000}]},
                    {"matches": [{"path": {"value": "/refused"}}],
                     "backendRefs": [{"name": "api", "namespace": "elsewhere", "port": 8000}]}]}}),
            )]),
            grants: store_of(vec![]),
        };
        let source = Source(Arc::new(OnceLock::from(stores)));
        let cluster = ClusterRoutes::over(
            vec![ingress],
            vec![
                external("web", "127.0.0.1", 9000),
                external("api", "127.0.0.2", 8000),
            ],
            source,
        );
        let table = cluster.build();
        let upstream = |host: &str, path: &str| {
            let route = table.find(host, path)?;
            Some((
                route.namespace.as_deref().map(str::to_string),
                route.upstream()?.authority.to_string(),
            ))
        };
        let team = Some("team".to_string());
        assert_eq!(
            upstream("app.test", "/"),
            Some((team.clone(), "127.0.0.1:9000".into())),
            "the Ingress keeps it"
        );
        assert_eq!(
            upstream("app.test", "/exact"),
            Some((team.clone(), "127.0.0.2:8000".into()))
        );
        assert_eq!(
            upstream("api.test", "/x"),
            Some((team.clone(), "127.0.0.2:8000".into()))
        );
        let refused = table
            .find("api.test", "/refused")
            .expect("a route, not a fall-through");
        assert!(
            refused.namespace.is_none() && refused.upstream().is_none(),
            "500, and no one's activity"
        );
        assert!(table.find("other.test", "/").is_none());
    }
}
