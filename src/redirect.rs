//! Redirect while asleep: which Services of a sleeping namespace get an
//! EndpointSlice of Siesta's that points at the proxy, on which proxy ports.
//! Pure: the controller's redirect pass (`controller::redirect`) reads the
//! cluster, asks [`plan`], and writes what it says; the proxy reads the
//! slices back to know which Service a redirect port stands for.
//!
//! Rules:
//! - A Service is redirected when its namespace is asleep, it selects a
//!   workload Siesta scaled to zero, it has no ready endpoint of its own, and
//!   it can be: a selector, a cluster IP (not headless), not ExternalName, not
//!   `internalTrafficPolicy: Local`. Only its TCP ports are.
//! - A redirect stays while the namespace is asleep or waking, and for
//!   `linger` after it is awake again, until the Service has a ready endpoint
//!   of its own: then it goes, and an awake Service resolves to its pods only.
//! - The slice lists every ready proxy address; with no proxy, no slice.
//! - Each (namespace, Service, port name) has one proxy port of the range,
//!   kept in the slice itself (its port of that name), so the allocation
//!   survives restarts of the controller and the proxy. New ones take the
//!   lowest free port; a port claimed twice stays with the oldest slice.
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::model::State;

/// `endpointslice.kubernetes.io/managed-by` of Siesta's redirect slices.
pub const MANAGER: &str = "siesta.dev";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The manager of the EndpointSlices Kubernetes derives from a Service's selector.
pub const ENDPOINTSLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// Redirect slices are named this, then the Service's name.
pub const NAME_PREFIX: &str = "siesta-redirect-";
/// The proxy ports redirects take unless told: below the Linux ephemeral
/// range (32768-60999) and away from the local cluster's ports.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 20000..=27999;

/// A port range flag: `FIRST-LAST`, inclusive, ports above 0.
pub fn parse_ports(s: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("{s:?}: want FIRST-LAST, e.g. 20000-27999");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

/// A `namespace/name` flag.
pub fn parse_service(s: &str) -> Result<Option<(String, String)>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(Some((ns.into(), name.into())))
        }
        _ => Err(format!(
            "{s:?}: want NAMESPACE/NAME (or empty to turn redirects off)"
        )),
    }
}

/// What the plan reads of one namespace.
#[derive(Clone, Debug)]
pub struct NamespaceView {
    pub name: String,
    pub state: State,
    pub since: Option<DateTime<Utc>>,
}

/// What the plan reads of one workload: its pods' labels and whether Siesta
/// holds it at zero (it carries `siesta.dev/original-replicas`).
#[derive(Clone, Debug)]
pub struct WorkloadView {
    pub namespace: String,
    pub pod_labels: BTreeMap<String, String>,
    pub stopped: bool,
}

/// Everything one redirect pass decides from.
pub struct Cluster<'a> {
    pub namespaces: &'a [NamespaceView],
    pub services: &'a [&'a Service],
    /// Every EndpointSlice of the namespaces above, and Siesta's everywhere.
    pub slices: &'a [&'a EndpointSlice],
    pub workloads: &'a [WorkloadView],
    /// The ready proxy addresses.
    pub proxy: &'a [IpAddr],
    pub ports: RangeInclusive<u16>,
    /// How long after a wake a redirect may wait for the Service's own endpoints.
    pub linger: chrono::Duration,
    pub now: DateTime<Utc>,
}

/// One write of a pass.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    Create(EndpointSlice),
    /// The slice as it should be (same name), replacing what is there.
    Replace(EndpointSlice),
    Delete {
        namespace: String,
        name: String,
    },
}

/// A redirect port as a slice declares it: which Service port it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub port: u16,
    pub namespace: String,
    pub service: String,
    /// The Service port's name ("" for a single unnamed port).
    pub port_name: String,
    /// The port's `appProtocol`, as the Service gives it.
    pub app_protocol: Option<String>,
}

/// Whether this slice is one of Siesta's redirect slices.
pub fn is_redirect(slice: &EndpointSlice) -> bool {
    label(&slice.metadata, MANAGED_BY_LABEL) == Some(MANAGER)
}

