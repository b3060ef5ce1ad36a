//! Every metric family of DESIGN.md, registered in one place. Label values are
//! bounded: namespaces and fixed enums, never a user, path or host.
//!
//! docs/metrics.md documents each family; `deploy/grafana/siesta.json` and
//! `deploy/prometheus/rules.yaml` query them, and a test checks that every
//! `siesta_*` name they use is one of [`Metrics::families`].
pub mod namespaced;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use prometheus::core::{Collector, Desc, MetricVec, MetricVecBuilder};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::model::State;
use namespaced::{Family, FamilyCollector, NamespaceSeries, WAIT_BUCKETS};

pub struct Metrics {
    /// Every family, in registration order, for [`Metrics::render`]. (The
    /// registry checks names and label sets once, at registration.)
    collectors: Vec<Box<dyn Collector>>,
    /// The name of every registered family, in registration order.
    families: Vec<String>,
    /// The histograms among them (queried as `_bucket`, `_sum`, `_count`).
    histograms: Vec<String>,
    /// The controller's per-namespace families (asleep, waking, last
    /// activity, sleeps, wakes, wake duration, replicas asleep, savings,
    /// workloads without requests, conflicts).
    pub namespace: Arc<NamespaceSeries>,
    pub audit_events: IntCounterVec,
    pub audit_refusals: IntCounterVec,
    pub proxy_requests: IntCounterVec,
    pub proxy_held: IntGaugeVec,
    pub proxy_hold_duration: HistogramVec,
    pub errors: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub leader: IntGaugeVec,
    pub kube_requests: IntCounterVec,
    pub kube_responses: IntCounterVec,
    pub reconciles: IntCounterVec,
    pub reconcile_failures: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub namespace_deletions: IntCounterVec,
}

/// Registers families; the names and label sets below are static, so a
/// failure here is a programming error caught by the first test that runs.
struct Builder {
    registry: Registry,
    collectors: Vec<Box<dyn Collector>>,
    families: Vec<String>,
    histograms: Vec<String>,
    namespace: Arc<NamespaceSeries>,
}

const BAD_FAMILY: &str = "metric families have valid, distinct names and label sets";

impl Builder {
    fn reg<T: Collector + Clone + 'static>(&mut self, c: T) -> T {
        self.families
            .extend(c.desc().iter().map(|d| d.fq_name.clone()));
        self.registry
            .register(Box::new(c.clone()))
            .expect(BAD_FAMILY);
        self.collectors.push(Box::new(c.clone()));
        c
    }
    fn int_gauge(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.reg(IntGaugeVec::new(Opts::new(name, help), labels).expect(BAD_FAMILY))
    }
    /// A family of [`NamespaceSeries`]; `labels` start with `namespace`.
    fn namespaced(&mut self, family: Family, name: &str, help: &str, labels: &[&str]) {
        let labels = labels.iter().map(|l| l.to_string()).collect();
        let desc = Desc::new(name.into(), help.into(), labels, HashMap::new()).expect(BAD_FAMILY);
        if matches!(family, Family::WakeDuration) {
            self.histograms.push(name.to_string());
        }
        let _ = self.reg(FamilyCollector::new(self.namespace.clone(), family, desc));
    }
    fn int_counter(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.reg(IntCounterVec::new(Opts::new(name, help), labels).expect(BAD_FAMILY))
    }
    fn histogram(&mut self, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
        self.histogram_with(name, help, labels, &WAIT_BUCKETS)
    }
    fn histogram_with(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(name, help).buckets(buckets.into());
        self.histograms.push(name.to_string());
        self.reg(HistogramVec::new(opts, labels).expect(BAD_FAMILY))
    }
}

/// Buckets of `siesta_reconcile_duration_seconds`: a reconcile is a few API
/// requests (milliseconds), a sleep or wake pass over a big namespace more.
const RECONCILE_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

