use super::*;
use serde_json::{Value, json};

fn class(name: &str, controller: &str) -> Arc<GatewayClass> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": name, "generation": 1},
            "spec": {"controllerName": controller}
        }))
        .unwrap(),
    )
}

fn gateway(ns: &str, name: &str, class: &str, listeners: Value) -> Arc<Gateway> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"namespace": ns, "name": name},
            "spec": {"gatewayClassName": class, "listeners": listeners}
        }))
        .unwrap(),
    )
}

fn http_listener() -> Value {
    json!([{"name": "http", "port": 80, "protocol": "HTTP"}])
}

/// A route in `ns` with these parentRefs, hostnames and rules; created at `created` (seconds).
fn route(ns: &str, name: &str, parents: Value, hostnames: Value, rules: Value) -> Arc<HTTPRoute> {
    route_at(ns, name, 0, parents, hostnames, rules)
}

fn route_at(
    ns: &str,
    name: &str,
    created: i64,
    parents: Value,
    hostnames: Value,
    rules: Value,
) -> Arc<HTTPRoute> {
    let created = chrono::DateTime::from_timestamp(1_800_000_000 + created, 0).unwrap();
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"namespace": ns, "name": name, "generation": 3,
                         "creationTimestamp": created.to_rfc3339()},
            "spec": {"parentRefs": parents, "hostnames": hostnames, "rules": rules}
        }))
        .unwrap(),
    )
}

/// A route `team/r` on `team/gw` with these hostnames and rules.
fn on_gw(hostnames: Value, rules: Value) -> Arc<HTTPRoute> {
    route("team", "r", parent("gw"), hostnames, rules)
}

/// The Gateway `team/gw` of class siesta with these listeners.
fn our_gateway(listeners: Value) -> Arc<Gateway> {
    gateway("team", "gw", "siesta", listeners)
}

fn to_web() -> Value {
    json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/app"}}],
            "backendRefs": [{"name": "web", "port": 8080}]}])
}

fn grant(ns: &str, from_ns: &str, to_name: Option<&str>) -> Arc<ReferenceGrant> {
    let mut to = json!({"group": "", "kind": "Service"});
    if let Some(n) = to_name {
        to["name"] = json!(n);
    }
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "ReferenceGrant",
            "metadata": {"namespace": ns, "name": "g"},
            "spec": {"from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": from_ns}], "to": [to]}
        }))
        .unwrap(),
    )
}

struct World {
    classes: Vec<Arc<GatewayClass>>,
    gateways: Vec<Arc<Gateway>>,
    routes: Vec<Arc<HTTPRoute>>,
    grants: Vec<Arc<ReferenceGrant>>,
}

impl World {
    /// Classes `siesta` (ours) and `other`; Gateway `infra/gw` of class siesta and
    /// `infra/theirs` of class other, each with one HTTP listener.
    fn new() -> World {
        World {
            classes: vec![
                class("siesta", CONTROLLER_NAME),
                class("other", "example.com/other"),
            ],
            gateways: vec![
                our_gateway(http_listener()),
                gateway("team", "theirs", "other", http_listener()),
            ],
            routes: vec![],
            grants: vec![],
        }
    }

    fn attach(&self) -> Vec<RouteOutcome> {
        let exists = |ns: &str, name: &str| {
            matches!(
                (ns, name),
                ("team", "web") | ("shared", "db") | ("team", "api")
            )
        };
        attach(&Snapshot {
            classes: &self.classes,
            gateways: &self.gateways,
            routes: &self.routes,
            grants: &self.grants,
            service_exists: &exists,
        })
    }

    fn one(&self) -> RouteOutcome {
        let mut all = self.attach();
        assert_eq!(all.len(), 1);
        all.remove(0)
    }
}

fn parent(name: &str) -> Value {
    json!([{"name": name}])
}

fn target(ns: &str, service: &str, port: i32) -> Option<BackendTarget> {
    Some(BackendTarget {
        namespace: ns.into(),
        service: service.into(),
        port,
    })
}

fn reason(v: &Result<(), Problem>) -> &'static str {
    match v {
        Ok(()) => "ok",
        Err(p) => p.reason,
    }
}