fn label<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// The redirect ports Siesta's slices declare, within `range`: one per port,
/// the oldest slice's when two claim it (the proxy and the plan agree).
pub fn allocations<'s>(
    slices: impl IntoIterator<Item = &'s EndpointSlice>,
    range: &RangeInclusive<u16>,
) -> BTreeMap<u16, Allocation> {
    let mut ours: Vec<&EndpointSlice> = slices.into_iter().filter(|s| is_redirect(s)).collect();
    ours.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    let mut out = BTreeMap::new();
    for s in ours {
        let (Some(ns), Some(service)) = (
            s.metadata.namespace.as_deref(),
            label(&s.metadata, SERVICE_NAME_LABEL),
        ) else {
            continue;
        };
        for p in s.ports.iter().flatten() {
            let Some(port) = p.port.and_then(|n| u16::try_from(n).ok()) else {
                continue;
            };
            if !range.contains(&port) || out.contains_key(&port) {
                continue;
            }
            out.insert(
                port,
                Allocation {
                    port,
                    namespace: ns.into(),
                    service: service.into(),
                    port_name: p.name.clone().unwrap_or_default(),
                    app_protocol: p.app_protocol.clone(),
                },
            );
        }
    }
    out
}

fn age_key(s: &EndpointSlice) -> impl Ord + '_ {
    (
        s.metadata.creation_timestamp.as_ref().map(|t| t.0),
        s.metadata.namespace.as_deref().unwrap_or(""),
        s.metadata.name.as_deref().unwrap_or(""),
    )
}

/// The slice name for a Service.
pub fn slice_name(service: &str) -> String {
    format!("{NAME_PREFIX}{service}")
}

/// Whether Siesta may redirect this Service at all (see the module doc).
pub fn redirectable(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    spec.selector.as_ref().is_some_and(|s| !s.is_empty())
        && spec.cluster_ip.as_deref() != Some("None")
        && spec.type_.as_deref() != Some("ExternalName")
        && spec.internal_traffic_policy.as_deref() != Some("Local")
        && tcp_ports(svc).next().is_some()
}

