//! The executor against a scripted API server: a `kube::Client` over
//! `tower_test::mock::pair()` (as kube-rs's controller-rs tests do), answered
//! by a small in-memory store that applies merge patches, honours the
//! `resourceVersion` guard and can be told to fail a request. One scenario per
//! verdict, asserting the requests a user would see in an audit log: what was
//! written, in which order, and what was left alone.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Namespace;
use kube::client::Body;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::events::Publisher;
use super::reconcile::{Context, merge_patch as merge, reconcile};
use crate::activity::{AllAwake, Reporter};
use crate::config::AdminConfig;
use crate::metrics::Metrics;

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

type Fault = Box<dyn Fn(&Seen) -> Option<(u16, Value)> + Send>;

#[derive(Default)]
struct Store {
    /// Objects by path (`/api/v1/namespaces/team-a`, `/apis/apps/v1/namespaces/team-a/deployments/web`).
    objects: BTreeMap<String, Value>,
    log: Vec<Seen>,
    version: u64,
    faults: Vec<Fault>,
}

impl Store {
    fn put(&mut self, path: &str, mut object: Value) {
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.objects.insert(path.to_string(), object);
    }

    fn answer(&mut self, seen: Seen) -> (u16, Value) {
        self.log.push(seen.clone());
        if let Some(fault) = self.faults.iter().find_map(|f| f(&seen)) {
            return fault;
        }
        let not_found = (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        );
        match seen.method.as_str() {
            "GET" => match self.objects.get(&seen.path) {
                Some(o) => (200, o.clone()),
                None => {
                    // A collection: every object directly under it.
                    let prefix = format!("{}/", seen.path);
                    let items: Vec<Value> = self
                        .objects
                        .iter()
                        .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                        .map(|(_, o)| o.clone())
                        .collect();
                    (
                        200,
                        json!({"metadata": {"resourceVersion": self.version.to_string()}, "items": items}),
                    )
                }
            },
            "PATCH" => {
                let Some(current) = self.objects.get(&seen.path).cloned() else {
                    return not_found;
                };
                let guard = seen.body["metadata"]["resourceVersion"].as_str();
                if guard.is_some_and(|g| Some(g) != current["metadata"]["resourceVersion"].as_str())
                {
                    return (
                        409,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
                    );
                }
                let mut next = current;
                merge(&mut next, &seen.body);
                self.put(&seen.path, next);
                (200, self.objects[&seen.path].clone())
            }
            "POST" => (201, seen.body.clone()),
            "DELETE" => {
                let Some(current) = self.objects.get(&seen.path).cloned() else {
                    return not_found;
                };
                let pre = &seen.body["preconditions"];
                let meta = &current["metadata"];
                let holds = |field: &str| pre[field].is_null() || pre[field] == meta[field];
                if !holds("uid") || !holds("resourceVersion") {
                    return (
                        409,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "Precondition failed"}),
                    );
                }
                self.objects.remove(&seen.path);
                (200, current)
            }
            _ => not_found,
        }
    }
}

struct Scripted {
    store: Arc<Mutex<Store>>,
    ctx: Arc<Context>,
    metrics: Arc<Metrics>,
}

fn namespace(annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": "team-a", "uid": "u1", "annotations": annotations}})
}

fn deployment(name: &str, replicas: i32, ready: i32, annotations: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": "team-a", "generation": 1, "annotations": annotations},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "x",
                                          "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]}}},
           "status": {"replicas": replicas, "readyReplicas": ready, "observedGeneration": 1}})
}

const NS: &str = "/api/v1/namespaces/team-a";
const WEB: &str = "/apis/apps/v1/namespaces/team-a/deployments/web";

impl Scripted {
    fn new() -> Scripted {
        Scripted::with_config(AdminConfig::default())
    }