#[test]
fn a_route_on_our_gateway_serves_its_hostnames_and_prefixes_to_its_service() {
    let mut w = World::new();
    w.routes.push(on_gw(json!(["app.example.test"]), to_web()));
    let o = w.one();
    assert_eq!(o.parents.len(), 1);
    assert_eq!(o.parents[0].accepted, Ok(()));
    assert_eq!(o.parents[0].resolved_refs, Ok(()));
    assert_eq!(o.generation, Some(3));
    assert_eq!(
        o.served,
        vec![Served {
            host: "app.example.test".into(),
            path: PathRule::Prefix("/app".into()),
            backend: target("team", "web", 8080),
        }]
    );
}

#[test]
fn exact_paths_are_exact_and_a_rule_without_matches_is_every_path() {
    let mut w = World::new();
    w.routes.push(on_gw(json!([]), json!([
            {"matches": [{"path": {"type": "Exact", "value": "/healthz"}}, {"path": {"value": "/v1"}}],
             "backendRefs": [{"name": "api", "port": 80}]},
            {"backendRefs": [{"name": "web", "port": 80}]}
        ]),
    ));
    let paths: Vec<(String, PathRule)> = w
        .one()
        .served
        .into_iter()
        .map(|s| (s.host, s.path))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("*".into(), PathRule::Exact("/healthz".into())),
            ("*".into(), PathRule::Prefix("/v1".into())),
            ("*".into(), PathRule::Prefix("/".into())),
        ]
    );
}

#[test]
fn routes_on_gateways_of_other_controllers_are_not_ours_at_all() {
    let mut w = World::new();
    w.routes.push(route(
        "team",
        "r",
        parent("theirs"),
        json!(["app.example.test"]),
        to_web(),
    ));
    // and a parentRef to a Gateway that does not exist, and one that is no Gateway
    w.routes.push(route(
        "team",
        "s",
        json!([{"name": "nowhere"}, {"name": "web", "kind": "Service", "group": ""}]),
        json!([]),
        to_web(),
    ));
    for o in w.attach() {
        assert!(o.parents.is_empty() && o.served.is_empty(), "{o:?}");
    }
}

#[test]
fn a_route_with_our_and_their_parents_gets_a_verdict_from_ours_only() {
    let mut w = World::new();
    w.routes.push(route(
        "team",
        "r",
        json!([{"name": "theirs"}, {"name": "gw"}]),
        json!([]),
        to_web(),
    ));
    let o = w.one();
    assert_eq!(o.parents.len(), 1);
    assert_eq!(o.parents[0].parent_ref.name, "gw");
}

#[test]
fn listeners_take_routes_of_the_same_namespace_unless_they_allow_all() {
    let mut w = World::new();
    w.routes.push(route(
        "elsewhere",
        "r",
        json!([{"name": "gw", "namespace": "team"}]),
        json!([]),
        to_web(),
    ));
    let o = w.one();
    assert_eq!(reason(&o.parents[0].accepted), "NotAllowedByListeners");
    assert!(o.served.is_empty());

    w.gateways[0] = our_gateway(json!([{"name": "http", "port": 80, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "All"}}}]));
    assert_eq!(w.one().parents[0].accepted, Ok(()));

    w.gateways[0] = our_gateway(json!([{"name": "http", "port": 80, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "Selector"}}}]));
    assert_eq!(
        reason(&w.one().parents[0].accepted),
        "NotAllowedByListeners",
        "Selector is not supported, so nothing is allowed by it"
    );
}

#[test]
fn listeners_of_other_protocols_or_kinds_do_not_take_http_routes() {
    let mut w = World::new();
    w.routes.push(on_gw(json!([]), to_web()));
    for listeners in [
        json!([{"name": "tcp", "port": 80, "protocol": "TCP"}]),
        json!([{"name": "http", "port": 80, "protocol": "HTTP",
                "allowedRoutes": {"kinds": [{"kind": "GRPCRoute"}]}}]),
    ] {
        w.gateways[0] = our_gateway(listeners);
        assert_eq!(
            reason(&w.one().parents[0].accepted),
            "NotAllowedByListeners"
        );
    }
    w.gateways[0] = our_gateway(json!([{"name": "https", "port": 443, "protocol": "HTTPS",
                "allowedRoutes": {"kinds": [{"group": GROUP, "kind": "HTTPRoute"}]}}]));
    assert_eq!(w.one().parents[0].accepted, Ok(()));
}

