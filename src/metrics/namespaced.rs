//! The controller's per-namespace series, one small record per namespace.
//!
//! A prometheus-crate series carries its own copy of its family's name, help
//! text and label names: 330 to 810 bytes each (measured with a counting
//! allocator). A namespace Siesta has put to sleep and woken has about 25 of
//! them, so 1,000 such namespaces held about 8 MB for the life of the process.
//! Here a namespace costs one record of a few hundred bytes, and each family's
//! series are built when `/metrics` is scraped, one family at a time.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::core::{Collector, Desc};
use prometheus::proto;

use crate::model::Source;
use crate::model::{Reason, State};

/// Why namespaces sleep, and what wakes them: the label values of
/// `siesta_sleeps_total` and `siesta_wakes_total`.
pub const SLEEP_REASONS: [Reason; 3] = [Reason::Idle, Reason::Schedule, Reason::Manual];
pub const WAKE_TRIGGERS: [Reason; 4] =
    [Reason::Api, Reason::Http, Reason::Schedule, Reason::Manual];
/// The workload kinds of `siesta_replicas_asleep`.
pub const KINDS: [&str; 4] = ["Deployment", "StatefulSet", "ReplicaSet", "CronJob"];
const SOURCES: [Source; 2] = [Source::Api, Source::Http];

/// Buckets from 50 ms to 10 minutes: proxy holds and wakes.
pub const WAIT_BUCKETS: [f64; 15] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// The families kept here.
#[derive(Clone, Copy, Debug)]
pub enum Family {
    Asleep,
    Waking,
    LastActivity,
    Sleeps,
    Wakes,
    WakeDuration,
    ReplicasAsleep,
    SavedCpu,
    SavedMemory,
    SavedCost,
    WithoutRequests,
    Conflicts,
    ObservedAsleep,
    ObservedSleeps,
    ObservedWakes,
    PotentialCpu,
    PotentialMemory,
    PotentialCost,
    Abandoned,
    DeletionAt,
}

/// One namespace's series; `None` is a series that does not exist.
#[derive(Default)]
struct Series {
    asleep: Option<i64>,
    waking: Option<i64>,
    last_activity: [Option<f64>; SOURCES.len()],
    sleeps: [Option<u64>; SLEEP_REASONS.len()],
    wakes: [Option<u64>; WAKE_TRIGGERS.len()],
    conflicts: Option<u64>,
    replicas_asleep: [Option<i64>; KINDS.len()],
    without_requests: Option<i64>,
    saved: Totals,
    wake_duration: Option<Box<Histogram>>,
    /// Observe mode: the would-be state and transitions, and what the
    /// would-be sleeps would have saved.
    observed_asleep: Option<i64>,
    observed_sleeps: [Option<u64>; SLEEP_REASONS.len()],
    observed_wakes: [Option<u64>; WAKE_TRIGGERS.len()],
    potential: Totals,
    abandoned: Option<i64>,
    /// Unix seconds of the scheduled deletion, while one is.
    deletion_at: Option<i64>,
}

/// Which savings: those of real sleeps (`siesta_saved_*`), or what observe
/// mode's would-be sleeps would have saved (`siesta_potential_saved_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Account {
    Saved,
    Potential,
}

/// Savings counters: CPU, memory, and money by currency (the admin may
/// change it). They only grow.
#[derive(Default)]
struct Totals {
    cpu: Option<f64>,
    memory: Option<f64>,
    cost: Vec<(Box<str>, f64)>,
}

impl Totals {
    /// Set the totals; a lower value (say from prices changed by a reload)
    /// leaves a series as it is, and a series is born only at a positive value.
    fn grow(&mut self, cpu: f64, memory: f64, cost: f64, currency: &str) {
        let grow = |slot: &mut Option<f64>, v: f64| {
            if v > 0.0 {
                let s = slot.get_or_insert(0.0);
                *s = s.max(v);
            }
        };
        grow(&mut self.cpu, cpu);
        grow(&mut self.memory, memory);
        if cost > 0.0 {
            match self.cost.iter_mut().find(|(c, _)| **c == *currency) {
                Some((_, total)) => *total = total.max(cost),
                None => self.cost.push((currency.into(), cost)),
            }
        }
    }
}