    fn with_config(config: AdminConfig) -> Scripted {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let store = Arc::new(Mutex::new(Store::default()));
        let server = store.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_string(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (code, body) = server.lock().unwrap().answer(seen);
                let response = Response::builder()
                    .status(StatusCode::from_u16(code).unwrap())
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        let client = kube::Client::new(service, "default");
        let metrics = Arc::new(Metrics::new());
        let reporter = Reporter::new(Arc::new(AllAwake), None, None, metrics.clone());
        let (_tx, config) = tokio::sync::watch::channel(Arc::new(config));
        let ctx = Context::new(
            client.clone(),
            config,
            reporter,
            Publisher::new(client, "test".into()),
        );
        // Seen long ago: the idle clock does not hold a first reconcile back.
        ctx.first_seen
            .lock()
            .unwrap()
            .insert("team-a".into(), Utc::now() - chrono::Duration::days(1));
        Scripted {
            store,
            ctx: Arc::new(ctx),
            metrics,
        }
    }

    /// A namespace Siesta put to sleep five minutes ago (idle after 1 h).
    fn asleep_for_five_minutes() -> Scripted {
        let api = Scripted::new();
        let slept = crate::model::format_instant(Utc::now() - chrono::Duration::minutes(5));
        api.put(
            NS,
            namespace(
                json!({"siesta.dev/enabled": "true", "siesta.dev/state": "asleep",
                             "siesta.dev/state-since": slept, "siesta.dev/idle-after": "1h"}),
            ),
        );
        api
    }

    fn put(&self, path: &str, object: Value) {
        self.store.lock().unwrap().put(path, object);
    }

    /// The namespace, opted in and waking for these many seconds.
    fn put_waking_since(&self, seconds: i64) {
        let since = crate::model::format_instant(Utc::now() - chrono::Duration::seconds(seconds));
        self.put(
            NS,
            namespace(
                json!({"siesta.dev/enabled": "true", "siesta.dev/state": "waking",
                             "siesta.dev/state-since": since}),
            ),
        );
    }

    fn fail(&self, fault: impl Fn(&Seen) -> Option<(u16, Value)> + Send + 'static) {
        self.store.lock().unwrap().faults.push(Box::new(fault));
    }

    async fn reconcile(&self) -> Result<Action, super::reconcile::ReconcileError> {
        let ns: Namespace =
            serde_json::from_value(self.store.lock().unwrap().objects[NS].clone()).unwrap();
        reconcile(Arc::new(ns), self.ctx.clone()).await
    }

    fn writes(&self) -> Vec<Seen> {
        let log = self.store.lock().unwrap().log.clone();
        log.into_iter().filter(|s| s.method != "GET").collect()
    }

    fn object(&self, path: &str) -> Value {
        self.store.lock().unwrap().objects[path].clone()
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics.render();
        let line = text.lines().find(|l| l.starts_with(series))?;
        line[series.len()..].trim().parse().ok()
    }
}

fn position(writes: &[Seen], wanted: impl Fn(&Seen) -> bool) -> usize {
    writes
        .iter()
        .position(wanted)
        .unwrap_or_else(|| panic!("no such write in {writes:#?}"))
}

/// A person asks for a sleep or a wake.
fn annotate_action(api: &Scripted, action: &str) {
    let mut ns = api.object(NS);
    ns["metadata"]["annotations"]["siesta.dev/action"] = json!(action);
    api.put(NS, ns);
}

fn event_reason(s: &Seen) -> Option<&str> {
    (s.method == "POST" && s.path.ends_with("/events"))
        .then(|| s.body["reason"].as_str())
        .flatten()
}

#[tokio::test]
async fn sleep_records_the_state_then_scales_to_zero_with_the_original_then_announces() {
    let api = Scripted::new();
    api.put(
        NS,
        namespace(json!({"siesta.dev/enabled": "true", "siesta.dev/action": "sleep"})),
    );
    api.put(WEB, deployment("web", 3, 3, json!({})));
    let action = api.reconcile().await.expect("reconciled");
    assert_eq!(action, Action::await_change());

    let writes = api.writes();
    let state = position(&writes, |s| {
        s.path == NS && s.body["metadata"]["annotations"]["siesta.dev/state"] == "asleep"
    });
    let scaled = position(&writes, |s| s.path == WEB);
    let announced = position(&writes, |s| event_reason(s) == Some("Sleeping"));
    assert!(state < scaled && scaled < announced, "{writes:#?}");
    // The count and its record travel in one guarded request.
    let patch = &writes[scaled].body;
    assert_eq!(patch["spec"]["replicas"], 0);
    assert_eq!(
        patch["metadata"]["annotations"]["siesta.dev/original-replicas"],
        "3"
    );
    assert!(patch["metadata"]["resourceVersion"].is_string());
    assert!(
        writes[announced].body["note"]
            .as_str()
            .unwrap()
            .contains("1 workload(s)"),
        "{:?}",
        writes[announced].body
    );
    // What it would save is on the namespace, so a restart continues from it.
    let saved = api.object(NS)["metadata"]["annotations"]["siesta.dev/saved"].clone();
    let saved = crate::annotations::Saved::parse(saved.as_str().unwrap()).unwrap();
    assert_eq!(saved.cpu_rate, 1.5);
    assert_eq!(
        api.metric("siesta_sleeps_total{namespace=\"team-a\",reason=\"manual\"}"),
        Some(1.0)
    );
    assert_eq!(
        api.metric("siesta_reconciles_total{result=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(
        api.metric("siesta_namespace_asleep{namespace=\"team-a\"}"),
        Some(1.0)
    );
    // State and reason are labels too, written in the same request as the
    // annotations, so `kubectl get ns -l siesta.dev/state=asleep` finds it.
    let labels = &writes[state].body["metadata"]["labels"];
    assert_eq!(labels["siesta.dev/state"], "asleep");
    assert_eq!(labels["siesta.dev/reason"], "manual");
}

#[tokio::test]
async fn observe_mode_records_a_would_be_sleep_and_its_potential_savings_and_scales_nothing() {
    let api = Scripted::new();
    api.put(
        NS,
        namespace(json!({"siesta.dev/enabled": "observe", "siesta.dev/action": "sleep"})),
    );
    api.put(WEB, deployment("web", 3, 3, json!({})));
    api.reconcile().await.expect("reconciled");
    let writes = api.writes();
    assert!(!writes.iter().any(|s| s.path == WEB), "{writes:#?}");
    let ns = api.object(NS);
    let ann = &ns["metadata"]["annotations"];
    assert_eq!(ann["siesta.dev/observed-state"], "asleep");
    assert_eq!(ann["siesta.dev/observed-reason"], "manual");
    assert!(ann.get("siesta.dev/state").is_none(), "{ann}");
    assert!(ann.get("siesta.dev/action").is_none(), "{ann}");
    assert!(ns["metadata"].get("labels").is_none(), "{ns}");
    let totals =
        crate::annotations::ObservedTotals::parse(ann["siesta.dev/observed"].as_str().unwrap())
            .unwrap();
    assert_eq!((totals.sleeps, totals.wakes), (1, 0));
    // Three running replicas of 500m and 256Mi would have stopped.
    let saved =
        crate::annotations::Saved::parse(ann["siesta.dev/observed-saved"].as_str().unwrap())
            .unwrap();
    assert_eq!((saved.cpu_rate, saved.memory_rate), (1.5, 805306368.0));
    let events: Vec<_> = writes.iter().filter_map(event_reason).collect();
    assert_eq!(events, ["WouldSleep"]);
    assert_eq!(
        api.metric("siesta_observed_sleeps_total{namespace=\"team-a\",reason=\"manual\"}"),
        Some(1.0)
    );
    assert_eq!(
        api.metric("siesta_observed_asleep{namespace=\"team-a\"}"),
        Some(1.0)
    );
    assert_eq!(
        api.metric("siesta_namespace_asleep{namespace=\"team-a\"}"),
        None
    );
    // Looked at again: still one would-be sleep, one Event, nothing scaled.
    api.reconcile().await.expect("reconciled");
    let writes = api.writes();
    assert!(!writes.iter().any(|s| s.path == WEB));
    assert_eq!(writes.iter().filter_map(event_reason).count(), 1);
}

#[tokio::test]
async fn wake_writes_the_savings_with_the_state_restores_the_record_and_waits_for_ready() {
    let api = Scripted::new();
    let slept = crate::model::format_instant(Utc::now() - chrono::Duration::hours(2));
    let checkpoint = crate::annotations::Saved {
        cpu_rate: 1.5,
        memory_rate: 805306368.0,
        ..crate::annotations::Saved::zero(crate::model::parse_instant(&slept).unwrap())
    };
    api.put(
        NS,
        namespace(
            json!({"siesta.dev/enabled": "true", "siesta.dev/action": "wake",
                         "siesta.dev/state": "asleep", "siesta.dev/state-since": slept,
                         "siesta.dev/saved": checkpoint.format()}),
        ),
    );
    api.put(
        WEB,
        deployment("web", 0, 0, json!({"siesta.dev/original-replicas": "3"})),
    );
    let action = api.reconcile().await.expect("reconciled");
    // Restored but not ready: looked at again (the workload watch pokes sooner).
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));

