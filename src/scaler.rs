//! The only writer of workload replicas. Sleep scales every managed workload
//! to zero (CronJobs: suspends them) in a request that also records what it
//! had; wake restores from that record alone, in a request that also removes it.
//! Both passes are idempotent, so a controller killed at any instant and
//! restarted finishes the job: there is no instant where an original count
//! exists nowhere.
//!
//! Wake order: workloads wake in groups by `siesta.dev/wake-order` (lower
//! first; without it StatefulSets are 0, Deployments 1, the rest 2). A wake
//! pass restores the first group that still has records, and only once every
//! group before it is ready (or its wait timed out): [`next_wake`]. Which
//! groups are done is read from the workloads themselves (their records and
//! readiness), and which group is being waited for, and since when, from the
//! namespace (`siesta.dev/wake-group`), so a restarted controller goes on
//! where the last one stopped. Sleep patches groups in the reverse order.
//!
//! Someone else's change wins: a recorded workload found running during sleep
//! (a person or a GitOps agent scaled it up) is released: its record is
//! replaced by `siesta.dev/released`, an Event says so, and Siesta leaves it
//! alone until the namespace wakes. At wake, a recorded workload that is no
//! longer at zero keeps its replicas; only the record goes.
use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use chrono::{DateTime, Utc};

use crate::annotations::{EXCLUDE, ORIGINAL_REPLICAS, ORIGINAL_SUSPEND, WAKE_ORDER, parse_bool};
use crate::gitops::{Agent, DISABLED, ORIGINAL_RECONCILE};

/// Marks a workload someone else took over while its namespace slept.
pub const RELEASED: &str = "siesta.dev/released";

/// A workload as the scaler sees it: how many it runs (CronJob: 1 unless
/// suspended), whether it is managed, and what it had before sleep.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub kind: &'static str,
    pub name: String,
    pub resource_version: String,
    /// Replicas, or for a CronJob 0 when suspended and 1 when not.
    pub running: i32,
    pub ready: bool,
    pub excluded: bool,
    pub owned: bool,
    pub released: bool,
    /// The record: `Some(Ok(n))` original replicas (CronJob: 0 suspended, 1 not),
    /// `Some(Err(value))` unreadable, `None` absent.
    pub record: Option<Result<i32, String>>,
    pub reference: ObjectReference,
    /// Pod template requests: (CPU cores, memory bytes) per replica.
    pub requests: (f64, f64),
    /// The GitOps agent that manages it, if Siesta knows it.
    pub agent: Option<Agent>,
    /// The current value of the agent's pause annotation, if it has one.
    pub pause_value: Option<String>,
    /// What that annotation was before sleep paused it (`""`: absent).
    pub original_pause: Option<String>,
    /// The field manager that last set the replica count (or `suspend`).
    pub scaled_by: Option<String>,
    /// Its wake group: `siesta.dev/wake-order`, else the kind's default.
    pub order: i32,
    /// A `siesta.dev/wake-order` that is not an integer (the default applies).
    pub bad_order: Option<String>,
}

/// The wake group of a kind without `siesta.dev/wake-order`: StatefulSets
/// (databases, queues) before Deployments before the rest.
pub fn default_order(kind: &str) -> i32 {
    match kind {
        "StatefulSet" => 0,
        "Deployment" => 1,
        _ => 2,
    }
}

/// The wake group being restored, as recorded on the namespace
/// (`siesta.dev/wake-group`: `ORDER INSTANT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakeGroup {
    pub order: i32,
    pub since: DateTime<Utc>,
}

impl WakeGroup {
    pub fn parse(s: &str) -> Option<WakeGroup> {
        let (order, since) = s.trim().split_once(' ')?;
        Some(WakeGroup {
            order: order.parse().ok()?,
            since: crate::model::parse_instant(since).ok()?,
        })
    }

    pub fn format(&self) -> String {
        format!(
            "{} {}",
            self.order,
            crate::model::format_instant(self.since)
        )
    }
}

/// What a wake pass does next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WakeNext {
    /// The items (indices) whose wake steps to apply now: one group, or with
    /// `all_at_once` every one left.
    pub apply: Vec<usize>,
    /// The group restored now, or restored before and waited for; `None`
    /// when every group is restored and ready or given up on.
    pub group: Option<i32>,
    /// Managed workloads of that group running but not ready.
    pub not_ready: u32,
    /// Not ready in groups whose wait timed out (the wake went on without them).
    pub given_up: u32,
}

fn waits_for(item: &Item) -> bool {
    !item.excluded && !item.owned && item.running > 0 && !item.ready
}

