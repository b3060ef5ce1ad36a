//! Gateway API, pure: which Gateways are Siesta's, which HTTPRoutes attach
//! to them, what they route, and the status each route and class should
//! have. The proxy (`proxy::gateway`) serves what [`attach`] says; the
//! leader controller (`controller::gateway`) writes what [`route_status`] and
//! [`class_status`] say. One function for both, so the status users read is
//! what the proxy does.
//!
//! Rules (Gateway API v1, standard channel, the parts Siesta supports):
//! - A Gateway is Siesta's when its GatewayClass has `controllerName:
//!   siesta.dev/gateway`. Routes and parents of other controllers are never
//!   looked at or written.
//! - A parentRef (kind Gateway) attaches to the listeners it names
//!   (`sectionName`, `port`, or all); a listener takes an HTTPRoute when its
//!   protocol is HTTP or HTTPS, its `allowedRoutes.kinds` allow HTTPRoute and
//!   `allowedRoutes.namespaces.from` is `Same` (the default: the Gateway's
//!   namespace) or `All`. `Selector` is not supported (not allowed).
//! - Hostnames: a listener's hostname intersected with the route's, as the
//!   spec says (`*.example.test` matches any subdomain; the more specific of
//!   two matching names is the one served); none on either side takes the
//!   other's, none on both is every host.
//! - Matches: `Exact` and `PathPrefix` paths (default `PathPrefix /`).
//!   Header, query and method matches, regular expressions and filters are
//!   not supported: such a route is not accepted (`UnsupportedValue`) and
//!   nothing of it is served, rather than served more widely than written.
//! - Backends: core Services with a port. A backend in another namespace
//!   needs a ReferenceGrant there that allows HTTPRoutes of the route's
//!   namespace to Services (all, or that one). A rule serves its first
//!   backendRef of non-zero weight; if that one is refused, not found or not
//!   a Service, the rule answers 503 (never another route).
//! - Conflicts: the oldest route wins (creation time, then namespace/name).
pub mod types;

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use types::{
    Gateway, GatewayClass, GatewayClassStatus, HTTPBackendRef, HTTPRoute, HTTPRouteRule,
    HTTPRouteStatus, Listener, ParentReference, ReferenceGrant, RouteParentStatus,
};

/// The `controllerName` of GatewayClasses whose Gateways Siesta serves.
pub const CONTROLLER_NAME: &str = "siesta.dev/gateway";
/// The Gateway API group.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// The cluster as these rules read it.
pub struct Snapshot<'a> {
    pub classes: &'a [Arc<GatewayClass>],
    pub gateways: &'a [Arc<Gateway>],
    pub routes: &'a [Arc<HTTPRoute>],
    pub grants: &'a [Arc<ReferenceGrant>],
    /// Whether a Service exists: (namespace, name).
    pub service_exists: &'a dyn Fn(&str, &str) -> bool,
}

/// Why a condition is False: its reason and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    fn new(reason: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            reason,
            message: message.into(),
        }
    }
}

/// What one of Siesta's parents says of a route.
#[derive(Clone, Debug, PartialEq)]
pub struct ParentOutcome {
    pub parent_ref: ParentReference,
    pub accepted: Result<(), Problem>,
    pub resolved_refs: Result<(), Problem>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRule {
    Exact(String),
    Prefix(String),
}

/// A Service port a rule forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendTarget {
    pub namespace: String,
    pub service: String,
    pub port: i32,
}

/// One (host, path) the proxy serves; `backend: None` answers 503.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    pub host: String,
    pub path: PathRule,
    pub backend: Option<BackendTarget>,
}

/// What Siesta makes of one HTTPRoute.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteOutcome {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// One entry per parentRef naming a Gateway of Siesta's; empty when none does.
    pub parents: Vec<ParentOutcome>,
    /// What the proxy serves of it: empty unless a parent accepted it.
    pub served: Vec<Served>,
}

/// Whether a class is implemented by Siesta.
pub fn is_ours(class: &GatewayClass) -> bool {
    class.spec.controller_name == CONTROLLER_NAME
}