#[test]
fn section_name_and_port_pick_listeners() {
    let mut w = World::new();
    w.gateways[0] = our_gateway(json!([
        {"name": "a", "port": 80, "protocol": "HTTP", "hostname": "a.example.test"},
        {"name": "b", "port": 8080, "protocol": "HTTP", "hostname": "b.example.test"}
    ]));
    let hosts = |w: &World| -> Vec<String> {
        let mut h: Vec<String> = w.one().served.into_iter().map(|s| s.host).collect();
        h.dedup();
        h
    };
    w.routes = vec![on_gw(json!([]), to_web())];
    assert_eq!(hosts(&w), ["a.example.test", "b.example.test"]);
    w.routes = vec![route(
        "team",
        "r",
        json!([{"name": "gw", "sectionName": "b"}]),
        json!([]),
        to_web(),
    )];
    assert_eq!(hosts(&w), ["b.example.test"]);
    w.routes = vec![route(
        "team",
        "r",
        json!([{"name": "gw", "port": 80}]),
        json!([]),
        to_web(),
    )];
    assert_eq!(hosts(&w), ["a.example.test"]);
    w.routes = vec![route(
        "team",
        "r",
        json!([{"name": "gw", "sectionName": "c"}]),
        json!([]),
        to_web(),
    )];
    assert_eq!(reason(&w.one().parents[0].accepted), "NoMatchingParent");
}

#[test]
fn hostnames_intersect_as_the_gateway_api_says() {
    let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(intersect(None, &[]), ["*"]);
    assert_eq!(intersect(None, &h(&["a.test"])), ["a.test"]);
    assert_eq!(intersect(Some("*.example.test"), &[]), ["*.example.test"]);
    assert_eq!(
        intersect(
            Some("*.example.test"),
            &h(&[
                "a.example.test",
                "a.b.example.test",
                "example.test",
                "other.test"
            ])
        ),
        ["a.example.test", "a.b.example.test"],
        "a wildcard matches any subdomain, not the domain itself"
    );
    assert_eq!(
        intersect(
            Some("a.example.test"),
            &h(&["*.example.test", "A.Example.Test"])
        ),
        ["a.example.test"]
    );
    assert_eq!(
        intersect(Some("*.example.test"), &h(&["*.a.example.test"])),
        ["*.a.example.test"],
        "the more specific wildcard"
    );
    assert!(intersect(Some("a.example.test"), &h(&["b.example.test"])).is_empty());
}