    let writes = api.writes();
    let waking = position(&writes, |s| {
        s.path == NS && s.body["metadata"]["annotations"]["siesta.dev/state"] == "waking"
    });
    let restored = position(&writes, |s| s.path == WEB);
    assert!(waking < restored);
    // Two hours asleep at 1.5 cores, written in the same request as the state.
    let saved = writes[waking].body["metadata"]["annotations"]["siesta.dev/saved"]
        .as_str()
        .expect("savings written with the wake");
    let saved = crate::annotations::Saved::parse(saved).unwrap();
    assert!(
        (saved.cpu_core_seconds - 1.5 * 7200.0).abs() < 10.0,
        "{saved:?}"
    );
    assert_eq!((saved.cpu_rate, saved.memory_rate), (0.0, 0.0));
    let web = api.object(WEB);
    assert_eq!(web["spec"]["replicas"], 3);
    assert!(
        web["metadata"]["annotations"]
            .get("siesta.dev/original-replicas")
            .is_none()
    );
    assert!(writes.iter().any(|s| event_reason(s) == Some("Waking")));
    assert_eq!(
        api.metric("siesta_wakes_total{namespace=\"team-a\",trigger=\"manual\"}"),
        Some(1.0)
    );
    assert!(
        api.metric("siesta_saved_cpu_core_seconds_total{namespace=\"team-a\"}")
            .is_some_and(|v| (v - 1.5 * 7200.0).abs() < 10.0)
    );
}

