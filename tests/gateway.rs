//! Gateway API against the local cluster (its standard-channel CRDs, applied
//! by `tests/cluster/cluster.sh up`): `siesta proxy` serves HTTPRoutes of
//! Gateways whose class names `controllerName: siesta.dev/gateway`, a
//! request wakes the sleeping namespace behind one, and the leader
//! controller writes the routes' status. Every name is unique, so these run
//! beside each other and beside other tests.
use std::time::Duration;

use http::StatusCode;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use siesta::gateway::types::{Gateway, GatewayClass, HTTPRoute, ReferenceGrant};
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

fn object<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("a valid object")
}

/// A GatewayClass of this controller name, deleted when dropped.
struct Class {
    name: String,
    client: kube::Client,
}

impl Class {
    async fn create(client: &kube::Client, controller: &str) -> Class {
        let name = unique("gwc");
        Api::<GatewayClass>::all(client.clone())
            .create(
                &PostParams::default(),
                &object(
                    json!({"metadata": {"name": name}, "spec": {"controllerName": controller}}),
                ),
            )
            .await
            .expect("create a GatewayClass (are the Gateway API CRDs installed?)");
        Class {
            name,
            client: client.clone(),
        }
    }
}

impl Drop for Class {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = Api::<GatewayClass>::all(client)
                    .delete(&name, &DeleteParams::default())
                    .await;
            });
        })
        .join();
    }
}

/// A Gateway `gw` of `class` in `ns` with one HTTP listener taking routes of
/// every namespace.
async fn gateway(c: &kube::Client, ns: &str, class: &str) {
    Api::<Gateway>::namespaced(c.clone(), ns)
        .create(
            &PostParams::default(),
            &object(
                json!({"metadata": {"name": "gw"}, "spec": {"gatewayClassName": class,
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                               "allowedRoutes": {"namespaces": {"from": "All"}}}]}}),
            ),
        )
        .await
        .unwrap();
}

/// An HTTPRoute in `ns` from `host` and the prefix `/app` to `backend`
/// (a backendRef), attached to `gateway_ns/gw`.
async fn http_route(
    c: &kube::Client,
    ns: &str,
    name: &str,
    gateway_ns: &str,
    host: &str,
    backend: Value,
) {
    Api::<HTTPRoute>::namespaced(c.clone(), ns)
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": name}, "spec": {
                "parentRefs": [{"name": "gw", "namespace": gateway_ns}],
                "hostnames": [host],
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/app"}}],
                           "backendRefs": [backend]}]}})),
        )
        .await
        .unwrap();
}

/// Siesta's conditions on a route: (type, status, reason) of its parent entry.
async fn our_conditions(
    c: &kube::Client,
    ns: &str,
    name: &str,
) -> Option<Vec<(String, String, String)>> {
    let route = Api::<HTTPRoute>::namespaced(c.clone(), ns)
        .get(name)
        .await
        .ok()?;
    let generation = route.metadata.generation;
    let parent = route
        .status?
        .parents
        .into_iter()
        .find(|p| p.controller_name == siesta::gateway::CONTROLLER_NAME)?;
    assert!(
        parent
            .conditions
            .iter()
            .all(|c| c.observed_generation == generation),
        "observedGeneration is the route's: {parent:?}"
    );
    Some(
        parent
            .conditions
            .into_iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect(),
    )
}

async fn conditions_become(c: &kube::Client, ns: &str, name: &str, want: [(&str, &str, &str); 2]) {
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, r)| (a.to_string(), b.to_string(), r.to_string()))
        .collect();
    eventually(
        &format!("{ns}/{name} has {want:?}"),
        Duration::from_secs(30),
        || async { our_conditions(c, ns, name).await.as_ref() == Some(&want) },
    )
    .await;
}

const ACCEPTED: (&str, &str, &str) = ("Accepted", "True", "Accepted");
const RESOLVED: (&str, &str, &str) = ("ResolvedRefs", "True", "ResolvedRefs");