#[test]
fn a_route_whose_hostnames_match_no_listener_is_not_accepted() {
    let mut w = World::new();
    w.gateways[0] = our_gateway(
        json!([{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.test"}]),
    );
    w.routes.push(on_gw(json!(["app.other.test"]), to_web()));
    let o = w.one();
    assert_eq!(reason(&o.parents[0].accepted), "NoMatchingListenerHostname");
    assert!(o.served.is_empty());
}

#[test]
fn unsupported_matches_and_filters_make_the_route_not_accepted_and_not_served() {
    for rules in [
        json!([{"matches": [{"headers": [{"name": "x", "value": "y"}]}], "backendRefs": [{"name": "web", "port": 80}]}]),
        json!([{"matches": [{"queryParams": [{"name": "x", "value": "y"}]}], "backendRefs": [{"name": "web", "port": 80}]}]),
        json!([{"matches": [{"method": "POST"}], "backendRefs": [{"name": "web", "port": 80}]}]),
        json!([{"matches": [{"path": {"type": "RegularExpression", "value": "/.*"}}], "backendRefs": [{"name": "web", "port": 80}]}]),
        json!([{"filters": [{"type": "RequestRedirect"}], "backendRefs": [{"name": "web", "port": 80}]}]),
        json!([{"backendRefs": [{"name": "web", "port": 80, "filters": [{"type": "RequestHeaderModifier"}]}]}]),
    ] {
        let mut w = World::new();
        w.routes.push(on_gw(json!([]), rules.clone()));
        let o = w.one();
        assert_eq!(
            reason(&o.parents[0].accepted),
            "UnsupportedValue",
            "{rules}"
        );
        assert!(o.served.is_empty(), "{rules}");
    }
}

#[test]
fn cross_namespace_backends_need_a_reference_grant() {
    let mut w = World::new();
    w.routes.push(on_gw(
        json!([]),
        json!([{"backendRefs": [{"name": "db", "namespace": "shared", "port": 5432}]}]),
    ));
    let o = w.one();
    assert_eq!(
        o.parents[0].accepted,
        Ok(()),
        "refused refs do not unaccept"
    );
    assert_eq!(reason(&o.parents[0].resolved_refs), "RefNotPermitted");
    assert_eq!(o.served[0].backend, None, "the rule answers 503");

    // A grant elsewhere, for another namespace, or for another Service does not do.
    w.grants = vec![
        grant("team", "team", None),
        grant("shared", "nobody", None),
        grant("shared", "team", Some("cache")),
    ];
    assert_eq!(reason(&w.one().parents[0].resolved_refs), "RefNotPermitted");

    w.grants.push(grant("shared", "team", Some("db")));
    let o = w.one();
    assert_eq!(o.parents[0].resolved_refs, Ok(()));
    assert_eq!(o.served[0].backend, target("shared", "db", 5432));
    w.grants = vec![grant("shared", "team", None)];
    assert_eq!(w.one().served[0].backend, target("shared", "db", 5432));
}

#[test]
fn missing_services_and_other_kinds_are_unresolved_refs() {
    let mut w = World::new();
    w.routes.push(on_gw(
        json!([]),
        json!([{"backendRefs": [{"name": "gone", "port": 80}]}]),
    ));
    let o = w.one();
    assert_eq!(reason(&o.parents[0].resolved_refs), "BackendNotFound");
    assert_eq!(o.served[0].backend, None);
    w.routes = vec![on_gw(
        json!([]),
        json!([{"backendRefs": [{"name": "web", "kind": "Bucket", "group": "example.com"}]}]),
    )];
    assert_eq!(reason(&w.one().parents[0].resolved_refs), "InvalidKind");
}

#[test]
fn a_rule_serves_its_first_backend_of_non_zero_weight() {
    let mut w = World::new();
    w.routes.push(on_gw(json!([]), json!([{"backendRefs": [{"name": "api", "port": 81, "weight": 0}, {"name": "web", "port": 80}, {"name": "api", "port": 82}]}]),
    ));
    assert_eq!(w.one().served[0].backend, target("team", "web", 80));
}

#[test]
fn routes_come_oldest_first_so_the_oldest_wins_a_conflict() {
    let mut w = World::new();
    w.routes = vec![
        route_at("team", "young", 20, parent("gw"), json!([]), to_web()),
        route_at("team", "old", 10, parent("gw"), json!([]), to_web()),
    ];
    let names: Vec<String> = w.attach().into_iter().map(|o| o.name).collect();
    assert_eq!(names, ["old", "young"]);
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_900_000_000).unwrap())
}

fn their_entry() -> RouteParentStatus {
    serde_json::from_value(json!({
        "parentRef": {"name": "theirs"},
        "controllerName": "example.com/other",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    }))
    .unwrap()
}

#[test]
fn route_status_keeps_other_controllers_entries_and_adds_ours() {
    let mut w = World::new();
    w.routes.push(route(
        "team",
        "r",
        json!([{"name": "theirs"}, {"name": "gw"}]),
        json!([]),
        json!([{"backendRefs": [{"name": "db", "namespace": "shared", "port": 1}]}]),
    ));
    let o = w.one();
    let current = HTTPRouteStatus {
        parents: vec![their_entry()],
    };
    let next = route_status(Some(&current), &o, &now()).expect("a change");
    assert_eq!(next.parents.len(), 2);
    assert_eq!(next.parents[0], their_entry(), "theirs untouched");
    let ours = &next.parents[1];
    assert_eq!(ours.controller_name, "siesta.dev/gateway");
    assert_eq!(ours.parent_ref.name, "gw");
    let c: Vec<(&str, &str, &str, Option<i64>)> = ours
        .conditions
        .iter()
        .map(|c| {
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.reason.as_str(),
                c.observed_generation,
            )
        })
        .collect();
    assert_eq!(
        c,
        [
            ("Accepted", "True", "Accepted", Some(3)),
            ("ResolvedRefs", "False", "RefNotPermitted", Some(3))
        ]
    );
    assert_eq!(
        route_status(Some(&next), &o, &now()),
        None,
        "nothing to write a second time"
    );
}