#[tokio::test]
async fn keeping_an_asleep_namespace_puts_a_new_workload_to_sleep_and_nothing_else() {
    let api = Scripted::asleep_for_five_minutes();
    api.put(
        WEB,
        deployment("web", 0, 0, json!({"siesta.dev/original-replicas": "2"})),
    );
    let new = "/apis/apps/v1/namespaces/team-a/deployments/new";
    api.put(new, deployment("new", 1, 1, json!({})));
    api.reconcile().await.expect("reconciled");
    let writes = api.writes();
    assert!(
        !writes.iter().any(|s| s.path == NS
            && s.body["metadata"]["annotations"]
                .get("siesta.dev/state")
                .is_some()),
        "no transition: {writes:#?}"
    );
    assert!(
        !writes.iter().any(|s| s.path == WEB),
        "the sleeping one is left alone"
    );
    assert_eq!(api.object(new)["spec"]["replicas"], 0);
    assert_eq!(
        api.object(new)["metadata"]["annotations"]["siesta.dev/original-replicas"],
        "1"
    );
    assert!(!writes.iter().any(|s| event_reason(s).is_some()));
}

#[tokio::test]
async fn a_waking_namespace_whose_workloads_are_ready_is_marked_awake() {
    let api = Scripted::new();
    api.put_waking_since(20);
    api.put(WEB, deployment("web", 3, 3, json!({})));
    let action = api.reconcile().await.expect("reconciled");
    assert_eq!(action, Action::await_change());
    assert_eq!(
        api.object(NS)["metadata"]["annotations"]["siesta.dev/state"],
        "awake"
    );
    assert!(
        api.writes()
            .iter()
            .any(|s| event_reason(s) == Some("Awake"))
    );
    assert!(api.metric("siesta_wake_duration_seconds_count{namespace=\"team-a\"}") == Some(1.0));
}

#[tokio::test]
async fn a_namespace_changed_since_it_was_read_is_left_alone_and_looked_at_again() {
    let api = Scripted::new();
    api.put(
        NS,
        namespace(json!({"siesta.dev/enabled": "true", "siesta.dev/action": "sleep"})),
    );
    api.put(WEB, deployment("web", 3, 3, json!({})));
    // Someone opts it out between our read and our write.
    let ns: Namespace = serde_json::from_value(api.object(NS)).unwrap();
    let mut moved = api.object(NS);
    moved["metadata"]["annotations"]["siesta.dev/enabled"] = json!("false");
    api.put(NS, moved);
    let action = reconcile(Arc::new(ns), api.ctx.clone())
        .await
        .expect("reconciled");
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    assert!(
        !api.writes().iter().any(|s| s.path == WEB),
        "no workload touched"
    );
    assert_eq!(api.object(WEB)["spec"]["replicas"], 3);
}