#[derive(Default)]
struct Histogram {
    /// Observations per bucket (not cumulative).
    buckets: [u64; WAIT_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Every namespace's series.
#[derive(Default)]
pub struct NamespaceSeries(Mutex<HashMap<Box<str>, Series>>);

impl NamespaceSeries {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Series>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with(&self, namespace: &str, f: impl FnOnce(&mut Series)) {
        let mut map = self.lock();
        match map.get_mut(namespace) {
            Some(s) => f(s),
            None => f(map.entry(namespace.into()).or_default()),
        }
    }

    /// See [`super::Metrics::namespace_state`].
    pub fn state(&self, namespace: &str, state: State) {
        self.with(namespace, |s| {
            if state != State::Awake {
                for c in s.sleeps.iter_mut().chain(&mut s.wakes) {
                    c.get_or_insert(0);
                }
                s.conflicts.get_or_insert(0);
            }
            s.asleep = Some(i64::from(state == State::Asleep));
            s.waking = Some(i64::from(state == State::Waking));
        });
    }

    /// Count a sleep (`siesta_sleeps_total`); reasons outside
    /// [`SLEEP_REASONS`] are not counted.
    pub fn slept(&self, namespace: &str, reason: Reason) {
        let i = SLEEP_REASONS.iter().position(|r| *r == reason);
        debug_assert!(i.is_some(), "not a sleep reason: {reason}");
        if let Some(i) = i {
            self.with(namespace, |s| *s.sleeps[i].get_or_insert(0) += 1);
        }
    }

    /// Count a wake (`siesta_wakes_total`); triggers outside
    /// [`WAKE_TRIGGERS`] are not counted.
    pub fn woke(&self, namespace: &str, trigger: Reason) {
        let i = WAKE_TRIGGERS.iter().position(|r| *r == trigger);
        debug_assert!(i.is_some(), "not a wake trigger: {trigger}");
        if let Some(i) = i {
            self.with(namespace, |s| *s.wakes[i].get_or_insert(0) += 1);
        }
    }

    /// Count a workload changed by someone else while asleep.
    pub fn conflict(&self, namespace: &str) {
        self.with(namespace, |s| *s.conflicts.get_or_insert(0) += 1);
    }

    /// The newest activity from a source, as Unix seconds.
    pub fn last_activity(&self, namespace: &str, source: Source, unix_seconds: f64) {
        let i = SOURCES.iter().position(|s| *s == source).unwrap_or(0);
        self.with(namespace, |s| s.last_activity[i] = Some(unix_seconds));
    }

    /// Replicas held at zero for a kind of [`KINDS`] (others are ignored).
    pub fn replicas_asleep(&self, namespace: &str, kind: &str, replicas: i64) {
        let i = KINDS.iter().position(|k| *k == kind);
        debug_assert!(i.is_some(), "not a managed kind: {kind}");
        if let Some(i) = i {
            self.with(namespace, |s| s.replicas_asleep[i] = Some(replicas));
        }
    }

    pub fn workloads_without_requests(&self, namespace: &str, workloads: i64) {
        self.with(namespace, |s| s.without_requests = Some(workloads));
    }

    /// Observe a wake's duration (`siesta_wake_duration_seconds`).
    pub fn wake_duration(&self, namespace: &str, seconds: f64) {
        self.with(namespace, |s| {
            let h = s.wake_duration.get_or_insert_with(Box::default);
            if let Some(i) = WAIT_BUCKETS.iter().position(|b| seconds <= *b) {
                h.buckets[i] += 1;
            }
            h.count += 1;
            h.sum += seconds;
        });
    }

    /// Set a namespace's savings totals, real or potential (they only grow:
    /// a lower value, say from prices changed by a reload, leaves the series
    /// as it is).
    pub fn saved_total(
        &self,
        account: Account,
        namespace: &str,
        cpu_core_seconds: f64,
        memory_byte_seconds: f64,
        cost: f64,
        currency: &str,
    ) {
        if cpu_core_seconds <= 0.0 && memory_byte_seconds <= 0.0 && cost <= 0.0 {
            return;
        }
        self.with(namespace, |s| {
            let totals = match account {
                Account::Saved => &mut s.saved,
                Account::Potential => &mut s.potential,
            };
            totals.grow(cpu_core_seconds, memory_byte_seconds, cost, currency)
        });
    }

    /// `siesta_namespace_abandoned`: 1 while marked abandoned.
    pub fn abandoned(&self, namespace: &str, abandoned: bool) {
        self.with(namespace, |s| s.abandoned = Some(i64::from(abandoned)));
    }

    /// `siesta_namespace_deletion_timestamp_seconds`: when the namespace is
    /// to be deleted; `None` removes the series (nothing scheduled).
    pub fn deletion_at(&self, namespace: &str, unix_seconds: Option<i64>) {
        self.with(namespace, |s| s.deletion_at = unix_seconds);
    }

    /// Observe mode's would-be state: `siesta_observed_asleep` 1 or 0, and
    /// its counters at 0 from then on (see [`NamespaceSeries::state`]).
    pub fn observed_state(&self, namespace: &str, state: State) {
        self.with(namespace, |s| {
            for c in s.observed_sleeps.iter_mut().chain(&mut s.observed_wakes) {
                c.get_or_insert(0);
            }
            s.observed_asleep = Some(i64::from(state == State::Asleep));
        });
    }

    /// Count a would-be sleep (`siesta_observed_sleeps_total`).
    pub fn observed_sleep(&self, namespace: &str, reason: Reason) {
        if let Some(i) = SLEEP_REASONS.iter().position(|r| *r == reason) {
            self.with(namespace, |s| *s.observed_sleeps[i].get_or_insert(0) += 1);
        }
    }

    /// Count a would-be wake (`siesta_observed_wakes_total`): a request that
    /// would have waited for the namespace to wake.
    pub fn observed_wake(&self, namespace: &str, trigger: Reason) {
        if let Some(i) = WAKE_TRIGGERS.iter().position(|r| *r == trigger) {
            self.with(namespace, |s| *s.observed_wakes[i].get_or_insert(0) += 1);
        }
    }

    /// The namespace left observe mode: no would-be state any more. Its
    /// counters stay, so its history reads on after it is enabled.
    pub fn stop_observing(&self, namespace: &str) {
        self.with(namespace, |s| s.observed_asleep = None);
    }

    /// Drop every series of a namespace.
    pub fn forget(&self, namespace: &str) {
        self.lock().remove(namespace);
    }

    /// Namespaces that have a `siesta_namespace_asleep` or
    /// `siesta_observed_asleep` series.
    pub fn namespaces(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.asleep.is_some() || s.observed_asleep.is_some())
            .map(|(ns, _)| ns.to_string())
            .collect()
    }
}

/// One family of [`NamespaceSeries`] as a prometheus collector: registered
/// like any other (the registry checks its name and labels), its series
/// built when collected.
#[derive(Clone)]
pub struct FamilyCollector {
    series: Arc<NamespaceSeries>,
    family: Family,
    desc: Desc,
}

impl FamilyCollector {
    pub fn new(series: Arc<NamespaceSeries>, family: Family, desc: Desc) -> FamilyCollector {
        FamilyCollector {
            series,
            family,
            desc,
        }
    }
}

/// Label pairs, sorted by name as the prometheus crate writes them.
fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    let mut out: Vec<proto::LabelPair> = pairs
        .iter()
        .map(|(name, value)| {
            let mut l = proto::LabelPair::default();
            l.set_name(name.to_string());
            l.set_value(value.to_string());
            l
        })
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut g = proto::Gauge::default();
    g.set_value(value);
    let mut m = proto::Metric::from_label(labels(pairs));
    m.set_gauge(g);
    m
}