/// A proxy serving Ingresses and HTTPRoutes from the cluster.
async fn proxy() -> (Siesta, std::net::SocketAddr) {
    let port = free_port();
    let p = Siesta::start(
        SIESTA,
        &["proxy", "--listen", &format!("127.0.0.1:{port}")],
        &[],
    );
    p.wait_ready().await;
    (p, ([127, 0, 0, 1], port).into())
}

/// GET through the proxy once the route is in its table (no longer 404).
async fn get_routed(proxy: std::net::SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    for _ in 0..100 {
        let (status, _, body) =
            tokio::time::timeout(Duration::from_secs(60), get(proxy, host, path, &[]))
                .await
                .expect("an answer within the hold timeout");
        if status != StatusCode::NOT_FOUND {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (StatusCode::NOT_FOUND, String::new())
}

/// An ExternalName Service `web` in `ns` naming a hello backend on 127.0.0.1
/// (EndpointSlices may not hold loopback addresses); returns its port.
async fn loopback_service(c: &kube::Client, ns: &str) -> u16 {
    let port = backend().await;
    Api::<Service>::namespaced(c.clone(), ns)
        .create(
            &PostParams::default(),
            &object(
                json!({"metadata": {"name": "web"}, "spec": {"type": "ExternalName",
                "externalName": "127.0.0.1", "ports": [{"name": "http", "port": port}]}}),
            ),
        )
        .await
        .unwrap();
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http_route_wakes_its_sleeping_namespace_and_forwards_to_its_pods() {
    let c = client().await;
    let group = unique("gw-wake");
    let ctl = Siesta::controller(SIESTA, &group, &[]);
    ctl.wait_ready().await;
    let class = Class::create(&c, siesta::gateway::CONTROLLER_NAME).await;
    let ns = namespace(&c, "gw-wake", &group, MANUAL).await;

    // The Deployment's pods answer on their own addresses in the test pod
    // network; the Service selects them, so its slices are Kubernetes' own.
    let pod_port = free_port();
    pod_http_backend(pod_port);
    create(&c, &ns, &workload("web").replicas(1).deployment()).await;
    Api::<Service>::namespaced(c.clone(), &ns)
        .create(
            &PostParams::default(),
            &object(
                json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": pod_port}]}}),
            ),
        )
        .await
        .unwrap();
    gateway(&c, &ns, &class.name).await;
    let host = format!("{ns}.gateway.test");
    http_route(
        &c,
        &ns,
        "web",
        &ns,
        &host,
        json!({"name": "web", "port": 80}),
    )
    .await;

    conditions_become(&c, &ns, "web", [ACCEPTED, RESOLVED]).await;
    eventually("the class is Accepted", Duration::from_secs(30), || async {
        Api::<GatewayClass>::all(c.clone())
            .get(&class.name)
            .await
            .ok()
            .and_then(|k| k.status)
            .is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Accepted" && c.status == "True" && c.observed_generation == Some(1)
                })
            })
    })
    .await;

    let (proxy, addr) = proxy().await;
    let (status, body) = get_routed(addr, &host, "/app/x").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.starts_with("hello from 10."),
        "forwarded to a pod: {body}"
    );
    assert_eq!(
        get(addr, &host, "/elsewhere", &[]).await.0,
        StatusCode::NOT_FOUND
    );

    sleep_and_wait(&c, &ns).await;
    let (status, body) = get_routed(addr, &host, "/app/after-sleep").await;
    assert_eq!(status, StatusCode::OK, "held through the wake: {body}");
    assert!(body.starts_with("hello from 10."), "{body}");
    assert_state(&c, &ns, "awake", "http").await;
    drop(proxy);
    remove_namespace(&c, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_of_other_controllers_get_no_service_and_no_status() {
    let c = client().await;
    let group = unique("gw-other");
    let ctl = Siesta::controller(SIESTA, &group, &[]);
    ctl.wait_ready().await;
    let ours = Class::create(&c, siesta::gateway::CONTROLLER_NAME).await;
    let theirs = Class::create(&c, "example.com/another-gateway").await;
    let (ns_ours, ns_theirs) = (unique("gw-ours"), unique("gw-theirs"));
    create_namespace(&c, &ns_ours, &[], &[]).await;
    create_namespace(&c, &ns_theirs, &[], &[]).await;
    let port_ours = loopback_service(&c, &ns_ours).await;
    let port_theirs = loopback_service(&c, &ns_theirs).await;
    gateway(&c, &ns_ours, &ours.name).await;
    gateway(&c, &ns_theirs, &theirs.name).await;
    let (host_ours, host_theirs) = (
        format!("{ns_ours}.gateway.test"),
        format!("{ns_theirs}.gateway.test"),
    );
    http_route(
        &c,
        &ns_ours,
        "web",
        &ns_ours,
        &host_ours,
        json!({"name": "web", "port": port_ours}),
    )
    .await;
    http_route(
        &c,
        &ns_theirs,
        "web",
        &ns_theirs,
        &host_theirs,
        json!({"name": "web", "port": port_theirs}),
    )
    .await;

    // Ours is served and given status: the tables and the pass have seen both routes.
    let (_proxy, addr) = proxy().await;
    let (status, body) = get_routed(addr, &host_ours, "/app").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    conditions_become(&c, &ns_ours, "web", [ACCEPTED, RESOLVED]).await;

    assert_eq!(
        get(addr, &host_theirs, "/app", &[]).await.0,
        StatusCode::NOT_FOUND
    );
    let route = Api::<HTTPRoute>::namespaced(c.clone(), &ns_theirs)
        .get("web")
        .await
        .unwrap();
    assert!(
        route
            .status
            .map(|s| s.parents)
            .unwrap_or_default()
            .is_empty(),
        "no status from us on another controller's route"
    );
    let class = Api::<GatewayClass>::all(c.clone())
        .get(&theirs.name)
        .await
        .unwrap();
    assert!(
        !class
            .status
            .map(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.status == "True"),
        "another controller's class is not accepted by us"
    );
    remove_namespace(&c, &ns_ours).await;
    remove_namespace(&c, &ns_theirs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_in_another_namespace_is_refused_until_a_reference_grant_allows_it() {
    let c = client().await;
    let group = unique("gw-grant");
    let ctl = Siesta::controller(SIESTA, &group, &[]);
    ctl.wait_ready().await;
    let class = Class::create(&c, siesta::gateway::CONTROLLER_NAME).await;
    let (routes_ns, backend_ns) = (unique("gw-routes"), unique("gw-backend"));
    create_namespace(&c, &routes_ns, &[], &[]).await;
    create_namespace(&c, &backend_ns, &[], &[]).await;
    let port = loopback_service(&c, &backend_ns).await;
    gateway(&c, &routes_ns, &class.name).await;
    let host = format!("{routes_ns}.gateway.test");
    http_route(
        &c,
        &routes_ns,
        "across",
        &routes_ns,
        &host,
        json!({"name": "web", "namespace": backend_ns, "port": port}),
    )
    .await;

    conditions_become(
        &c,
        &routes_ns,
        "across",
        [ACCEPTED, ("ResolvedRefs", "False", "RefNotPermitted")],
    )
    .await;
    let (_proxy, addr) = proxy().await;
    let (status, _) = get_routed(addr, &host, "/app").await;
    assert_eq!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the rule is served, its backend refused (500, as Gateway API says)"
    );

    Api::<ReferenceGrant>::namespaced(c.clone(), &backend_ns)
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "routes"}, "spec": {
                "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": routes_ns}],
                "to": [{"group": "", "kind": "Service", "name": "web"}]}})),
        )
        .await
        .unwrap();
    conditions_become(&c, &routes_ns, "across", [ACCEPTED, RESOLVED]).await;
    eventually(
        "forwarded across namespaces",
        Duration::from_secs(10),
        || async { get(addr, &host, "/app", &[]).await.2 == "hello" },
    )
    .await;
    remove_namespace(&c, &routes_ns).await;
    remove_namespace(&c, &backend_ns).await;
}