#[tokio::test]
async fn a_malformed_annotation_is_one_warning_and_no_write() {
    let api = Scripted::new();
    api.put(
        NS,
        namespace(json!({"siesta.dev/enabled": "true", "siesta.dev/idle-after": "soon"})),
    );
    api.put(WEB, deployment("web", 3, 3, json!({})));
    for _ in 0..2 {
        assert_eq!(
            api.reconcile().await.expect("reconciled"),
            Action::await_change()
        );
    }
    let writes = api.writes();
    assert_eq!(writes.len(), 1, "one Event, nothing else: {writes:#?}");
    assert_eq!(event_reason(&writes[0]), Some("InvalidAnnotation"));
    assert_eq!(
        api.metric("siesta_errors_total{kind=\"bad_annotation\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_forbidden_list_fails_the_reconcile_by_kind_and_changes_no_count() {
    let api = Scripted::new();
    api.put(
        NS,
        namespace(json!({"siesta.dev/enabled": "true", "siesta.dev/action": "sleep"})),
    );
    api.put(WEB, deployment("web", 3, 3, json!({})));
    api.fail(|s| {
        (s.method == "GET" && s.path.ends_with("/statefulsets")).then(|| {
            (
                403,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": "Forbidden", "code": 403, "message": "forbidden"}),
            )
        })
    });
    assert!(api.reconcile().await.is_err());
    assert_eq!(
        api.metric("siesta_reconcile_failures_total{kind=\"forbidden\"}"),
        Some(1.0)
    );
    assert_eq!(
        api.metric("siesta_reconciles_total{result=\"error\"}"),
        Some(1.0)
    );
    // The state was recorded first, so the next pass finishes the job; the
    // workload still has its count (a guarded patch either happened or not).
    assert_eq!(
        api.object(NS)["metadata"]["annotations"]["siesta.dev/state"],
        "asleep"
    );
    let web = api.object(WEB);
    let record = web["metadata"]["annotations"].get("siesta.dev/original-replicas");
    assert!(
        web["spec"]["replicas"] == 3 || record == Some(&json!("3")),
        "{web}"
    );
}

#[tokio::test]
async fn a_keep_awake_beyond_the_admins_maximum_is_brought_back_with_a_warning() {
    let api = Scripted::new();
    let next_year = crate::model::format_instant(Utc::now() + chrono::Duration::days(365));
    api.put(
        NS,
        namespace(json!({"siesta.dev/enabled": "true", "siesta.dev/keep-awake-until": next_year})),
    );
    api.reconcile().await.expect("reconciled");
    let until = api.object(NS)["metadata"]["annotations"]["siesta.dev/keep-awake-until"]
        .as_str()
        .map(|s| crate::model::parse_instant(s).unwrap())
        .expect("still set");
    // The default maximum is 24 h.
    let ahead = (until - Utc::now()).num_seconds();
    assert!((86_390..=86_400).contains(&ahead), "{ahead} s ahead");
    assert!(
        api.writes()
            .iter()
            .any(|s| event_reason(s) == Some("KeepAwakeClamped"))
    );
    // Within the maximum now: a second reconcile writes nothing more.
    let before = api.writes().len();
    api.reconcile().await.expect("reconciled");
    assert_eq!(api.writes().len(), before);
}

#[tokio::test]
async fn a_flux_managed_workload_sleeps_with_flux_paused_and_wakes_with_it_back() {
    let api = Scripted::new();
    api.put(
        NS,
        namespace(json!({"siesta.dev/enabled": "true", "siesta.dev/action": "sleep"})),
    );
    let mut web = deployment("web", 2, 2, json!({}));
    web["metadata"]["labels"] = json!({
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system"
    });
    api.put(WEB, web);
    api.reconcile().await.expect("reconciled");
    let writes = api.writes();
    let scaled = position(&writes, |s| s.path == WEB);
    let ann = &writes[scaled].body["metadata"]["annotations"];
    // One request: zero, the record, Flux paused and what it had before.
    assert_eq!(writes[scaled].body["spec"]["replicas"], 0);
    assert_eq!(ann["siesta.dev/original-replicas"], "2");
    assert_eq!(ann["kustomize.toolkit.fluxcd.io/reconcile"], "disabled");
    assert_eq!(ann["siesta.dev/original-reconcile"], "");
    let sleeping = writes
        .iter()
        .find(|s| event_reason(s) == Some("Sleeping"))
        .expect("a Sleeping Event");
    let note = sleeping.body["note"].as_str().unwrap();
    assert!(
        note.contains("paused on 1") && note.contains("Flux Kustomization flux-system/apps"),
        "{note}"
    );

    annotate_action(&api, "wake");
    api.reconcile().await.expect("reconciled");
    let web = api.object(WEB);
    let ann = &web["metadata"]["annotations"];
    assert_eq!(web["spec"]["replicas"], 2);
    assert!(
        ann.get("kustomize.toolkit.fluxcd.io/reconcile").is_none(),
        "{ann}"
    );
    assert!(ann.get("siesta.dev/original-reconcile").is_none(), "{ann}");
    assert!(ann.get("siesta.dev/original-replicas").is_none(), "{ann}");
}

#[tokio::test]
async fn argo_cd_undoing_a_sleep_is_named_with_the_fix_in_the_event() {
    let api = Scripted::asleep_for_five_minutes();
    // Recorded asleep, but back at 2: Argo CD's controller owns the count now.
    let mut web = deployment("web", 2, 2, json!({"siesta.dev/original-replicas": "2"}));
    web["metadata"]["managedFields"] = json!([
        {"manager": "siesta", "operation": "Update", "apiVersion": "apps/v1",
         "time": "2026-12-02T10:00:00Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:annotations": {"f:siesta.dev/original-replicas": {}}}}},
        {"manager": "argocd-controller", "operation": "Apply", "apiVersion": "apps/v1",
         "time": "2026-12-02T10:01:00Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    ]);
    api.put(WEB, web);
    api.reconcile().await.expect("reconciled");
    let web = api.object(WEB);
    assert_eq!(web["spec"]["replicas"], 2, "their change wins");
    assert_eq!(
        web["metadata"]["annotations"]["siesta.dev/released"],
        "argocd-controller"
    );
    let writes = api.writes();
    let changed: Vec<&str> = writes
        .iter()
        .filter(|s| event_reason(s) == Some("ChangedWhileAsleep"))
        .filter_map(|s| s.body["note"].as_str())
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(
        changed[0].contains("Argo CD (argocd-controller)")
            && changed[0].contains("managedFieldsManagers: [siesta]")
            && changed[0].contains("RespectIgnoreDifferences=true"),
        "{}",
        changed[0]
    );
    // Looked at again during the same sleep: no second Event, no fight.
    api.reconcile().await.expect("reconciled");
    let again = api
        .writes()
        .iter()
        .filter(|s| event_reason(s) == Some("ChangedWhileAsleep"))
        .count();
    assert_eq!(again, 1);
    assert_eq!(api.object(WEB)["spec"]["replicas"], 2);
}

#[tokio::test]
async fn an_ordered_wake_restores_one_group_at_a_time_and_records_which_on_the_namespace() {
    let api = Scripted::new();
    api.put_waking_since(20);
    let db = "/apis/apps/v1/namespaces/team-a/deployments/db";
    let asleep = |order: Option<&str>| {
        let mut a = json!({"siesta.dev/original-replicas": "2"});
        if let Some(o) = order {
            a["siesta.dev/wake-order"] = json!(o);
        }
        a
    };
    api.put(db, deployment("db", 0, 0, asleep(Some("0"))));
    api.put(WEB, deployment("web", 0, 0, asleep(None)));
    let group = |api: &Scripted| {
        api.object(NS)["metadata"]["annotations"]
            .get("siesta.dev/wake-group")
            .and_then(Value::as_str)
            .map(|g| g.split(' ').next().unwrap_or("").to_string())
    };

    // Group 0 first: db restored, web (a Deployment: group 1) left asleep.
    assert_eq!(
        api.reconcile().await.expect("reconciled"),
        Action::requeue(Duration::from_secs(30))
    );
    assert_eq!(api.object(db)["spec"]["replicas"], 2);
    assert_eq!(api.object(WEB)["spec"]["replicas"], 0);
    assert_eq!(group(&api).as_deref(), Some("0"));
    // Looked at again (a restarted controller reads the same): db is not
    // ready, so web still waits and nothing is written again.
    let before = api.writes().len();
    api.reconcile().await.expect("reconciled");
    assert_eq!(api.object(WEB)["spec"]["replicas"], 0);
    assert_eq!(api.writes().len(), before, "{:#?}", &api.writes()[before..]);

    // db ready: group 1 goes.
    let mut ready = api.object(db);
    ready["status"]["readyReplicas"] = json!(2);
    api.put(db, ready);
    api.reconcile().await.expect("reconciled");
    assert_eq!(api.object(WEB)["spec"]["replicas"], 2);
    assert_eq!(group(&api).as_deref(), Some("1"));

    // web ready: awake, and the group record goes with the state write.
    let mut ready = api.object(WEB);
    ready["status"]["readyReplicas"] = json!(2);
    api.put(WEB, ready);
    assert_eq!(
        api.reconcile().await.expect("reconciled"),
        Action::await_change()
    );
    assert_eq!(
        api.object(NS)["metadata"]["annotations"]["siesta.dev/state"],
        "awake"
    );
    assert_eq!(group(&api), None);
    assert!(api.metric("siesta_wake_duration_seconds_count{namespace=\"team-a\"}") == Some(1.0));
}

/// A policy that marks namespaces labelled `preview: "true"` abandoned after
/// an hour asleep and deletes them a day later.
fn deleting_policy() -> AdminConfig {
    crate::config::parse(
        "siesta.yaml",
        "policies:\n  - name: previews\n    namespaceSelector: {matchLabels: {preview: \"true\"}}\n    idleAfter: \"off\"\n    abandonAfter: 1h\n    deleteAfter: 1d\n",
    )
    .expect("a valid config")
}

/// The namespace under that policy, asleep since `asleep` ago, with these
/// annotations and labels besides.
fn abandoned(api: &Scripted, asleep: chrono::Duration, annotations: Value, labels: Value) {
    let slept = crate::model::format_instant(Utc::now() - asleep);
    let mut ns = namespace(json!({"siesta.dev/state": "asleep", "siesta.dev/state-since": slept}));
    merge(&mut ns["metadata"]["annotations"], &annotations);
    ns["metadata"]["labels"] = json!({"preview": "true"});
    merge(&mut ns["metadata"]["labels"], &labels);
    api.put(NS, ns);
}

/// The namespace under that policy asleep for 3 days, marked 2 days ago,
/// its deletion due a second ago, with these annotations besides: (the
/// label, the mark) as written.
fn overdue(api: &Scripted, annotations: Value) -> (String, String) {
    let past = (Utc::now() - chrono::Duration::seconds(1))
        .timestamp()
        .to_string();
    let marked = crate::model::format_instant(Utc::now() - chrono::Duration::days(2));
    let mut all = json!({"siesta.dev/abandoned-since": marked});
    merge(&mut all, &annotations);
    abandoned(
        api,
        chrono::Duration::days(3),
        all,
        json!({"siesta.dev/delete-after": past}),
    );
    (past, marked)
}

#[tokio::test]
async fn an_abandoned_namespace_is_announced_then_deleted_when_its_grace_period_ends() {
    let api = Scripted::with_config(deleting_policy());
    abandoned(&api, chrono::Duration::hours(2), json!({}), json!({}));
    let action = api.reconcile().await.expect("reconciled");
    let ns = api.object(NS);
    let since = ns["metadata"]["annotations"]["siesta.dev/abandoned-since"]
        .as_str()
        .expect("marked");
    let label = ns["metadata"]["labels"]["siesta.dev/delete-after"]
        .as_str()
        .expect("the deletion label");
    let at = chrono::DateTime::from_timestamp(label.parse().unwrap(), 0).unwrap();
    let grace = at - Utc::now();
    assert!(
        grace > chrono::Duration::hours(23)
            && grace <= chrono::Duration::days(1) + chrono::Duration::seconds(1),
        "{grace:?}"
    );
    // Looked at again at the deletion, not before.
    assert_ne!(action, Action::await_change());
    let writes = api.writes();
    let events: Vec<_> = writes.iter().filter_map(event_reason).collect();
    assert_eq!(events, ["Abandoned", "DeletionScheduled"], "{writes:#?}");
    let note = writes
        .iter()
        .find(|s| event_reason(s) == Some("DeletionScheduled"))
        .unwrap()
        .body["note"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        note.contains(&crate::model::format_instant(at)) && note.contains(since),
        "{note}"
    );
    assert!(!writes.iter().any(|s| s.method == "DELETE"));
    assert_eq!(
        api.metric("siesta_namespace_deletion_timestamp_seconds{namespace=\"team-a\"}"),
        Some(at.timestamp() as f64)
    );

    // The grace period is over (the label says so): a Warning, then the delete.
    overdue(&api, json!({}));
    let before = api.writes().len();
    api.reconcile().await.expect("reconciled");
    let writes = api.writes()[before..].to_vec();
    let warned = position(&writes, |s| event_reason(s) == Some("Deleting"));
    let deleted = position(&writes, |s| s.method == "DELETE" && s.path == NS);
    assert!(warned < deleted, "{writes:#?}");
    // One Event in the namespace, one in default that outlives it.
    let homes: Vec<_> = writes
        .iter()
        .filter(|s| event_reason(s) == Some("Deleting"))
        .map(|s| s.path.clone())
        .collect();
    assert_eq!(
        homes,
        [
            "/apis/events.k8s.io/v1/namespaces/team-a/events",
            "/apis/events.k8s.io/v1/namespaces/default/events"
        ]
    );
    // Guarded by what was read: uid and resourceVersion.
    let pre = &writes[deleted].body["preconditions"];
    assert_eq!(pre["uid"], "u1");
    assert!(pre["resourceVersion"].is_string(), "{pre}");
    assert!(!api.store.lock().unwrap().objects.contains_key(NS));
    assert_eq!(
        api.metric("siesta_namespace_deletions_total{result=\"deleted\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn without_the_delete_namespaces_component_the_namespace_is_left_as_it_is_with_one_warning() {
    let api = Scripted::with_config(deleting_policy());
    let (past, marked) = overdue(&api, json!({}));
    api.fail(|s| {
        (s.method == "DELETE").then(|| {
            (
                403,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                       "message": "namespaces \"team-a\" is forbidden: User \"system:serviceaccount:siesta-system:siesta-controller\" cannot delete resource \"namespaces\""}),
            )
        })
    });
    for _ in 0..2 {
        let action = api.reconcile().await.expect("a refusal is no failure");
        assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    }
    // Still there, still marked and announced.
    let ns = api.object(NS);
    assert_eq!(ns["metadata"]["labels"]["siesta.dev/delete-after"], past);
    assert_eq!(
        ns["metadata"]["annotations"]["siesta.dev/abandoned-since"],
        marked
    );
    let writes = api.writes();
    let events: Vec<_> = writes.iter().filter_map(event_reason).collect();
    // Announced once before the first try; refused once, however many tries.
    assert_eq!(
        events,
        ["Deleting", "Deleting", "DeletionRefused"],
        "{writes:#?}"
    );
    assert_eq!(writes.iter().filter(|s| s.method == "DELETE").count(), 2);
    assert_eq!(
        api.metric("siesta_namespace_deletions_total{result=\"refused\"}"),
        Some(2.0)
    );
}

#[tokio::test]
async fn keep_cancels_a_scheduled_deletion_and_protected_namespaces_are_never_deleted() {
    // (the deletion label, the mark) on the namespace.
    let recorded = |api: &Scripted| {
        let ns = api.object(NS);
        let meta = &ns["metadata"];
        (
            meta["labels"].get("siesta.dev/delete-after").cloned(),
            meta["annotations"]
                .get("siesta.dev/abandoned-since")
                .cloned(),
        )
    };
    let api = Scripted::with_config(deleting_policy());
    overdue(&api, json!({"siesta.dev/keep": "true"}));
    api.reconcile().await.expect("reconciled");
    assert_eq!(recorded(&api), (None, None));
    let writes = api.writes();
    assert!(!writes.iter().any(|s| s.method == "DELETE"), "{writes:#?}");
    assert!(
        writes
            .iter()
            .any(|s| event_reason(s) == Some("DeletionCancelled"))
    );

    // The controller's own namespace: marked like any other, never deleted.
    let mut ctx = Scripted::with_config(deleting_policy());
    Arc::get_mut(&mut ctx.ctx).unwrap().own_namespaces = vec!["team-a".into()];
    let (_, marked) = overdue(&ctx, json!({}));
    ctx.reconcile().await.expect("reconciled");
    let writes = ctx.writes();
    assert!(!writes.iter().any(|s| s.method == "DELETE"), "{writes:#?}");
    assert_eq!(recorded(&ctx), (None, Some(json!(marked))));
}