impl Metrics {
    /// A registry of every family, with the series whose label values are
    /// known in advance (error kinds, results) already at 0, so that an alert
    /// on `increase()` sees the first event. Each process makes one and passes
    /// it to its components; tests make their own.
    pub fn new() -> Metrics {
        let mut b = Builder {
            registry: Registry::new(),
            collectors: Vec::new(),
            families: Vec::new(),
            histograms: Vec::new(),
            namespace: Arc::default(),
        };
        let ns = &["namespace"];
        b.namespaced(
            Family::Asleep,
            "siesta_namespace_asleep",
            "1 while the namespace sleeps (state asleep), else 0.",
            ns,
        );
        b.namespaced(Family::Waking, "siesta_namespace_waking", "1 while the namespace wakes (state waking: restored workloads not all ready yet), else 0.", ns);
        b.namespaced(
            Family::LastActivity,
            "siesta_last_activity_timestamp_seconds",
            "Unix time of the newest counted activity, by source (api, http).",
            &["namespace", "source"],
        );
        b.namespaced(
            Family::Sleeps,
            "siesta_sleeps_total",
            "Namespaces put to sleep, by reason (idle, schedule, manual).",
            &["namespace", "reason"],
        );
        b.namespaced(
            Family::Wakes,
            "siesta_wakes_total",
            "Namespaces woken, by trigger (api, http, schedule, manual).",
            &["namespace", "trigger"],
        );
        b.namespaced(
            Family::WakeDuration,
            "siesta_wake_duration_seconds",
            "Time from a wake decision to every restored workload ready (or the wake timeout).",
            ns,
        );
        b.namespaced(
            Family::ReplicasAsleep,
            "siesta_replicas_asleep",
            "Replicas (or suspended CronJobs) held at zero by Siesta, by workload kind.",
            &["namespace", "kind"],
        );
        b.namespaced(
            Family::SavedCpu,
            "siesta_saved_cpu_core_seconds_total",
            "CPU requests of sleeping pods times the time they slept, in core-seconds.",
            ns,
        );
        b.namespaced(
            Family::SavedMemory,
            "siesta_saved_memory_byte_seconds_total",
            "Memory requests of sleeping pods times the time they slept, in byte-seconds.",
            ns,
        );
        b.namespaced(Family::SavedCost, "siesta_saved_cost_total", "Money saved while sleeping, at the admin's prices per CPU-hour and GiB-hour, in the currency label's unit.", &["namespace", "currency"]);
        b.namespaced(
            Family::Abandoned,
            "siesta_namespace_abandoned",
            "1 while the namespace is marked abandoned (asleep without counted activity for its policy's abandonAfter), else 0.",
            ns,
        );
        b.namespaced(
            Family::DeletionAt,
            "siesta_namespace_deletion_timestamp_seconds",
            "Unix time at which the abandoned namespace is to be deleted (its policy's deleteAfter); no series while none is scheduled.",
            ns,
        );
        b.namespaced(
            Family::ObservedAsleep,
            "siesta_observed_asleep",
            "Observe mode: 1 while the namespace would be asleep, else 0 (nothing is changed).",
            ns,
        );
        b.namespaced(
            Family::ObservedSleeps,
            "siesta_observed_sleeps_total",
            "Observe mode: times the namespace would have been put to sleep, by reason (idle, schedule, manual).",
            &["namespace", "reason"],
        );
        b.namespaced(
            Family::ObservedWakes,
            "siesta_observed_wakes_total",
            "Observe mode: times the namespace would have been woken, by trigger (api, http, schedule, manual); each api or http one is a request that would have waited for a wake.",
            &["namespace", "trigger"],
        );
        b.namespaced(
            Family::PotentialCpu,
            "siesta_potential_saved_cpu_core_seconds_total",
            "Observe mode: CPU requests of the pods a would-be sleep would stop, times its duration, in core-seconds.",
            ns,
        );
        b.namespaced(
            Family::PotentialMemory,
            "siesta_potential_saved_memory_byte_seconds_total",
            "Observe mode: memory requests of the pods a would-be sleep would stop, times its duration, in byte-seconds.",
            ns,
        );
        b.namespaced(Family::PotentialCost, "siesta_potential_saved_cost_total", "Observe mode: money the would-be sleeps would have saved, at the admin's prices, in the currency label's unit.", &["namespace", "currency"]);
        b.namespaced(
            Family::WithoutRequests,
            "siesta_workloads_without_requests",
            "Sleeping workloads whose pods request no CPU or memory: savings are underestimated.",
            ns,
        );
        b.namespaced(
            Family::Conflicts,
            "siesta_conflicts_total",
            "Sleeping workloads changed by someone else; Siesta let their change win.",
            ns,
        );
        let m = Metrics {
            namespace: b.namespace.clone(),
            audit_events: b.int_counter("siesta_audit_events_total", "Audit events ingested, by result (counted, ignored, invalid).", &["result"]),
            audit_refusals: b.int_counter("siesta_audit_refusals_total", "Requests and connections the audit webhook refused, by reason (bodies_full 429, queue_full 503, unauthorized 401, first_head_timeout, peer_connections, connections_full, evicted).", &["reason"]),
            proxy_requests: b.int_counter("siesta_proxy_requests_total", "Requests answered by the proxy, by namespace and status class (2xx, 3xx, 4xx, 5xx).", &["namespace", "code"]),
            proxy_held: b.int_gauge("siesta_proxy_held_requests", "Requests held while their namespace wakes.", ns),
            proxy_hold_duration: b.histogram("siesta_proxy_hold_duration_seconds", "How long held requests waited for their namespace to wake.", ns),
            errors: b.int_counter("siesta_errors_total", "Errors, by kind (a fixed set).", &["kind"]),
            config_reloads: b.int_counter("siesta_config_reloads_total", "Admin config loads, by result (ok, rejected).", &["result"]),
            leader: b.int_gauge("siesta_leader", "1 while this controller replica holds the leader Lease, else 0.", &[]),
            kube_requests: b.int_counter("siesta_kube_requests_total", "Requests Siesta sent to the Kubernetes API, by HTTP method (watch for watches).", &["verb"]),
            kube_responses: b.int_counter("siesta_kube_responses_total", "Answers of the Kubernetes API to Siesta, by status (2xx, 401, 403, 404, 409, 429, 4xx, 5xx).", &["code"]),
            reconciles: b.int_counter("siesta_reconciles_total", "Namespace reconciles finished, by result (ok, error).", &["result"]),
            reconcile_failures: b.int_counter("siesta_reconcile_failures_total", "Failed reconciles, by error kind (forbidden, conflict, not_found, throttled, api, unreachable).", &["kind"]),
            reconcile_duration: b.histogram_with("siesta_reconcile_duration_seconds", "How long one namespace's reconcile took, decision and writes included.", &[], &RECONCILE_BUCKETS),
            namespace_deletions: b.int_counter("siesta_namespace_deletions_total", "Abandoned namespaces the controller asked to delete, by result (deleted; refused: 403, the delete-namespaces component is not installed or its admission policy refused).", &["result"]),
            collectors: b.collectors,
            families: b.families,
            histograms: b.histograms,
        };
        for kind in ErrorKind::ALL {
            m.errors.with_label_values(&[kind.as_str()]);
        }
        for result in ReloadResult::ALL {
            m.config_reloads.with_label_values(&[result.as_str()]);
        }
        for result in ReconcileResult::ALL {
            m.reconciles.with_label_values(&[result.as_str()]);
        }
        for kind in ReconcileFailure::ALL {
            m.reconcile_failures.with_label_values(&[kind.as_str()]);
        }
        for result in AUDIT_RESULTS {
            m.audit_events.with_label_values(&[result]);
        }
        for reason in AuditRefusal::ALL {
            m.audit_refusals.with_label_values(&[reason.as_str()]);
        }
        m.reconcile_duration.with_label_values(&[] as &[&str]);
        for result in DELETION_RESULTS {
            m.namespace_deletions.with_label_values(&[result]);
        }
        m
    }