fn counter(pairs: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut c = proto::Counter::default();
    c.set_value(value);
    let mut m = proto::Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn histogram(pairs: &[(&str, &str)], h: &Histogram) -> proto::Metric {
    let mut cumulative = 0;
    let buckets = WAIT_BUCKETS
        .iter()
        .zip(h.buckets)
        .map(|(bound, n)| {
            cumulative += n;
            let mut b = proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut p = proto::Histogram::default();
    p.set_sample_count(h.count);
    p.set_sample_sum(h.sum);
    p.set_bucket(buckets);
    let mut m = proto::Metric::from_label(labels(pairs));
    m.set_histogram(p);
    m
}

impl Family {
    fn metric_type(self) -> proto::MetricType {
        match self {
            Family::Asleep
            | Family::Waking
            | Family::LastActivity
            | Family::ReplicasAsleep
            | Family::WithoutRequests
            | Family::ObservedAsleep
            | Family::Abandoned
            | Family::DeletionAt => proto::MetricType::GAUGE,
            Family::WakeDuration => proto::MetricType::HISTOGRAM,
            Family::Sleeps
            | Family::Wakes
            | Family::SavedCpu
            | Family::SavedMemory
            | Family::SavedCost
            | Family::Conflicts
            | Family::ObservedSleeps
            | Family::ObservedWakes
            | Family::PotentialCpu
            | Family::PotentialMemory
            | Family::PotentialCost => proto::MetricType::COUNTER,
        }
    }

    /// This family's series of one namespace, appended to `out`.
    fn samples(self, ns: &str, s: &Series, out: &mut Vec<proto::Metric>) {
        let only = [("namespace", ns)];
        let int = |v: Option<i64>| v.map(|v| v as f64);
        let count = |v: Option<u64>| v.map(|v| v as f64);
        match self {
            Family::Asleep => out.extend(int(s.asleep).map(|v| gauge(&only, v))),
            Family::Waking => out.extend(int(s.waking).map(|v| gauge(&only, v))),
            Family::WithoutRequests => out.extend(int(s.without_requests).map(|v| gauge(&only, v))),
            Family::Conflicts => out.extend(count(s.conflicts).map(|v| counter(&only, v))),
            Family::SavedCpu => out.extend(s.saved.cpu.map(|v| counter(&only, v))),
            Family::SavedMemory => out.extend(s.saved.memory.map(|v| counter(&only, v))),
            Family::PotentialCpu => out.extend(s.potential.cpu.map(|v| counter(&only, v))),
            Family::PotentialMemory => out.extend(s.potential.memory.map(|v| counter(&only, v))),
            Family::ObservedAsleep => out.extend(int(s.observed_asleep).map(|v| gauge(&only, v))),
            Family::Abandoned => out.extend(int(s.abandoned).map(|v| gauge(&only, v))),
            Family::DeletionAt => out.extend(int(s.deletion_at).map(|v| gauge(&only, v))),
            Family::WakeDuration => {
                out.extend(s.wake_duration.as_deref().map(|h| histogram(&only, h)))
            }
            Family::LastActivity => {
                for (source, v) in SOURCES.iter().zip(s.last_activity) {
                    out.extend(
                        v.map(|v| gauge(&[("namespace", ns), ("source", source.as_str())], v)),
                    );
                }
            }
            Family::Sleeps | Family::ObservedSleeps => {
                let counts = match self {
                    Family::Sleeps => s.sleeps,
                    _ => s.observed_sleeps,
                };
                for (reason, v) in SLEEP_REASONS.iter().zip(counts) {
                    out.extend(
                        count(v)
                            .map(|v| counter(&[("namespace", ns), ("reason", reason.as_str())], v)),
                    );
                }
            }
            Family::Wakes | Family::ObservedWakes => {
                let counts = match self {
                    Family::Wakes => s.wakes,
                    _ => s.observed_wakes,
                };
                for (trigger, v) in WAKE_TRIGGERS.iter().zip(counts) {
                    out.extend(
                        count(v).map(|v| {
                            counter(&[("namespace", ns), ("trigger", trigger.as_str())], v)
                        }),
                    );
                }
            }
            Family::ReplicasAsleep => {
                for (kind, v) in KINDS.iter().zip(s.replicas_asleep) {
                    out.extend(int(v).map(|v| gauge(&[("namespace", ns), ("kind", kind)], v)));
                }
            }
            Family::SavedCost | Family::PotentialCost => {
                let totals = match self {
                    Family::SavedCost => &s.saved,
                    _ => &s.potential,
                };
                for (currency, v) in &totals.cost {
                    out.push(counter(&[("namespace", ns), ("currency", currency)], *v));
                }
            }
        }
    }
}

impl Collector for FamilyCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let mut metrics = Vec::new();
        {
            let map = self.series.lock();
            let mut namespaces: Vec<(&str, &Series)> =
                map.iter().map(|(ns, s)| (&**ns, s)).collect();
            namespaces.sort_unstable_by_key(|(ns, _)| *ns);
            for (ns, s) in namespaces {
                self.family.samples(ns, s, &mut metrics);
            }
        }
        let mut mf = proto::MetricFamily::default();
        mf.set_name(self.desc.fq_name.clone());
        mf.set_help(self.desc.help.clone());
        mf.set_field_type(self.family.metric_type());
        mf.set_metric(metrics);
        vec![mf]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(series: &Arc<NamespaceSeries>, family: Family, name: &str) -> String {
        let desc = Desc::new(
            name.into(),
            "help".into(),
            vec!["namespace".into()],
            HashMap::new(),
        )
        .unwrap();
        let c = FamilyCollector::new(series.clone(), family, desc);
        let mut buf = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &c.collect(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn a_wake_histogram_is_cumulative_like_the_prometheus_crates() {
        let s = Arc::new(NamespaceSeries::default());
        s.wake_duration("a", 1.0);
        s.wake_duration("a", 0.5);
        s.wake_duration("a", 700.0);
        let text = render(&s, Family::WakeDuration, "w");
        for line in [
            "w_bucket{namespace=\"a\",le=\"0.25\"} 0",
            "w_bucket{namespace=\"a\",le=\"0.5\"} 1",
            "w_bucket{namespace=\"a\",le=\"1\"} 2",
            "w_bucket{namespace=\"a\",le=\"600\"} 2",
            "w_bucket{namespace=\"a\",le=\"+Inf\"} 3",
            "w_sum{namespace=\"a\"} 701.5",
            "w_count{namespace=\"a\"} 3",
        ] {
            assert!(text.contains(line), "no {line} in {text}");
        }
    }

    #[test]
    fn totals_only_grow_per_label_value_and_a_forgotten_namespace_is_gone() {
        let s = Arc::new(NamespaceSeries::default());
        s.saved_total(Account::Saved, "a", 0.0, 0.0, 1.5, "EUR");
        s.saved_total(Account::Saved, "a", 0.0, 0.0, 2.5, "EUR");
        s.saved_total(Account::Saved, "a", 0.0, 0.0, 2.0, "EUR");
        s.saved_total(Account::Saved, "a", 0.0, 0.0, 2.0, "USD");
        s.saved_total(Account::Saved, "b", 0.0, 0.0, 1.0, "USD");
        let text = render(&s, Family::SavedCost, "c");
        assert!(
            text.contains("c{currency=\"EUR\",namespace=\"a\"} 2.5"),
            "{text}"
        );
        assert!(
            text.contains("c{currency=\"USD\",namespace=\"a\"} 2"),
            "{text}"
        );
        s.forget("a");
        let text = render(&s, Family::SavedCost, "c");
        assert!(!text.contains("\"a\""), "{text}");
        assert!(
            text.contains("c{currency=\"USD\",namespace=\"b\"} 1"),
            "{text}"
        );
    }
}