/// Every HTTPRoute, oldest first, with Siesta's parents' verdicts and what
/// it serves. Routes with no parent of Siesta's are listed too (empty), so
/// a status entry of Siesta's that no longer applies can be removed.
pub fn attach(s: &Snapshot<'_>) -> Vec<RouteOutcome> {
    let mut routes: Vec<&Arc<HTTPRoute>> = s.routes.iter().collect();
    routes.sort_by(|a, b| {
        let key = |r: &HTTPRoute| {
            (
                r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                r.metadata.namespace.clone(),
                r.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    routes.into_iter().filter_map(|r| outcome(s, r)).collect()
}

fn outcome(s: &Snapshot<'_>, route: &HTTPRoute) -> Option<RouteOutcome> {
    let namespace = route.metadata.namespace.clone()?;
    let name = route.metadata.name.clone()?;
    let unsupported = unsupported(route);
    let backends = backends(s, &namespace, &route.spec.rules);
    let resolved_refs = backends
        .iter()
        .flat_map(|b| b.iter())
        .find_map(|b| b.as_ref().err().cloned())
        .map_or(Ok(()), Err);
    let mut parents = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    for parent_ref in &route.spec.parent_refs {
        let Some(gateway) = our_gateway(s, &namespace, parent_ref) else {
            continue;
        };
        let accepted = match &unsupported {
            Some(p) => Err(p.clone()),
            None => listener_hosts(gateway, &namespace, parent_ref, &route.spec.hostnames),
        };
        parents.push(ParentOutcome {
            parent_ref: parent_ref.clone(),
            accepted: accepted.as_ref().map(|_| ()).map_err(Clone::clone),
            resolved_refs: resolved_refs.clone(),
        });
        for h in accepted.unwrap_or_default() {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    let mut served = Vec::new();
    for host in &hosts {
        for (rule, backend) in route.spec.rules.iter().zip(&backends) {
            let target = backend.first().and_then(|b| b.clone().ok());
            for path in paths(rule) {
                served.push(Served {
                    host: host.clone(),
                    path,
                    backend: target.clone(),
                });
            }
        }
    }
    Some(RouteOutcome {
        namespace,
        name,
        generation: route.metadata.generation,
        parents,
        served,
    })
}

/// The Gateway a parentRef names, if it is of a class of Siesta's.
fn our_gateway<'a>(
    s: &Snapshot<'a>,
    route_ns: &str,
    parent: &ParentReference,
) -> Option<&'a Gateway> {
    if parent.group.as_deref().unwrap_or(GROUP) != GROUP
        || parent.kind.as_deref().unwrap_or("Gateway") != "Gateway"
    {
        return None;
    }
    let ns = parent.namespace.as_deref().unwrap_or(route_ns);
    let gateway = s.gateways.iter().find(|g| {
        g.metadata.namespace.as_deref() == Some(ns)
            && g.metadata.name.as_deref() == Some(parent.name.as_str())
    })?;
    s.classes
        .iter()
        .any(|c| {
            c.metadata.name.as_deref() == Some(gateway.spec.gateway_class_name.as_str())
                && is_ours(c)
        })
        .then_some(gateway.as_ref())
}

/// The hosts a parent accepts the route for, or why it does not.
fn listener_hosts(
    gateway: &Gateway,
    route_ns: &str,
    parent: &ParentReference,
    route_hosts: &[String],
) -> Result<Vec<String>, Problem> {
    let named: Vec<&Listener> = gateway
        .spec
        .listeners
        .iter()
        .filter(|l| parent.section_name.as_deref().is_none_or(|n| n == l.name))
        .filter(|l| parent.port.is_none_or(|p| p == l.port))
        .collect();
    if named.is_empty() {
        return Err(Problem::new(
            "NoMatchingParent",
            "no listener of the Gateway has this sectionName and port",
        ));
    }
    let gateway_ns = gateway.metadata.namespace.as_deref().unwrap_or_default();
    let allowed: Vec<&Listener> = named
        .into_iter()
        .filter(|l| allows(l, gateway_ns, route_ns))
        .collect();
    if allowed.is_empty() {
        return Err(Problem::new(
            "NotAllowedByListeners",
            "no listener allows HTTPRoutes of this namespace (Siesta supports namespaces.from Same and All, protocols HTTP and HTTPS)",
        ));
    }
    let mut hosts = Vec::new();
    for l in allowed {
        for h in intersect(l.hostname.as_deref(), route_hosts) {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    if hosts.is_empty() {
        return Err(Problem::new(
            "NoMatchingListenerHostname",
            "no hostname of the route matches a listener's hostname",
        ));
    }
    Ok(hosts)
}

fn allows(l: &Listener, gateway_ns: &str, route_ns: &str) -> bool {
    if !matches!(l.protocol.as_str(), "HTTP" | "HTTPS") {
        return false;
    }
    let allowed = l.allowed_routes.as_ref();
    let kinds_ok = allowed.and_then(|a| a.kinds.as_ref()).is_none_or(|kinds| {
        kinds
            .iter()
            .any(|k| k.kind == "HTTPRoute" && k.group.as_deref().unwrap_or(GROUP) == GROUP)
    });
    let from = allowed
        .and_then(|a| a.namespaces.as_ref())
        .and_then(|n| n.from.as_deref())
        .unwrap_or("Same");
    let namespace_ok = match from {
        "All" => true,
        "Same" => gateway_ns == route_ns,
        _ => false,
    };
    kinds_ok && namespace_ok
}

/// A listener's hostname intersected with a route's hostnames (Gateway API
/// rules; `*` stands for "every host").
pub fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let listener = listener.map(str::to_ascii_lowercase);
    let route: Vec<String> = route.iter().map(|h| h.to_ascii_lowercase()).collect();
    let mut out: Vec<String> = match (listener, route.is_empty()) {
        (None, true) => vec!["*".into()],
        (None, false) => route,
        (Some(l), true) => vec![l],
        (Some(l), false) => route
            .iter()
            .filter_map(|r| more_specific_match(&l, r))
            .collect(),
    };
    out.dedup();
    out
}

/// The more specific of two hostnames if either matches the other.
fn more_specific_match(a: &str, b: &str) -> Option<String> {
    let covers = |wild: &str, name: &str| {
        wild.strip_prefix('*')
            .is_some_and(|suffix| name.len() > suffix.len() && name.ends_with(suffix))
    };
    if a == b {
        Some(a.to_string())
    } else if covers(a, b) {
        Some(b.to_string())
    } else if covers(b, a) {
        Some(a.to_string())
    } else {
        None
    }
}

/// Why the route uses something Siesta cannot honour, if it does.
fn unsupported(route: &HTTPRoute) -> Option<Problem> {
    for rule in &route.spec.rules {
        if !rule.filters.is_empty() || rule.backend_refs.iter().any(|b| !b.filters.is_empty()) {
            return Some(Problem::new(
                "UnsupportedValue",
                "filters are not supported by siesta.dev/gateway",
            ));
        }
        for m in &rule.matches {
            if !m.headers.is_empty() || !m.query_params.is_empty() || m.method.is_some() {
                return Some(Problem::new(
                    "UnsupportedValue",
                    "header, query parameter and method matches are not supported by siesta.dev/gateway",
                ));
            }
            let kind = m.path.as_ref().and_then(|p| p.type_.as_deref());
            if !matches!(kind, None | Some("Exact" | "PathPrefix")) {
                return Some(Problem::new(
                    "UnsupportedValue",
                    "only Exact and PathPrefix path matches are supported by siesta.dev/gateway",
                ));
            }
        }
    }
    None
}

/// The paths a rule matches (a rule without matches matches every path).
fn paths(rule: &HTTPRouteRule) -> Vec<PathRule> {
    if rule.matches.is_empty() {
        return vec![PathRule::Prefix("/".into())];
    }
    rule.matches
        .iter()
        .map(|m| {
            let path = m.path.as_ref();
            let value = path
                .and_then(|p| p.value.clone())
                .unwrap_or_else(|| "/".into());
            match path.and_then(|p| p.type_.as_deref()) {
                Some("Exact") => PathRule::Exact(value),
                _ => PathRule::Prefix(value),
            }
        })
        .collect()
}

/// Per rule, its backendRefs of non-zero weight, each resolved or refused.
fn backends(
    s: &Snapshot<'_>,
    route_ns: &str,
    rules: &[HTTPRouteRule],
) -> Vec<Vec<Result<BackendTarget, Problem>>> {
    rules
        .iter()
        .map(|rule| {
            rule.backend_refs
                .iter()
                .filter(|b| b.weight != Some(0))
                .map(|b| backend(s, route_ns, b))
                .collect()
        })
        .collect()
}

fn backend(s: &Snapshot<'_>, route_ns: &str, b: &HTTPBackendRef) -> Result<BackendTarget, Problem> {
    let (group, kind) = (
        b.group.as_deref().unwrap_or(""),
        b.kind.as_deref().unwrap_or("Service"),
    );
    if !group.is_empty() || kind != "Service" {
        return Err(Problem::new(
            "InvalidKind",
            format!(
                "backendRef {group}/{kind} {}: only Services are supported",
                b.name
            ),
        ));
    }
    let ns = b.namespace.as_deref().unwrap_or(route_ns);
    if ns != route_ns && !granted(s.grants, route_ns, ns, &b.name) {
        return Err(Problem::new(
            "RefNotPermitted",
            format!(
                "backendRef to Service {ns}/{} needs a ReferenceGrant in {ns} for HTTPRoutes of {route_ns}",
                b.name
            ),
        ));
    }
    if !(s.service_exists)(ns, &b.name) {
        return Err(Problem::new(
            "BackendNotFound",
            format!("Service {ns}/{} not found", b.name),
        ));
    }
    Ok(BackendTarget {
        namespace: ns.to_string(),
        service: b.name.clone(),
        port: b.port.unwrap_or(0),
    })
}

/// Whether a ReferenceGrant in `to_ns` lets HTTPRoutes of `from_ns` refer to
/// the Service `service`.
pub fn granted(grants: &[Arc<ReferenceGrant>], from_ns: &str, to_ns: &str, service: &str) -> bool {
    grants
        .iter()
        .filter(|g| g.metadata.namespace.as_deref() == Some(to_ns))
        .any(|g| {
            g.spec
                .from
                .iter()
                .any(|f| f.group == GROUP && f.kind == "HTTPRoute" && f.namespace == from_ns)
                && g.spec.to.iter().any(|t| {
                    t.group.is_empty()
                        && t.kind == "Service"
                        && t.name.as_deref().is_none_or(|n| n == service)
                })
        })
}

fn condition(
    type_: &str,
    verdict: &Result<(), Problem>,
    ok_reason: &str,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let (status, reason, message) = match verdict {
        Ok(()) => ("True", ok_reason.to_string(), String::new()),
        Err(p) => ("False", p.reason.to_string(), p.message.clone()),
    };
    // The transition time moves only when the status does.
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason,
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The status a route should have: other controllers' parent entries as
/// they are, then one entry per parent of Siesta's. `None` when the current
/// status is that already (nothing to write).
pub fn route_status(
    current: Option<&HTTPRouteStatus>,
    outcome: &RouteOutcome,
    now: &Time,
) -> Option<HTTPRouteStatus> {
    let current_parents = current.map(|s| s.parents.as_slice()).unwrap_or_default();
    let mut parents: Vec<RouteParentStatus> = current_parents
        .iter()
        .filter(|p| p.controller_name != CONTROLLER_NAME)
        .cloned()
        .collect();
    for p in &outcome.parents {
        let previous = current_parents
            .iter()
            .find(|c| c.controller_name == CONTROLLER_NAME && c.parent_ref == p.parent_ref)
            .map(|c| c.conditions.as_slice())
            .unwrap_or_default();
        parents.push(RouteParentStatus {
            parent_ref: p.parent_ref.clone(),
            controller_name: CONTROLLER_NAME.into(),
            conditions: vec![
                condition(
                    "Accepted",
                    &p.accepted,
                    "Accepted",
                    outcome.generation,
                    previous,
                    now,
                ),
                condition(
                    "ResolvedRefs",
                    &p.resolved_refs,
                    "ResolvedRefs",
                    outcome.generation,
                    previous,
                    now,
                ),
            ],
        });
    }
    let next = HTTPRouteStatus { parents };
    let unchanged = match current {
        Some(c) => *c == next,
        None => next.parents.is_empty(),
    };
    (!unchanged).then_some(next)
}

/// The status a class of Siesta's should have: `Accepted` True (other
/// conditions kept). `None` for other classes, or when it has that already.
pub fn class_status(class: &GatewayClass, now: &Time) -> Option<GatewayClassStatus> {
    if !is_ours(class) {
        return None;
    }
    let current = class.status.clone().unwrap_or_default();
    let accepted = condition(
        "Accepted",
        &Ok(()),
        "Accepted",
        class.metadata.generation,
        &current.conditions,
        now,
    );
    let mut next = current.clone();
    match next.conditions.iter_mut().find(|c| c.type_ == "Accepted") {
        Some(c) => *c = accepted,
        None => next.conditions.push(accepted),
    }
    (next != current).then_some(next)
}

#[cfg(test)]
mod tests;