    /// Count an error.
    pub fn error(&self, kind: ErrorKind) {
        self.errors.with_label_values(&[kind.as_str()]).inc();
    }

    /// Count a request or connection the audit webhook refused.
    pub fn audit_refused(&self, reason: AuditRefusal) {
        self.audit_refusals
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// Count an admin config load.
    pub fn config_reload(&self, result: ReloadResult) {
        self.config_reloads
            .with_label_values(&[result.as_str()])
            .inc();
    }

    /// Count one finished reconcile and how long it took.
    pub fn reconciled(&self, seconds: f64, failure: Option<ReconcileFailure>) {
        let result = match failure {
            None => ReconcileResult::Ok,
            Some(kind) => {
                self.reconcile_failures
                    .with_label_values(&[kind.as_str()])
                    .inc();
                ReconcileResult::Error
            }
        };
        self.reconciles.with_label_values(&[result.as_str()]).inc();
        self.reconcile_duration
            .with_label_values(&[] as &[&str])
            .observe(seconds);
    }

    /// The text exposition format, one family at a time: the registry's
    /// `gather()` would first copy every series of every family (tens of
    /// thousands with 1,000 namespaces asleep, about 10 MB) before writing any.
    pub fn render(&self) -> String {
        let encoder = TextEncoder::new();
        let mut buf = Vec::new();
        for collector in &self.collectors {
            let families = collector.collect();
            if families.iter().all(|f| !f.get_metric().is_empty()) {
                let _ = encoder.encode(&families, &mut buf);
            }
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Every registered family's name (histograms without their
    /// `_bucket`/`_sum`/`_count` series), whether or not it has samples yet.
    pub fn families(&self) -> &[String] {
        &self.families
    }

    /// The histogram families among [`Metrics::families`].
    pub fn histograms(&self) -> &[String] {
        &self.histograms
    }

    /// Publish a namespace's state: `asleep` and `waking` are each 1 in their
    /// state and 0 otherwise, so `awake` is both at 0. Its event counters
    /// exist from then on at 0: a series born at 1 hides its first event from
    /// `increase()` (no first wake in "what wakes namespaces", no first
    /// conflict in the alert).
    ///
    /// At scale this matters: only namespaces Siesta has put to sleep get the
    /// zeroed counters (8 series), and the wake histogram is not pre-created
    /// (17 series), so 10,000 awake namespaces cost no series at all.
    pub fn namespace_state(&self, namespace: &str, state: State) {
        self.namespace.state(namespace, state);
    }

    /// Drop every series of a namespace that is gone (deleted, or no longer
    /// selected), so it neither shows as asleep forever nor grows the series
    /// count. Counters already scraped keep their history in Prometheus.
    pub fn forget_namespace(&self, namespace: &str) {
        self.namespace.forget(namespace);
        remove_namespace(&self.proxy_held, namespace);
        remove_namespace(&self.proxy_requests, namespace);
        remove_namespace(&self.proxy_hold_duration, namespace);
    }

    /// Namespaces that have a `siesta_namespace_asleep` series.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespace.namespaces()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("families", &self.families.len())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Remove every series of `vec` whose `namespace` label is `namespace`,
/// whatever its other labels.
fn remove_namespace<T: MetricVecBuilder>(vec: &MetricVec<T>, namespace: &str) {
    for mf in vec.collect() {
        for m in mf.get_metric() {
            let labels: HashMap<&str, &str> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if labels.get("namespace") == Some(&namespace) {
                let _ = vec.remove(&labels);
            }
        }
    }
}

/// The families of DESIGN.md's metrics table (the contract); more exist.
pub const DESIGN_FAMILIES: &[&str] = &[
    "siesta_namespace_asleep",
    "siesta_last_activity_timestamp_seconds",
    "siesta_sleeps_total",
    "siesta_wakes_total",
    "siesta_wake_duration_seconds",
    "siesta_replicas_asleep",
    "siesta_saved_cpu_core_seconds_total",
    "siesta_saved_memory_byte_seconds_total",
    "siesta_saved_cost_total",
    "siesta_audit_events_total",
    "siesta_proxy_requests_total",
    "siesta_proxy_held_requests",
    "siesta_proxy_hold_duration_seconds",
    "siesta_errors_total",
];

/// A label value from a fixed set: each enum lists all of them (`ALL`), so
/// their series can exist at 0 from the start.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $value),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_values! {
    /// The `kind` of `siesta_errors_total`.
    ErrorKind {
        LeaseWrite => "lease_write",
        KubeApi => "kube_api",
        Scale => "scale",
        BadAnnotation => "bad_annotation",
        AuditBody => "audit_body",
        Config => "config",
        ProxyUpstream => "proxy_upstream",
        ProxyConnectionsFull => "proxy_connections_full",
        ProxyConnectionEvicted => "proxy_connection_evicted",
        /// A redirect port could not be bound (it is tried again).
        ProxyRedirectListen => "proxy_redirect_listen",
        /// A redirect slice could not be written.
        RedirectWrite => "redirect_write",
        LeaderElection => "leader_election",
    }
}

label_values! {
    /// The `reason` of `siesta_audit_refusals_total`: why the audit webhook
    /// refused a request (an answer that the API server retries, or 401) or
    /// closed a connection before serving it.
    AuditRefusal {
        /// `429`: the bodies in flight hold the whole budget.
        BodiesFull => "bodies_full",
        /// `503`: the worker's queue is full.
        QueueFull => "queue_full",
        /// `401`: no valid token or client certificate.
        Unauthorized => "unauthorized",
        /// No TLS handshake and first request head in time.
        FirstHeadTimeout => "first_head_timeout",
        /// Closed unread: its address has as many connections open as it may.
        PeerConnections => "peer_connections",
        /// Closed unread: every slot is held by an authenticated connection.
        ConnectionsFull => "connections_full",
        /// An unauthenticated connection closed to make room for a new one.
        Evicted => "evicted",
    }
}

label_values! {
    /// The `result` of `siesta_config_reloads_total`.
    ReloadResult { Ok => "ok", Rejected => "rejected" }
}

label_values! {
    /// The `result` of `siesta_reconciles_total`.
    ReconcileResult { Ok => "ok", Error => "error" }
}

label_values! {
    /// The `kind` of `siesta_reconcile_failures_total`: what the API server
    /// said, or that it could not be reached.
    ReconcileFailure {
        Forbidden => "forbidden",
        Conflict => "conflict",
        NotFound => "not_found",
        Throttled => "throttled",
        Api => "api",
        Unreachable => "unreachable",
    }
}

/// The `result` values of `siesta_audit_events_total`.
pub const AUDIT_RESULTS: [&str; 3] = ["counted", "ignored", "invalid"];

/// The `result` of `siesta_namespace_deletions_total`.
pub const DELETION_RESULTS: [&str; 2] = ["deleted", "refused"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::namespaced::Account;
    use crate::model::Reason;
    use crate::model::Source;

    #[test]
    fn every_design_family_is_registered_and_exposed_with_help() {
        // A fresh registry, so tests running in parallel do not interfere.
        let m = Metrics::new();
        for family in DESIGN_FAMILIES {
            assert!(
                m.families().iter().any(|f| f == family),
                "{family} is not registered"
            );
        }
        let n = &m.namespace;
        m.namespace_state("a", State::Asleep);
        n.last_activity("a", Source::Api, 1.0);
        n.slept("a", Reason::Idle);
        n.woke("a", Reason::Api);
        n.wake_duration("a", 1.0);
        n.replicas_asleep("a", "Deployment", 1);
        n.saved_total(Account::Saved, "a", 1.0, 1.0, 1.0, "USD");
        n.workloads_without_requests("a", 0);
        n.conflict("a");
        n.observed_state("a", State::Asleep);
        n.abandoned("a", false);
        n.deletion_at("a", Some(1));
        n.saved_total(Account::Potential, "a", 1.0, 1.0, 1.0, "USD");
        m.audit_events.with_label_values(&["counted"]).inc();
        m.proxy_requests.with_label_values(&["a", "2xx"]).inc();
        m.proxy_held.with_label_values(&["a"]).set(0);
        m.proxy_hold_duration.with_label_values(&["a"]).observe(0.1);
        m.error(ErrorKind::Scale);
        m.config_reloads.with_label_values(&["ok"]).inc();
        m.leader.with_label_values::<&str>(&[]).set(1);
        m.kube_requests.with_label_values(&["GET"]).inc();
        m.kube_responses.with_label_values(&["2xx"]).inc();
        let text = m.render();
        for family in m.families() {
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family} has no HELP"
            );
        }
    }

    #[test]
    fn series_with_known_label_values_exist_at_zero_from_the_start() {
        let text = Metrics::new().render();
        for kind in ErrorKind::ALL {
            let series = format!("siesta_errors_total{{kind=\"{kind}\"}} 0");
            assert!(text.contains(&series), "no {series} in a fresh registry");
        }
        for series in [
            "siesta_config_reloads_total{result=\"rejected\"} 0",
            "siesta_reconciles_total{result=\"error\"} 0",
            "siesta_reconcile_failures_total{kind=\"forbidden\"} 0",
            "siesta_audit_events_total{result=\"invalid\"} 0",
            "siesta_audit_refusals_total{reason=\"evicted\"} 0",
            "siesta_namespace_deletions_total{result=\"refused\"} 0",
        ] {
            assert!(text.contains(series), "no {series} in a fresh registry");
        }
    }

    #[test]
    fn a_reconcile_is_counted_by_result_and_timed() {
        let m = Metrics::new();
        m.reconciled(0.003, None);
        m.reconciled(0.2, Some(ReconcileFailure::Forbidden));
        let text = m.render();
        for series in [
            "siesta_reconciles_total{result=\"ok\"} 1",
            "siesta_reconciles_total{result=\"error\"} 1",
            "siesta_reconcile_failures_total{kind=\"forbidden\"} 1",
            "siesta_reconcile_duration_seconds_count 2",
        ] {
            assert!(text.contains(series), "no {series} in {text}");
        }
    }

    #[test]
    fn namespace_state_sets_asleep_and_waking_exclusively() {
        let m = Metrics::new();
        let both = |m: &Metrics| {
            let text = m.render();
            let value = |family: &str| {
                let series = format!("{family}{{namespace=\"a\"}} ");
                let line = text.lines().find(|l| l.starts_with(&series));
                line.and_then(|l| l[series.len()..].parse::<i64>().ok())
            };
            (
                value("siesta_namespace_asleep"),
                value("siesta_namespace_waking"),
            )
        };
        m.namespace_state("a", State::Asleep);
        assert_eq!(both(&m), (Some(1), Some(0)));
        // event counters start at 0, so that increase() sees the first event
        let text = m.render();
        for zero in [
            "siesta_wakes_total{namespace=\"a\",trigger=\"http\"} 0",
            "siesta_sleeps_total{namespace=\"a\",reason=\"idle\"} 0",
            "siesta_conflicts_total{namespace=\"a\"} 0",
        ] {
            assert!(text.contains(zero), "no {zero} in {text}");
        }
        m.namespace_state("a", State::Waking);
        assert_eq!(both(&m), (Some(0), Some(1)));
        m.namespace_state("a", State::Awake);
        assert_eq!(both(&m), (Some(0), Some(0)));
    }

    #[test]
    fn a_forgotten_namespace_leaves_no_series_and_others_stay() {
        let m = Metrics::new();
        for ns in ["gone", "kept"] {
            m.namespace_state(ns, State::Asleep);
            m.namespace.last_activity(ns, Source::Http, 1.0);
            m.namespace.replicas_asleep(ns, "StatefulSet", 2);
            m.namespace
                .saved_total(Account::Saved, ns, 0.0, 0.0, 1.0, "EUR");
            m.namespace.wake_duration(ns, 3.0);
            m.proxy_held.with_label_values(&[ns]).set(1);
        }
        assert_eq!(m.namespaces().len(), 2);
        m.forget_namespace("gone");
        let text = m.render();
        assert!(!text.contains("\"gone\""), "{text}");
        assert!(text.contains("namespace=\"kept\""), "{text}");
        assert_eq!(m.namespaces(), vec!["kept".to_string()]);
    }
}
