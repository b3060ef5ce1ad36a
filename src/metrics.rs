//! Every metric family of DESIGN.md, registered in one place. Label values are
//! bounded: namespaces and fixed enums, never a user, path or host.
use std::sync::LazyLock;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub namespace_asleep: IntGaugeVec,
    pub last_activity: GaugeVec,
    pub sleeps: IntCounterVec,
    pub wakes: IntCounterVec,
    pub wake_duration: HistogramVec,
    pub replicas_asleep: IntGaugeVec,
    pub saved_cpu: prometheus::CounterVec,
    pub saved_memory: prometheus::CounterVec,
    pub saved_cost: prometheus::CounterVec,
    pub workloads_without_requests: IntGaugeVec,
    pub conflicts: IntCounterVec,
    pub audit_events: IntCounterVec,
    pub proxy_requests: IntCounterVec,
    pub proxy_held: IntGaugeVec,
    pub proxy_hold_duration: HistogramVec,
    pub errors: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub leader: IntGaugeVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    r.register(Box::new(c.clone()))
        .expect("metric families are registered once, with distinct names");
    c
}

/// Buckets from 50 ms to 10 minutes: proxy holds and wakes.
const WAIT_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let ns = &["namespace"];
        Metrics {
            namespace_asleep: reg(&r, IntGaugeVec::new(Opts::new("siesta_namespace_asleep", "1 while the namespace sleeps, 0 while it is awake or waking."), ns).unwrap()),
            last_activity: reg(&r, GaugeVec::new(Opts::new("siesta_last_activity_timestamp_seconds", "Unix time of the newest counted activity, by source (api, http)."), &["namespace", "source"]).unwrap()),
            sleeps: reg(&r, IntCounterVec::new(Opts::new("siesta_sleeps_total", "Namespaces put to sleep, by reason (idle, schedule, manual)."), &["namespace", "reason"]).unwrap()),
            wakes: reg(&r, IntCounterVec::new(Opts::new("siesta_wakes_total", "Namespaces woken, by trigger (api, http, schedule, manual)."), &["namespace", "trigger"]).unwrap()),
            wake_duration: reg(&r, HistogramVec::new(HistogramOpts::new("siesta_wake_duration_seconds", "Time from a wake decision to every restored workload ready.").buckets(WAIT_BUCKETS.to_vec()), ns).unwrap()),
            replicas_asleep: reg(&r, IntGaugeVec::new(Opts::new("siesta_replicas_asleep", "Replicas (or suspended CronJobs) held at zero by Siesta, by workload kind."), &["namespace", "kind"]).unwrap()),
            saved_cpu: reg(&r, prometheus::CounterVec::new(Opts::new("siesta_saved_cpu_core_seconds_total", "CPU requests of sleeping pods times the time they slept, in core-seconds."), ns).unwrap()),
            saved_memory: reg(&r, prometheus::CounterVec::new(Opts::new("siesta_saved_memory_byte_seconds_total", "Memory requests of sleeping pods times the time they slept, in byte-seconds."), ns).unwrap()),
            saved_cost: reg(&r, prometheus::CounterVec::new(Opts::new("siesta_saved_cost_total", "Money saved while sleeping, from the admin's prices per CPU-hour and GiB-hour."), &["namespace", "currency"]).unwrap()),
            workloads_without_requests: reg(&r, IntGaugeVec::new(Opts::new("siesta_workloads_without_requests", "Sleeping workloads whose pods request no CPU or memory: savings are underestimated."), ns).unwrap()),
            conflicts: reg(&r, IntCounterVec::new(Opts::new("siesta_conflicts_total", "Sleeping workloads changed by someone else; Siesta let their change win."), ns).unwrap()),
            audit_events: reg(&r, IntCounterVec::new(Opts::new("siesta_audit_events_total", "Audit events ingested, by result (counted, ignored, invalid)."), &["result"]).unwrap()),
            proxy_requests: reg(&r, IntCounterVec::new(Opts::new("siesta_proxy_requests_total", "Requests answered by the proxy, by namespace and status class."), &["namespace", "code"]).unwrap()),
            proxy_held: reg(&r, IntGaugeVec::new(Opts::new("siesta_proxy_held_requests", "Requests held while their namespace wakes."), ns).unwrap()),
            proxy_hold_duration: reg(&r, HistogramVec::new(HistogramOpts::new("siesta_proxy_hold_duration_seconds", "How long held requests waited for their namespace to wake.").buckets(WAIT_BUCKETS.to_vec()), ns).unwrap()),
            errors: reg(&r, IntCounterVec::new(Opts::new("siesta_errors_total", "Errors, by kind (a fixed set)."), &["kind"]).unwrap()),
            config_reloads: reg(&r, IntCounterVec::new(Opts::new("siesta_config_reloads_total", "Admin config loads, by result (ok, rejected)."), &["result"]).unwrap()),
            leader: reg(&r, IntGaugeVec::new(Opts::new("siesta_leader", "1 while this controller replica holds the leader Lease."), &[]).unwrap()),
            registry: r,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The fixed set of error kinds.
pub const ERROR_KINDS: &[&str] = &[
    "lease_write",
    "kube_api",
    "scale",
    "bad_annotation",
    "audit_body",
    "config",
    "proxy_upstream",
    "leader_election",
];

/// Count an error of a kind from [`ERROR_KINDS`].
pub fn error(kind: &'static str) {
    debug_assert!(ERROR_KINDS.contains(&kind), "unknown error kind {kind}");
    get().errors.with_label_values(&[kind]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_design_family_is_exposed_with_help() {
        let m = get();
        m.namespace_asleep.with_label_values(&["a"]).set(1);
        m.last_activity.with_label_values(&["a", "api"]).set(1.0);
        m.sleeps.with_label_values(&["a", "idle"]).inc();
        m.wakes.with_label_values(&["a", "api"]).inc();
        m.wake_duration.with_label_values(&["a"]).observe(1.0);
        m.replicas_asleep
            .with_label_values(&["a", "Deployment"])
            .set(1);
        m.saved_cpu.with_label_values(&["a"]).inc_by(1.0);
        m.saved_memory.with_label_values(&["a"]).inc_by(1.0);
        m.saved_cost.with_label_values(&["a", "USD"]).inc_by(1.0);
        m.audit_events.with_label_values(&["counted"]).inc();
        m.proxy_requests.with_label_values(&["a", "2xx"]).inc();
        m.proxy_held.with_label_values(&["a"]).set(0);
        m.proxy_hold_duration.with_label_values(&["a"]).observe(0.1);
        error("scale");
        let text = m.render();
        for family in [
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
        ] {
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family} has no HELP"
            );
        }
    }
}