#[test]
fn transition_times_move_only_when_a_condition_changes() {
    let mut w = World::new();
    w.routes.push(on_gw(
        json!([]),
        json!([{"backendRefs": [{"name": "db", "namespace": "shared", "port": 1}]}]),
    ));
    let first = route_status(None, &w.one(), &now()).unwrap();
    w.grants.push(grant("shared", "team", None));
    let later = Time(
        now()
            .0
            .checked_add(k8s_openapi::jiff::SignedDuration::from_mins(5))
            .unwrap(),
    );
    let second = route_status(Some(&first), &w.one(), &later).unwrap();
    let times: Vec<_> = second.parents[0]
        .conditions
        .iter()
        .map(|c| {
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.last_transition_time.0,
            )
        })
        .collect();
    assert_eq!(
        times,
        [
            ("Accepted", "True", now().0),
            ("ResolvedRefs", "True", later.0)
        ]
    );
}

#[test]
fn our_stale_entries_go_and_routes_we_never_served_are_left_alone() {
    let mut w = World::new();
    w.routes
        .push(route("team", "r", parent("theirs"), json!([]), to_web()));
    let o = w.one();
    assert_eq!(route_status(None, &o, &now()), None);
    let theirs = HTTPRouteStatus {
        parents: vec![their_entry()],
    };
    assert_eq!(route_status(Some(&theirs), &o, &now()), None);
    let mut stale = theirs.clone();
    stale.parents.push(RouteParentStatus {
        parent_ref: ParentReference {
            name: "gw".into(),
            ..Default::default()
        },
        controller_name: CONTROLLER_NAME.into(),
        conditions: vec![],
    });
    assert_eq!(route_status(Some(&stale), &o, &now()), Some(theirs));
}

#[test]
fn our_classes_are_accepted_once_and_others_never_touched() {
    let ours = class("siesta", CONTROLLER_NAME);
    assert_eq!(class_status(&class("other", "example.com/x"), &now()), None);
    let status = class_status(&ours, &now()).unwrap();
    assert_eq!(status.conditions.len(), 1);
    let c = &status.conditions[0];
    assert_eq!(
        (
            c.type_.as_str(),
            c.status.as_str(),
            c.reason.as_str(),
            c.observed_generation
        ),
        ("Accepted", "True", "Accepted", Some(1))
    );
    let mut accepted = (*ours).clone();
    accepted.status = Some(status);
    assert_eq!(class_status(&accepted, &now()), None);

    // The CRD's default (Unknown, Pending) is replaced in place; other conditions stay.
    let mut pending = (*ours).clone();
    pending.status = Some(
        serde_json::from_value(json!({"conditions": [
            {"type": "Accepted", "status": "Unknown", "reason": "Pending", "message": "Waiting for controller",
             "lastTransitionTime": "1970-01-01T00:00:00Z"},
            {"type": "SupportedVersion", "status": "True", "reason": "SupportedVersion", "message": "",
             "lastTransitionTime": "1970-01-01T00:00:00Z"}
        ]}))
        .unwrap(),
    );
    let next = class_status(&pending, &now()).unwrap();
    let kinds: Vec<(&str, &str)> = next
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(kinds, [("Accepted", "True"), ("SupportedVersion", "True")]);
    assert_eq!(next.conditions[0].last_transition_time, now());
}

#[test]
fn unknown_fields_are_ignored_and_status_round_trips() {
    let r: HTTPRoute = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"namespace": "team", "name": "r"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"timeouts": {"request": "5s"},
                 "backendRefs": [{"name": "web", "port": 80}], "name": "main"}],
                 "someday": true},
        "status": {"parents": [{"parentRef": {"group": GROUP, "kind": "Gateway", "name": "gw",
                   "namespace": "team", "sectionName": "http", "port": 80},
                   "controllerName": "x/y", "conditions": []}]}
    }))
    .unwrap();
    let back = serde_json::to_value(r.status.as_ref().unwrap()).unwrap();
    assert_eq!(
        back["parents"][0]["parentRef"],
        json!({"group": GROUP, "kind": "Gateway", "name": "gw", "namespace": "team", "sectionName": "http", "port": 80})
    );
}