fn tcp_ports(svc: &Service) -> impl Iterator<Item = &k8s_openapi::api::core::v1::ServicePort> {
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether a Service has a ready endpoint of its own (from Kubernetes'
/// EndpointSlice controller, never a redirect).
fn has_own_ready_endpoint(ns: &str, service: &str, slices: &[&EndpointSlice]) -> bool {
    slices.iter().any(|s| {
        s.metadata.namespace.as_deref() == Some(ns)
            && label(&s.metadata, SERVICE_NAME_LABEL) == Some(service)
            && label(&s.metadata, MANAGED_BY_LABEL) == Some(ENDPOINTSLICE_CONTROLLER)
            && s.endpoints.iter().flatten().any(|e| {
                e.conditions.as_ref().and_then(|c| c.ready) != Some(false)
                    && !e.addresses.is_empty()
            })
    })
}

/// The writes that bring Siesta's redirect slices to what the rules want.
pub fn plan(c: &Cluster<'_>) -> Vec<Write> {
    let namespaces: BTreeMap<&str, &NamespaceView> =
        c.namespaces.iter().map(|n| (n.name.as_str(), n)).collect();
    let existing: BTreeMap<(&str, &str), &EndpointSlice> = c
        .slices
        .iter()
        .filter(|s| is_redirect(s))
        .filter_map(|s| {
            Some((
                (
                    s.metadata.namespace.as_deref()?,
                    s.metadata.name.as_deref()?,
                ),
                *s,
            ))
        })
        .collect();
    let allocated = allocations(c.slices.iter().copied(), &c.ports);
    // Which (namespace, service, port name) keeps which port.
    let kept: BTreeMap<(&str, &str, &str), u16> = allocated
        .values()
        .map(|a| {
            (
                (
                    a.namespace.as_str(),
                    a.service.as_str(),
                    a.port_name.as_str(),
                ),
                a.port,
            )
        })
        .collect();
    let mut used: BTreeSet<u16> = allocated.keys().copied().collect();
    let mut services: Vec<&Service> = c.services.to_vec();
    services.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });

    let mut wanted: HashSet<(String, String)> = HashSet::new();
    let mut writes = Vec::new();
    for svc in services {
        let (Some(ns), Some(name)) = (
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let Some(view) = namespaces.get(ns) else {
            continue;
        };
        let slice_name = slice_name(name);
        let current = existing.get(&(ns, slice_name.as_str())).copied();
        if !wants_redirect(c, view, svc, current.is_some()) {
            continue;
        }
        let mut ports = Vec::new();
        let mut exhausted = false;
        for p in tcp_ports(svc) {
            let port_name = p.name.as_deref().unwrap_or("");
            let port = match kept.get(&(ns, name, port_name)) {
                Some(&port) => port,
                None => match c.ports.clone().find(|p| !used.contains(p)) {
                    Some(port) => {
                        used.insert(port);
                        port
                    }
                    None => {
                        exhausted = true;
                        break;
                    }
                },
            };
            ports.push(EndpointPort {
                name: p.name.clone(),
                port: Some(i32::from(port)),
                protocol: Some("TCP".into()),
                app_protocol: p.app_protocol.clone(),
            });
        }
        if exhausted {
            // No port left for a whole Service: leave it unredirected
            // (it fails as it would without Siesta) rather than half done.
            continue;
        }
        wanted.insert((ns.to_string(), slice_name.clone()));
        let slice = redirect_slice(svc, &slice_name, ports, c.proxy);
        match current {
            None => writes.push(Write::Create(slice)),
            Some(cur) if !same(cur, &slice) => writes.push(Write::Replace(slice)),
            Some(_) => {}
        }
    }
    for (ns, name) in existing.keys() {
        if !wanted.contains(&(ns.to_string(), name.to_string())) {
            writes.push(Write::Delete {
                namespace: ns.to_string(),
                name: name.to_string(),
            });
        }
    }
    writes
}

fn wants_redirect(c: &Cluster<'_>, ns: &NamespaceView, svc: &Service, exists: bool) -> bool {
    if c.proxy.is_empty() || !redirectable(svc) {
        return false;
    }
    let (namespace, name) = (
        svc.metadata.namespace.as_deref().unwrap_or(""),
        svc.metadata.name.as_deref().unwrap_or(""),
    );
    if has_own_ready_endpoint(namespace, name, c.slices) {
        return false;
    }
    match ns.state {
        State::Asleep if exists => true,
        State::Asleep => {
            let selector = svc.spec.as_ref().and_then(|s| s.selector.as_ref());
            c.workloads.iter().any(|w| {
                w.stopped
                    && w.namespace == namespace
                    && selector.is_some_and(|s| selects(s, &w.pod_labels))
            })
        }
        State::Waking => exists,
        State::Awake => exists && ns.since.is_some_and(|since| c.now - since < c.linger),
    }
}

fn redirect_slice(
    svc: &Service,
    name: &str,
    ports: Vec<EndpointPort>,
    proxy: &[IpAddr],
) -> EndpointSlice {
    let service = svc.metadata.name.clone().unwrap_or_default();
    let mut addresses: Vec<IpAddr> = proxy.iter().copied().filter(IpAddr::is_ipv4).collect();
    addresses.sort();
    addresses.dedup();
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([
                (SERVICE_NAME_LABEL.into(), service.clone()),
                (MANAGED_BY_LABEL.into(), MANAGER.into()),
            ])),
            // Deleting the Service deletes its redirect.
            owner_references: svc.metadata.uid.clone().map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Service".into(),
                    name: service,
                    uid,
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: addresses
            .into_iter()
            .map(|ip| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect::<Vec<_>>()
            .into(),
        ports: Some(ports),
    }
}