/// The next step of an ordered wake. Groups go in ascending order: the first
/// with a workload to restore is restored once those before it are ready; a
/// group waited for longer than `timeout` since it was restored (`started`)
/// is given up on, and so is any group before the one `started` names.
pub fn next_wake(
    items: &[Item],
    started: Option<WakeGroup>,
    now: DateTime<Utc>,
    timeout: std::time::Duration,
    all_at_once: bool,
) -> WakeNext {
    let pending = |i: &Item| wake_step(i) != Step::Nothing;
    if all_at_once {
        return WakeNext {
            apply: (0..items.len()).filter(|&i| pending(&items[i])).collect(),
            group: None,
            not_ready: 0,
            given_up: items.iter().filter(|i| waits_for(i)).count() as u32,
        };
    }
    let timeout = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    let orders: std::collections::BTreeSet<i32> =
        items.iter().filter(|i| !i.owned).map(|i| i.order).collect();
    let mut given_up = 0;
    for order in orders {
        let members =
            || (0..items.len()).filter(move |&i| items[i].order == order && !items[i].owned);
        let not_ready = members().filter(|&i| waits_for(&items[i])).count() as u32;
        let apply: Vec<usize> = members().filter(|&i| pending(&items[i])).collect();
        if !apply.is_empty() {
            return WakeNext {
                apply,
                group: Some(order),
                not_ready,
                given_up,
            };
        }
        if not_ready > 0 {
            let timed_out = started
                .is_some_and(|s| s.order > order || (s.order == order && now - s.since >= timeout));
            if !timed_out {
                return WakeNext {
                    apply: Vec::new(),
                    group: Some(order),
                    not_ready,
                    given_up,
                };
            }
            given_up += not_ready;
        }
    }
    WakeNext {
        given_up,
        ..WakeNext::default()
    }
}

/// The items (indices) in the order a sleep pass patches them: groups in
/// descending order (the app stops before its database); each inner list may
/// go at once.
pub fn sleep_groups(items: &[Item]) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<std::cmp::Reverse<i32>, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        groups
            .entry(std::cmp::Reverse(item.order))
            .or_default()
            .push(i);
    }
    groups.into_values().collect()
}

/// What a pass would change on one workload.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Set running to `to` and write the record of `from`.
    Sleep {
        from: i32,
    },
    /// Restore `to` and remove the record.
    Restore {
        to: i32,
    },
    /// Someone else changed it while asleep: drop the record, mark released.
    Release,
    /// At wake: someone else changed it; drop the record and leave it as it is.
    DropRecord,
    /// At wake: remove the released marker.
    Unmark,
    Nothing,
}

/// The pure sleep rule for one workload in a sleeping namespace.
pub fn sleep_step(item: &Item) -> Step {
    if item.excluded || item.owned || item.released {
        return Step::Nothing;
    }
    match &item.record {
        None if item.running > 0 => Step::Sleep { from: item.running },
        Some(Ok(_)) if item.running > 0 => Step::Release,
        _ => Step::Nothing,
    }
}

/// The pure wake rule for one workload.
pub fn wake_step(item: &Item) -> Step {
    // Owned ReplicaSets follow their Deployment (which copies its annotations,
    // records included, onto them): never touch them.
    if item.owned {
        return Step::Nothing;
    }
    if item.released {
        return Step::Unmark;
    }
    match &item.record {
        Some(Ok(n)) if item.running == 0 => Step::Restore { to: *n },
        Some(Ok(_)) => Step::DropRecord,
        // A pause left without its record (a person removed the record):
        // give the agent its workload back.
        None if item.original_pause.is_some() => Step::DropRecord,
        // An unreadable record is never removed: a person must look at it.
        _ => Step::Nothing,
    }
}

/// The merge patch for a step, guarded by the resourceVersion it was decided on.
pub fn patch_for(item: &Item, step: &Step) -> Option<Value> {
    let cron = item.kind == "CronJob";
    let record_key = if cron {
        ORIGINAL_SUSPEND
    } else {
        ORIGINAL_REPLICAS
    };
    let spec = |running: i32| {
        if cron {
            json!({ "suspend": running == 0 })
        } else {
            json!({ "replicas": running })
        }
    };
    let record_value = |n: i32| -> String {
        if cron {
            (n == 0).to_string()
        } else {
            n.to_string()
        }
    };
    let rv = &item.resource_version;
    let mut patch = match step {
        Step::Sleep { from } => json!({
            "metadata": { "resourceVersion": rv, "annotations": { record_key: record_value(*from) } },
            "spec": spec(0),
        }),
        Step::Restore { to } => json!({
            "metadata": { "resourceVersion": rv, "annotations": { record_key: null } },
            "spec": spec(*to),
        }),
        Step::Release => json!({
            "metadata": { "resourceVersion": rv, "annotations": { record_key: null, RELEASED: released_by(item) } },
        }),
        Step::DropRecord => json!({
            "metadata": { "resourceVersion": rv, "annotations": { record_key: null } },
        }),
        Step::Unmark => json!({
            "metadata": { "resourceVersion": rv, "annotations": { RELEASED: null } },
        }),
        Step::Nothing => return None,
    };
    // The agent's pause travels with the record: set by the request that
    // scales to zero, put back by the one that restores or lets go.
    let annotations = &mut patch["metadata"]["annotations"];
    match step {
        Step::Sleep { .. } => {
            if let Some(key) = item.agent.as_ref().and_then(Agent::pause_annotation)
                && item.original_pause.is_none()
            {
                annotations[key] = json!(DISABLED);
                annotations[ORIGINAL_RECONCILE] =
                    json!(item.pause_value.clone().unwrap_or_default());
            }
        }
        Step::Restore { .. } | Step::DropRecord | Step::Unmark => {
            if let Some(original) = &item.original_pause {
                if let Some(key) = item.agent.as_ref().and_then(Agent::pause_annotation) {
                    annotations[key] = if original.is_empty() {
                        Value::Null
                    } else {
                        json!(original)
                    };
                }
                annotations[ORIGINAL_RECONCILE] = Value::Null;
            }
        }
        Step::Release | Step::Nothing => {}
    }
    Some(patch)
}

/// The value of `siesta.dev/released`: who scaled it up, when known.
fn released_by(item: &Item) -> String {
    item.scaled_by.clone().unwrap_or_else(|| "true".into())
}

/// The kinds the scaler manages, read into [`Item`]s.
pub trait Workload:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    const NAME: &'static str;
    fn running(&self) -> i32;
    fn ready(&self) -> bool;
    fn record_of(ann: &BTreeMap<String, String>) -> Option<Result<i32, String>> {
        ann.get(ORIGINAL_REPLICAS).map(|v| {
            v.trim()
                .parse::<i32>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| v.clone())
        })
    }
    fn pod_requests(&self) -> (f64, f64);
    /// The spec field a sleep sets (`replicas`; a CronJob's `suspend`).
    const SCALE_FIELD: &'static str = "f:replicas";
    fn item(&self) -> Item {
        let meta = self.meta();
        let ann = meta.annotations.clone().unwrap_or_default();
        let managers: Vec<&str> = meta
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.as_deref())
            .collect();
        let empty = BTreeMap::new();
        let agent = crate::gitops::detect(meta.labels.as_ref().unwrap_or(&empty), &ann, &managers);
        let written = ann
            .get(WAKE_ORDER)
            .map(|v| v.trim().parse::<i32>().map_err(|_| v.clone()));
        Item {
            order: match &written {
                Some(Ok(n)) => *n,
                _ => default_order(Self::NAME),
            },
            bad_order: written.and_then(Result::err),
            kind: Self::NAME,
            name: self.name_any(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            running: self.running(),
            ready: self.ready(),
            excluded: ann.get(EXCLUDE).is_some_and(|v| parse_bool(v) == Ok(true)),
            owned: meta
                .owner_references
                .as_ref()
                .is_some_and(|o| !o.is_empty()),
            released: ann.contains_key(RELEASED),
            record: Self::record_of(&ann),
            reference: self.object_ref(&()),
            requests: self.pod_requests(),
            pause_value: agent
                .as_ref()
                .and_then(Agent::pause_annotation)
                .and_then(|key| ann.get(key).cloned()),
            agent,
            original_pause: ann.get(ORIGINAL_RECONCILE).cloned(),
            scaled_by: scaled_by(meta, Self::SCALE_FIELD),
        }
    }
}

/// The field manager that owns the scale field now, other than Siesta: who
/// scaled the workload up while it slept.
fn scaled_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    field: &str,
) -> Option<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() != Some(crate::FIELD_MANAGER))
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.get("f:spec").and_then(|s| s.get(field)).is_some())
        })
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone())
}