/// Whether the slice in the cluster already says what `want` says.
fn same(cur: &EndpointSlice, want: &EndpointSlice) -> bool {
    let addresses = |s: &EndpointSlice| -> Vec<String> {
        let mut a: Vec<String> = s
            .endpoints
            .iter()
            .flatten()
            .flat_map(|e| e.addresses.clone())
            .collect();
        a.sort();
        a
    };
    let ports = |s: &EndpointSlice| -> Vec<(Option<String>, Option<i32>, Option<String>)> {
        let mut p: Vec<_> = s
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.port, p.app_protocol.clone()))
            .collect();
        p.sort();
        p
    };
    let owner = |s: &EndpointSlice| {
        s.metadata
            .owner_references
            .as_ref()
            .map(|o| o.iter().map(|r| r.uid.clone()).collect::<Vec<_>>())
    };
    addresses(cur) == addresses(want)
        && ports(cur) == ports(want)
        && owner(cur) == owner(want)
        && label(&cur.metadata, SERVICE_NAME_LABEL) == label(&want.metadata, SERVICE_NAME_LABEL)
        && cur.address_type == want.address_type
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ns: &str, name: &str, spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}")},
            "spec": spec,
        }))
        .unwrap()
    }

    fn web(ns: &str) -> Service {
        service(
            ns,
            "web",
            json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                   "ports": [{"name": "http", "port": 80, "targetPort": 8080},
                             {"name": "dns", "port": 53, "protocol": "UDP"}]}),
        )
    }

    fn own_slice(ns: &str, service: &str, ready: bool) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": format!("{service}-abcde"),
                         "labels": {SERVICE_NAME_LABEL: service, MANAGED_BY_LABEL: ENDPOINTSLICE_CONTROLLER}},
            "addressType": "IPv4",
            "endpoints": if ready {
                json!([{"addresses": ["10.244.0.5"], "conditions": {"ready": true}}])
            } else { json!([]) },
            "ports": [{"name": "http", "port": 8080}],
        }))
        .unwrap()
    }

    fn workload(ns: &str, app: &str, stopped: bool) -> WorkloadView {
        WorkloadView {
            namespace: ns.into(),
            pod_labels: BTreeMap::from([("app".into(), app.into())]),
            stopped,
        }
    }

    fn asleep(name: &str) -> NamespaceView {
        NamespaceView {
            name: name.into(),
            state: State::Asleep,
            since: None,
        }
    }

    fn proxy() -> Vec<IpAddr> {
        vec!["10.243.255.1".parse().unwrap()]
    }

    fn run(
        namespaces: &[NamespaceView],
        services: &[&Service],
        slices: &[&EndpointSlice],
        workloads: &[WorkloadView],
        proxy: &[IpAddr],
    ) -> Vec<Write> {
        plan(&Cluster {
            namespaces,
            services,
            slices,
            workloads,
            proxy,
            ports: 20000..=20002,
            linger: chrono::Duration::seconds(60),
            now: Utc::now(),
        })
    }

    fn created(writes: &[Write]) -> Vec<&EndpointSlice> {
        writes
            .iter()
            .filter_map(|w| match w {
                Write::Create(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn flags_parse_or_say_what_they_want() {
        assert_eq!(parse_ports("20000-27999"), Ok(20000..=27999));
        for bad in ["", "20000", "0-10", "9-8", "1-70000", "a-b"] {
            assert!(
                parse_ports(bad).unwrap_err().contains("FIRST-LAST"),
                "{bad}"
            );
        }
        assert_eq!(
            parse_service("siesta-system/siesta-proxy"),
            Ok(Some(("siesta-system".into(), "siesta-proxy".into())))
        );
        assert_eq!(parse_service(""), Ok(None));
        assert!(
            parse_service("x").is_err()
                && parse_service("a/b/c").is_err()
                && parse_service("/b").is_err()
        );
    }

    #[test]
    fn a_sleeping_service_gets_a_slice_of_proxy_addresses_on_its_tcp_ports_only() {
        let svc = web("a");
        let own = own_slice("a", "web", false);
        let writes = run(
            &[asleep("a")],
            &[&svc],
            &[&own],
            &[workload("a", "web", true)],
            &proxy(),
        );
        let slices = created(&writes);
        assert_eq!(slices.len(), 1, "{writes:?}");
        let s = slices[0];
        assert_eq!(s.metadata.name.as_deref(), Some("siesta-redirect-web"));
        assert!(is_redirect(s));
        assert_eq!(label(&s.metadata, SERVICE_NAME_LABEL), Some("web"));
        let ports = s.ports.as_ref().unwrap();
        assert_eq!(ports.len(), 1, "UDP is not redirected");
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("http"), Some(20000))
        );
        let eps = s.endpoints.as_ref().unwrap();
        assert_eq!(eps[0].addresses, vec!["10.243.255.1".to_string()]);
        assert_eq!(
            s.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-web"
        );
    }

    #[test]
    fn nothing_is_redirected_that_siesta_did_not_stop_or_that_has_pods_or_no_proxy() {
        let svc = web("a");
        let none = own_slice("a", "web", false);
        let ready = own_slice("a", "web", true);
        // The workload it selects is not Siesta's to stop.
        assert!(
            run(
                &[asleep("a")],
                &[&svc],
                &[&none],
                &[workload("a", "web", false)],
                &proxy()
            )
            .is_empty()
        );
        // It selects another app.
        assert!(
            run(
                &[asleep("a")],
                &[&svc],
                &[&none],
                &[workload("a", "db", true)],
                &proxy()
            )
            .is_empty()
        );
        // Its own endpoints are ready.
        assert!(
            run(
                &[asleep("a")],
                &[&svc],
                &[&ready],
                &[workload("a", "web", true)],
                &proxy()
            )
            .is_empty()
        );
        // No proxy is ready.
        assert!(
            run(
                &[asleep("a")],
                &[&svc],
                &[&none],
                &[workload("a", "web", true)],
                &[]
            )
            .is_empty()
        );
        // The namespace is awake, or not one Siesta manages.
        let awake = NamespaceView {
            state: State::Awake,
            ..asleep("a")
        };
        assert!(
            run(
                &[awake],
                &[&svc],
                &[&none],
                &[workload("a", "web", true)],
                &proxy()
            )
            .is_empty()
        );
        assert!(
            run(
                &[],
                &[&svc],
                &[&none],
                &[workload("a", "web", true)],
                &proxy()
            )
            .is_empty()
        );
        // Headless, ExternalName, Local traffic policy, no selector.
        for spec in [
            json!({"selector": {"app": "web"}, "clusterIP": "None", "ports": [{"port": 80}]}),
            json!({"type": "ExternalName", "externalName": "x.test", "ports": [{"port": 80}]}),
            json!({"selector": {"app": "web"}, "internalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
            json!({"ports": [{"port": 80}]}),
        ] {
            let s = service("a", "web", spec.clone());
            assert!(
                run(
                    &[asleep("a")],
                    &[&s],
                    &[&none],
                    &[workload("a", "web", true)],
                    &proxy()
                )
                .is_empty(),
                "{spec}"
            );
        }
    }

    fn with_port(mut s: EndpointSlice, name: &str, port: i32, created: &str) -> EndpointSlice {
        s.ports = Some(vec![EndpointPort {
            name: Some(name.into()),
            port: Some(port),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]);
        s.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            created.parse().unwrap(),
        ));
        s
    }

    #[test]
    fn allocations_survive_in_the_slices_and_new_services_take_the_lowest_free_port() {
        let (a, b) = (web("a"), web("b"));
        let first = run(
            &[asleep("a")],
            &[&a],
            &[],
            &[workload("a", "web", true)],
            &proxy(),
        );
        let Write::Create(slice_a) = &first[0] else {
            panic!("{first:?}")
        };
        // Read back after a restart: the same slice is wanted, no write.
        let again = run(
            &[asleep("a")],
            &[&a],
            &[slice_a],
            &[workload("a", "web", true)],
            &proxy(),
        );
        assert!(again.is_empty(), "{again:?}");
        // Another namespace's Service gets the next port.
        let both = run(
            &[asleep("a"), asleep("b")],
            &[&a, &b],
            &[slice_a],
            &[workload("a", "web", true), workload("b", "web", true)],
            &proxy(),
        );
        let slices = created(&both);
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].metadata.namespace.as_deref(), Some("b"));
        assert_eq!(slices[0].ports.as_ref().unwrap()[0].port, Some(20001));
        // A port claimed twice stays with the older slice; the newer moves.
        let old = with_port(slice_a.clone(), "http", 20000, "2026-01-01T00:00:00Z");
        let mut newer = with_port(slice_a.clone(), "http", 20000, "2026-02-01T00:00:00Z");
        newer.metadata.namespace = Some("b".into());
        let moved = run(
            &[asleep("a"), asleep("b")],
            &[&a, &b],
            &[&old, &newer],
            &[workload("a", "web", true), workload("b", "web", true)],
            &proxy(),
        );
        assert_eq!(moved.len(), 1, "{moved:?}");
        let Write::Replace(s) = &moved[0] else {
            panic!("{moved:?}")
        };
        assert_eq!(
            (
                s.metadata.namespace.as_deref(),
                s.ports.as_ref().unwrap()[0].port
            ),
            (Some("b"), Some(20001))
        );
        let ports = allocations([&old, &newer], &(20000..=20002));
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[&20000].namespace, "a");
    }

    #[test]
    fn a_full_range_leaves_a_service_unredirected_rather_than_half_done() {
        let services: Vec<Service> = (0..4)
            .map(|i| {
                service(
                    &format!("n{i}"),
                    "web",
                    json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}),
                )
            })
            .collect();
        let refs: Vec<&Service> = services.iter().collect();
        let ns: Vec<NamespaceView> = (0..4).map(|i| asleep(&format!("n{i}"))).collect();
        let wl: Vec<WorkloadView> = (0..4)
            .map(|i| workload(&format!("n{i}"), "web", true))
            .collect();
        let writes = run(&ns, &refs, &[], &wl, &proxy());
        let mut ports: Vec<i32> = created(&writes)
            .iter()
            .map(|s| s.ports.as_ref().unwrap()[0].port.unwrap())
            .collect();
        ports.sort();
        assert_eq!(ports, vec![20000, 20001, 20002]);
    }

    #[test]
    fn a_redirect_goes_when_the_service_has_pods_again_or_lingers_too_long_and_follows_the_proxies()
    {
        let svc = web("a");
        let made = run(
            &[asleep("a")],
            &[&svc],
            &[],
            &[workload("a", "web", true)],
            &proxy(),
        );
        let Write::Create(redirect) = &made[0] else {
            panic!()
        };
        let deleted = |w: &[Write]| {
            w.iter()
                .any(|w| matches!(w, Write::Delete { name, .. } if name == "siesta-redirect-web"))
        };
        // Waking, pods not ready yet: it stays, even without stopped workloads.
        let waking = NamespaceView {
            state: State::Waking,
            ..asleep("a")
        };
        assert!(
            run(
                std::slice::from_ref(&waking),
                &[&svc],
                &[redirect],
                &[],
                &proxy()
            )
            .is_empty()
        );
        // Awake a moment ago: it stays until the pods are ready.
        let awake = NamespaceView {
            state: State::Awake,
            since: Some(Utc::now()),
            name: "a".into(),
        };
        assert!(
            run(
                std::slice::from_ref(&awake),
                &[&svc],
                &[redirect],
                &[],
                &proxy()
            )
            .is_empty()
        );
        let ready = own_slice("a", "web", true);
        assert!(deleted(&run(
            &[awake],
            &[&svc],
            &[redirect, &ready],
            &[],
            &proxy()
        )));
        let long_awake = NamespaceView {
            state: State::Awake,
            since: Some(Utc::now() - chrono::Duration::minutes(5)),
            name: "a".into(),
        };
        assert!(deleted(&run(
            &[long_awake],
            &[&svc],
            &[redirect],
            &[],
            &proxy()
        )));
        // Opted out (no longer a managed namespace), or the Service is gone.
        assert!(deleted(&run(&[], &[&svc], &[redirect], &[], &proxy())));
        assert!(deleted(&run(&[waking], &[], &[redirect], &[], &proxy())));
        // A second proxy: the slice lists both; none: the slice goes.
        let two: Vec<IpAddr> = vec![
            "10.243.255.1".parse().unwrap(),
            "10.243.255.9".parse().unwrap(),
        ];
        let w = run(&[asleep("a")], &[&svc], &[redirect], &[], &two);
        let Write::Replace(s) = &w[0] else {
            panic!("{w:?}")
        };
        assert_eq!(s.endpoints.as_ref().unwrap().len(), 2);
        assert_eq!(s.ports, redirect.ports, "the allocation is kept");
        assert!(deleted(&run(
            &[asleep("a")],
            &[&svc],
            &[redirect],
            &[],
            &[]
        )));
    }
}