fn template_requests(spec: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> (f64, f64) {
    spec.and_then(|t| t.spec.as_ref())
        .map(crate::resources::pod_requests)
        .unwrap_or((0.0, 0.0))
}

fn ready_replicas(
    spec: Option<i32>,
    ready: Option<i32>,
    generation: Option<i64>,
    observed: Option<i64>,
) -> bool {
    let want = spec.unwrap_or(1);
    want == 0 || (ready.unwrap_or(0) >= want && observed.unwrap_or(0) >= generation.unwrap_or(0))
}

/// Deployments, StatefulSets and ReplicaSets share `spec.replicas` and
/// `status.readyReplicas`; only where the pod template sits differs.
macro_rules! replica_workload {
    ($kind:ty, $name:literal, |$s:ident| $template:expr) => {
        impl Workload for $kind {
            const NAME: &'static str = $name;
            fn running(&self) -> i32 {
                self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
            }
            fn ready(&self) -> bool {
                let st = self.status.as_ref();
                ready_replicas(
                    self.spec.as_ref().and_then(|s| s.replicas),
                    st.and_then(|s| s.ready_replicas),
                    self.metadata.generation,
                    st.and_then(|s| s.observed_generation),
                )
            }
            fn pod_requests(&self) -> (f64, f64) {
                template_requests(self.spec.as_ref().and_then(|$s| $template))
            }
        }
    };
}

replica_workload!(Deployment, "Deployment", |s| Some(&s.template));
replica_workload!(StatefulSet, "StatefulSet", |s| Some(&s.template));
replica_workload!(ReplicaSet, "ReplicaSet", |s| s.template.as_ref());

impl Workload for CronJob {
    const NAME: &'static str = "CronJob";
    const SCALE_FIELD: &'static str = "f:suspend";
    fn running(&self) -> i32 {
        i32::from(!self.spec.suspend.unwrap_or(false))
    }
    fn ready(&self) -> bool {
        true
    }
    fn record_of(ann: &BTreeMap<String, String>) -> Option<Result<i32, String>> {
        ann.get(ORIGINAL_SUSPEND).map(|v| match parse_bool(v) {
            Ok(suspended) => Ok(i32::from(!suspended)),
            Err(_) => Err(v.clone()),
        })
    }
    fn pod_requests(&self) -> (f64, f64) {
        // A CronJob's pods run now and then; they are not counted as savings.
        (0.0, 0.0)
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Workloads changed (slept or restored), by kind.
    pub changed: BTreeMap<&'static str, u32>,
    /// Workloads someone else took over (released or record dropped), with
    /// the field manager that scaled them, when known.
    pub conflicts: Vec<(ObjectReference, Option<String>)>,
    /// Workloads whose GitOps agent the pass paused, by agent.
    pub paused: BTreeMap<String, u32>,
    /// The GitOps agents managing its workloads (`flux`, `helm`, `argocd`).
    pub agents: std::collections::BTreeSet<&'static str>,
    /// Workloads Argo CD scaled back up while asleep (`Deployment/web`).
    pub undone_by_argo_cd: Vec<String>,
    /// Unreadable records left for a person.
    pub unreadable: Vec<(ObjectReference, String)>,
    /// Managed workloads that are running but not all ready, in the wake
    /// group waited for (wake pass).
    pub not_ready: u32,
    /// The wake group restored or waited for; `None` once every group is done.
    pub wake_group: Option<i32>,
    /// Not ready in wake groups whose wait timed out.
    pub given_up: u32,
    /// Workloads whose `siesta.dev/wake-order` is not an integer, with it.
    pub bad_orders: Vec<(ObjectReference, String)>,
    /// Replicas held at zero after the pass, by kind (CronJobs: suspended count).
    pub asleep: BTreeMap<&'static str, i64>,
    /// Sum over sleeping workloads of original replicas x pod requests.
    pub cpu_cores: f64,
    pub memory_bytes: f64,
    /// Sleeping workloads whose pods request nothing.
    pub without_requests: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Sleep,
    Wake,
}

impl Report {
    /// The reports of several kinds as one.
    pub fn merge(parts: impl IntoIterator<Item = Report>) -> Report {
        let mut all = Report::default();
        for p in parts {
            for (k, n) in p.changed {
                *all.changed.entry(k).or_default() += n;
            }
            for (k, n) in p.asleep {
                *all.asleep.entry(k).or_default() += n;
            }
            all.conflicts.extend(p.conflicts);
            for (k, n) in p.paused {
                *all.paused.entry(k).or_default() += n;
            }
            all.agents.extend(p.agents);
            all.undone_by_argo_cd.extend(p.undone_by_argo_cd);
            all.unreadable.extend(p.unreadable);
            all.not_ready += p.not_ready;
            all.wake_group = all.wake_group.or(p.wake_group);
            all.given_up += p.given_up;
            all.bad_orders.extend(p.bad_orders);
            all.cpu_cores += p.cpu_cores;
            all.memory_bytes += p.memory_bytes;
            all.without_requests += p.without_requests;
        }
        all
    }
}

/// Add one workload's sleeping requests to a report.
pub fn account(item: &Item, report: &mut Report) {
    if item.owned {
        return;
    }
    if let Some(agent) = &item.agent {
        report.agents.insert(agent.short());
    }
    if item.released
        && item
            .scaled_by
            .as_deref()
            .is_some_and(crate::gitops::is_argo_cd)
    {
        report
            .undone_by_argo_cd
            .push(format!("{}/{}", item.kind, item.name));
    }
    if item.excluded {
        return;
    }
    if let Some(Ok(n)) = item.record
        && item.running == 0
    {
        *report.asleep.entry(item.kind).or_default() += i64::from(n);
        report.cpu_cores += item.requests.0 * f64::from(n);
        report.memory_bytes += item.requests.1 * f64::from(n);
        if item.requests == (0.0, 0.0) && item.kind != "CronJob" {
            report.without_requests += 1;
        }
    }
}

/// Add what a sleep pass would stop of one workload now (observe mode):
/// its running replicas times its pod requests, when a sleep pass would scale
/// it (not owned, not excluded, not already at zero).
pub fn account_potential(item: &Item, report: &mut Report) {
    if item.owned || item.excluded || item.released || item.running <= 0 || item.record.is_some() {
        return;
    }
    *report.asleep.entry(item.kind).or_default() += i64::from(item.running);
    report.cpu_cores += item.requests.0 * f64::from(item.running);
    report.memory_bytes += item.requests.1 * f64::from(item.running);
    if item.requests == (0.0, 0.0) && item.kind != "CronJob" {
        report.without_requests += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: &'static str, running: i32, record: Option<i32>) -> Item {
        Item {
            kind,
            name: "web".into(),
            resource_version: "42".into(),
            running,
            ready: true,
            excluded: false,
            owned: false,
            released: false,
            record: record.map(Ok),
            reference: ObjectReference::default(),
            requests: (0.1, 1e8),
            agent: None,
            pause_value: None,
            original_pause: None,
            scaled_by: None,
            order: default_order(kind),
            bad_order: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        crate::model::parse_instant(s).expect("test instant")
    }

    /// A workload of a group: asleep with a record, or restored and `ready`.
    fn member(kind: &'static str, order: i32, asleep: bool, ready: bool) -> Item {
        Item {
            order,
            ready,
            ..item(kind, if asleep { 0 } else { 2 }, asleep.then_some(2))
        }
    }

    const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

    #[test]
    fn the_default_order_is_statefulsets_then_deployments_then_the_rest() {
        let items = [
            member("Deployment", default_order("Deployment"), true, false),
            member("CronJob", default_order("CronJob"), true, true),
            member("StatefulSet", default_order("StatefulSet"), true, false),
        ];
        let now = at("2026-12-01T10:00:00Z");
        let next = next_wake(&items, None, now, MINUTE, false);
        assert_eq!((next.apply, next.group), (vec![2], Some(0)));
        assert_eq!(sleep_groups(&items), vec![vec![1], vec![0], vec![2]]);
    }

    #[test]
    fn each_group_waits_for_the_one_before_to_be_ready() {
        let now = at("2026-12-01T10:00:00Z");
        let started = Some(WakeGroup {
            order: 0,
            since: now,
        });
        // Group 0 restored, not ready yet: nothing else happens.
        let items = [
            member("StatefulSet", 0, false, false),
            member("Deployment", 1, true, false),
            member("Deployment", 1, true, false),
        ];
        let next = next_wake(&items, started, now, MINUTE, false);
        assert_eq!(
            next,
            WakeNext {
                apply: vec![],
                group: Some(0),
                not_ready: 1,
                given_up: 0
            }
        );
        // Ready: group 1 is restored, both at once.
        let items = [
            member("StatefulSet", 0, false, true),
            items[1].clone(),
            items[2].clone(),
        ];
        let next = next_wake(&items, started, now, MINUTE, false);
        assert_eq!((next.apply, next.group), (vec![1, 2], Some(1)));
        // Everything restored and ready: done.
        let items = [
            member("StatefulSet", 0, false, true),
            member("Deployment", 1, false, true),
        ];
        assert_eq!(
            next_wake(&items, started, now, MINUTE, false),
            WakeNext::default()
        );
    }

    #[test]
    fn a_group_that_never_gets_ready_is_given_up_on_after_the_timeout() {
        let since = at("2026-12-01T10:00:00Z");
        let stuck = [
            member("StatefulSet", -5, false, false),
            member("Deployment", 7, true, false),
        ];
        let started = Some(WakeGroup { order: -5, since });
        let before = since + chrono::Duration::seconds(59);
        assert_eq!(
            next_wake(&stuck, started, before, MINUTE, false).group,
            Some(-5)
        );
        let after = since + chrono::Duration::seconds(60);
        let next = next_wake(&stuck, started, after, MINUTE, false);
        assert_eq!(
            (next.apply, next.group, next.given_up),
            (vec![1], Some(7), 1)
        );
        // Once a later group started, the stuck one is not waited for again.
        let later = Some(WakeGroup {
            order: 7,
            since: after,
        });
        let restored = [stuck[0].clone(), member("Deployment", 7, false, true)];
        let next = next_wake(&restored, later, after, MINUTE, false);
        assert_eq!((next.group, next.given_up), (None, 1));
    }

    #[test]
    fn a_restart_resumes_from_what_the_workloads_and_the_namespace_say() {
        // Killed after group 0 was restored and its record removed, before
        // the namespace said so: group 0 is waited for, nothing is restored twice.
        let now = at("2026-12-01T10:00:00Z");
        let items = [
            member("StatefulSet", 0, false, false),
            member("Deployment", 1, true, false),
        ];
        let next = next_wake(&items, None, now, MINUTE, false);
        assert_eq!(
            (next.apply, next.group, next.not_ready),
            (vec![], Some(0), 1)
        );
        // Past the whole wake's timeout: everything left at once.
        let next = next_wake(&items, None, now, MINUTE, true);
        assert_eq!((next.apply, next.group, next.given_up), (vec![1], None, 1));
    }

    proptest::proptest! {
        /// Driving a wake to its end the way the controller does (each pass
        /// applies what `next_wake` says; restored workloads turn ready some
        /// passes later, in any order) restores every workload exactly once,
        /// never a group before all lower ones are ready, and ends.
        #[test]
        fn an_ordered_wake_restores_every_group_once_in_order(
            groups in proptest::collection::vec((-2i32..3, proptest::bool::ANY, 0u8..4), 1..12),
        ) {
            let now = at("2026-12-01T10:00:00Z");
            let mut items: Vec<Item> = groups
                .iter()
                .map(|&(order, cron, _)| member(if cron { "CronJob" } else { "Deployment" }, order, true, false))
                .collect();
            // How many passes each restored workload takes to turn ready.
            let mut ready_in: Vec<Option<u8>> = vec![None; items.len()];
            let mut restored_order = Vec::new();
            let mut started = None;
            for _ in 0..200 {
                let next = next_wake(&items, started, now, MINUTE, false);
                for &i in &next.apply {
                    // Every lower group is restored and ready.
                    proptest::prop_assert!(items.iter().all(|o| o.order >= items[i].order || (o.running > 0 && o.ready)));
                    proptest::prop_assert_eq!(wake_step(&items[i]), Step::Restore { to: 2 });
                    items[i].running = 2;
                    items[i].record = None;
                    items[i].ready = items[i].kind == "CronJob";
                    ready_in[i] = Some(groups[i].2);
                    restored_order.push(items[i].order);
                }
                if let Some(g) = next.group && started.map(|s: WakeGroup| s.order) != Some(g) {
                    started = Some(WakeGroup { order: g, since: now });
                }
                if next == WakeNext::default() {
                    break;
                }
                for (i, r) in ready_in.iter_mut().enumerate() {
                    match r {
                        Some(0) => items[i].ready = true,
                        Some(n) => *n -= 1,
                        None => {}
                    }
                }
            }
            proptest::prop_assert!(items.iter().all(|i| i.record.is_none() && i.ready), "{items:?}");
            proptest::prop_assert_eq!(restored_order.len(), items.len());
            proptest::prop_assert!(restored_order.windows(2).all(|w| w[0] <= w[1]), "{restored_order:?}");
        }
    }

    #[test]
    fn wake_group_round_trips_and_bad_orders_fall_back_to_the_default() {
        let g = WakeGroup {
            order: -3,
            since: at("2026-12-01T10:00:00Z"),
        };
        assert_eq!(WakeGroup::parse(&g.format()), Some(g));
        assert_eq!(WakeGroup::parse("first 2026-12-01T10:00:00Z"), None);
        let mut d = k8s_openapi::api::apps::v1::Deployment::default();
        d.metadata.annotations = Some([(WAKE_ORDER.to_string(), "first".to_string())].into());
        let it = d.item();
        assert_eq!((it.order, it.bad_order.as_deref()), (1, Some("first")));
        d.metadata.annotations = Some([(WAKE_ORDER.to_string(), " -2 ".to_string())].into());
        assert_eq!((d.item().order, d.item().bad_order), (-2, None));
    }

    #[test]
    fn sleep_records_the_original_in_the_same_patch_that_scales_to_zero() {
        let it = item("Deployment", 3, None);
        assert_eq!(sleep_step(&it), Step::Sleep { from: 3 });
        let patch = patch_for(&it, &Step::Sleep { from: 3 }).unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "42", "annotations": {ORIGINAL_REPLICAS: "3"}}, "spec": {"replicas": 0}})
        );
    }

    #[test]
    fn wake_restores_exactly_the_record_and_removes_it() {
        let it = item("StatefulSet", 0, Some(5));
        assert_eq!(wake_step(&it), Step::Restore { to: 5 });
        assert_eq!(
            patch_for(&it, &Step::Restore { to: 5 }).unwrap(),
            json!({"metadata": {"resourceVersion": "42", "annotations": {ORIGINAL_REPLICAS: null}}, "spec": {"replicas": 5}})
        );
    }

    #[test]
    fn cronjobs_are_suspended_and_restored() {
        let it = item("CronJob", 1, None);
        assert_eq!(
            patch_for(&it, &sleep_step(&it)).unwrap(),
            json!({"metadata": {"resourceVersion": "42", "annotations": {ORIGINAL_SUSPEND: "false"}}, "spec": {"suspend": true}})
        );
        let it = item("CronJob", 0, Some(1));
        assert_eq!(
            patch_for(&it, &wake_step(&it)).unwrap(),
            json!({"metadata": {"resourceVersion": "42", "annotations": {ORIGINAL_SUSPEND: null}}, "spec": {"suspend": false}})
        );
    }

    #[test]
    fn someone_elses_scale_up_during_sleep_wins() {
        let it = item("Deployment", 3, Some(2));
        assert_eq!(sleep_step(&it), Step::Release);
        let released = Item {
            released: true,
            record: None,
            ..it.clone()
        };
        assert_eq!(
            sleep_step(&released),
            Step::Nothing,
            "released workloads are not scaled down again"
        );
        assert_eq!(wake_step(&released), Step::Unmark);
        assert_eq!(
            wake_step(&it),
            Step::DropRecord,
            "at wake their replicas are kept"
        );
    }

    #[test]
    fn excluded_owned_and_idle_workloads_are_left_alone() {
        assert_eq!(
            sleep_step(&Item {
                excluded: true,
                ..item("Deployment", 3, None)
            }),
            Step::Nothing
        );
        assert_eq!(
            sleep_step(&Item {
                owned: true,
                ..item("ReplicaSet", 3, None)
            }),
            Step::Nothing
        );
        // a Deployment copies its annotations, records included, onto its ReplicaSets
        assert_eq!(
            wake_step(&Item {
                owned: true,
                ..item("ReplicaSet", 3, Some(3))
            }),
            Step::Nothing
        );
        assert_eq!(sleep_step(&item("Deployment", 0, None)), Step::Nothing);
        assert_eq!(
            sleep_step(&item("Deployment", 0, Some(2))),
            Step::Nothing,
            "already asleep"
        );
    }

    #[test]
    fn an_unreadable_record_is_never_removed() {
        let it = Item {
            record: Some(Err("three".into())),
            ..item("Deployment", 0, None)
        };
        assert_eq!(wake_step(&it), Step::Nothing);
        assert_eq!(sleep_step(&it), Step::Nothing);
    }

    #[test]
    fn record_parsing_rejects_negative_and_garbage() {
        let ann = |v: &str| BTreeMap::from([(ORIGINAL_REPLICAS.to_string(), v.to_string())]);
        assert_eq!(Deployment::record_of(&ann("3")), Some(Ok(3)));
        assert_eq!(Deployment::record_of(&ann("-1")), Some(Err("-1".into())));
        assert_eq!(Deployment::record_of(&ann("x")), Some(Err("x".into())));
        let cron = BTreeMap::from([(ORIGINAL_SUSPEND.to_string(), "true".to_string())]);
        assert_eq!(CronJob::record_of(&cron), Some(Ok(0)));
    }

    #[test]
    fn potential_savings_count_what_a_sleep_pass_would_stop_and_nothing_else() {
        let mut r = Report::default();
        account_potential(&item("Deployment", 3, None), &mut r);
        // Already asleep, scaled to zero by its owner, excluded, owned or
        // released: a sleep pass would not stop it now.
        account_potential(&item("Deployment", 2, Some(2)), &mut r);
        account_potential(&item("StatefulSet", 0, None), &mut r);
        for change in [
            |i: &mut Item| i.excluded = true,
            |i: &mut Item| i.owned = true,
            |i: &mut Item| i.released = true,
        ] {
            let mut it = item("Deployment", 4, None);
            change(&mut it);
            account_potential(&it, &mut r);
        }
        assert!((r.cpu_cores - 0.3).abs() < 1e-9, "{r:?}");
        assert_eq!(r.memory_bytes, 3e8);
        assert_eq!(r.asleep.get("Deployment"), Some(&3));
    }

    fn flux(mut it: Item) -> Item {
        it.agent = Some(Agent::Kustomization("flux-system".into(), "apps".into()));
        it
    }

    #[test]
    fn sleep_pauses_flux_in_the_same_patch_and_wake_gives_it_back() {
        let it = flux(item("Deployment", 3, None));
        let p = patch_for(&it, &sleep_step(&it)).unwrap();
        let ann = &p["metadata"]["annotations"];
        assert_eq!(ann[crate::gitops::FLUX_RECONCILE], "disabled");
        assert_eq!(ann[ORIGINAL_RECONCILE], "", "it had none");
        assert_eq!(ann[ORIGINAL_REPLICAS], "3");
        assert_eq!(p["spec"]["replicas"], 0);

        let mut asleep = flux(item("Deployment", 0, Some(3)));
        asleep.original_pause = Some(String::new());
        asleep.pause_value = Some("disabled".into());
        let p = patch_for(&asleep, &wake_step(&asleep)).unwrap();
        let ann = &p["metadata"]["annotations"];
        assert!(ann[crate::gitops::FLUX_RECONCILE].is_null(), "{p}");
        assert!(ann[ORIGINAL_RECONCILE].is_null());
        assert_eq!(p["spec"]["replicas"], 3);
    }

    #[test]
    fn a_users_own_pause_is_kept_through_sleep_and_wake() {
        let mut it = flux(item("Deployment", 2, None));
        it.pause_value = Some("disabled".into());
        let p = patch_for(&it, &sleep_step(&it)).unwrap();
        assert_eq!(p["metadata"]["annotations"][ORIGINAL_RECONCILE], "disabled");
        let mut asleep = flux(item("Deployment", 0, Some(2)));
        asleep.original_pause = Some("disabled".into());
        let p = patch_for(&asleep, &wake_step(&asleep)).unwrap();
        assert_eq!(
            p["metadata"]["annotations"][crate::gitops::FLUX_RECONCILE],
            "disabled"
        );
    }

    #[test]
    fn helm_releases_get_drift_detection_off_and_argo_cd_gets_nothing() {
        let mut it = item("StatefulSet", 1, None);
        it.agent = Some(Agent::HelmRelease("team-a".into(), "db".into()));
        let p = patch_for(&it, &sleep_step(&it)).unwrap();
        assert_eq!(
            p["metadata"]["annotations"][crate::gitops::HELM_DRIFT_DETECTION],
            "disabled"
        );
        it.agent = Some(Agent::ArgoCd("shop".into()));
        let p = patch_for(&it, &sleep_step(&it)).unwrap();
        assert!(
            p["metadata"]["annotations"]
                .get(ORIGINAL_RECONCILE)
                .is_none()
        );
    }

    #[test]
    fn a_release_keeps_the_pause_until_wake_and_a_lone_pause_is_given_back() {
        let mut it = flux(item("Deployment", 2, Some(2)));
        it.original_pause = Some(String::new());
        it.scaled_by = Some("argocd-controller".into());
        assert_eq!(sleep_step(&it), Step::Release);
        let p = patch_for(&it, &Step::Release).unwrap();
        assert_eq!(p["metadata"]["annotations"][RELEASED], "argocd-controller");
        assert!(
            p["metadata"]["annotations"]
                .get(ORIGINAL_RECONCILE)
                .is_none()
        );
        let mut lone = flux(item("Deployment", 2, None));
        lone.original_pause = Some(String::new());
        assert_eq!(wake_step(&lone), Step::DropRecord);
        let p = patch_for(&lone, &Step::DropRecord).unwrap();
        assert!(p["metadata"]["annotations"][ORIGINAL_RECONCILE].is_null());
    }
}
