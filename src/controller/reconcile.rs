//! One namespace's reconcile: read what it wants and what happened, run
//! [`decide`], and carry the verdict out through [`scaler`]. Called by the
//! kube-runtime controller, never twice at once for the same namespace.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::activity::{Reporter, Source};
use crate::annotations::{
    self, ACTION, LAST_ACTIVITY, Overrides, REASON, Reason, Recorded, STATE, STATE_SINCE, State,
    format_instant,
};
use crate::config::AdminConfig;
use crate::controller::events::{Kind as EventType, Publisher};
use crate::decide::{self, Observed, Verdict};
use crate::metrics;
use crate::scaler::{self, Pass};

/// How long a namespace may stay `waking` before it is declared awake anyway.
pub const WAKE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often a waking namespace is looked at besides workload events. Every
/// status change of its workloads (a pod turning ready) already triggers a
/// reconcile through the workload watches, so this is only a safety net:
/// polling every few seconds made 1,000 waking namespaces cost 1,000 requests/s.
const WAKING_RECHECK: Duration = Duration::from_secs(30);
/// When a namespace changed between reading it and writing its new state
/// (another replica that still believes it leads, a person, a GitOps agent),
/// the write is refused and the namespace is looked at again: its watch event
/// usually comes first, this is the safety net.
const CONFLICT_RECHECK: Duration = Duration::from_secs(1);

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub client: kube::Client,
    pub config: watch::Receiver<Arc<AdminConfig>>,
    pub reporter: Reporter,
    pub namespaces: Store<Namespace>,
    pub events: Publisher,
    /// When this process first saw each namespace opted in: the idle clock's
    /// floor, so a controller start never sleeps a namespace at once.
    pub first_seen: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The last annotation problems reported per namespace, so an Event is
    /// emitted once per distinct problem, not per reconcile.
    pub reported: Mutex<HashMap<String, String>>,
    pub savings: crate::controller::savings::Savings,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Context {
    async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        if let Err(e) = self.events.publish(reference, type_, reason, note).await {
            tracing::warn!(error = %e, reason, "could not publish an Event");
            metrics::error("kube_api");
        }
    }

    fn describe_activity(&self, ns: &str) -> String {
        match self.reporter.seen(ns) {
            Some(seen) => match (seen.newest(), seen.detail) {
                (Some(t), Some(d)) => {
                    annotations::truncate(&format!("{} {d}", format_instant(t)), 200)
                }
                (Some(t), None) => format_instant(t),
                _ => "none".into(),
            },
            None => "none".into(),
        }
    }
}

pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let name = ns.name_any();
    let empty = BTreeMap::new();
    let ann = ns.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = ns.metadata.labels.as_ref().unwrap_or(&empty);
    let recorded = Recorded::parse(ann);
    let managed_before = ann.contains_key(STATE);
    let config = ctx.config.borrow().clone();
    let (own, mut problems) = Overrides::parse(ann);
    let mut problems: Vec<String> = problems.drain(..).map(|e| e.to_string()).collect();
    let (policy, problem) = config.resolve(labels, &own);
    if let Some(p) = problem {
        problems.push(format!("annotation {}: {p}", annotations::SCHEDULE));
    }
    // The namespace's own Events live in the namespace, where its users look.
    let mut ns_ref = ns.object_ref(&());
    ns_ref.namespace = Some(name.clone());

    // Bad input changes nothing: report it (once per distinct problem) and wait
    // for the namespace to change.
    if !problems.is_empty() {
        let text = problems.join("; ");
        let first = lock(&ctx.reported).insert(name.clone(), text.clone()) != Some(text.clone());
        if first {
            tracing::error!(namespace = %name, problems = %text, "invalid siesta annotations; namespace left as it is");
            metrics::error("bad_annotation");
            ctx.event(
                &ns_ref,
                EventType::Warning,
                "InvalidAnnotation",
                format!("{text}; nothing was changed"),
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    lock(&ctx.reported).remove(&name);
    if !policy.enabled && !managed_before {
        lock(&ctx.first_seen).remove(&name);
        return Ok(Action::await_change());
    }

    let now = Utc::now();
    let first_seen = *lock(&ctx.first_seen).entry(name.clone()).or_insert(now);
    let seen = ctx.reporter.seen(&name).unwrap_or_default();
    let observed = Observed {
        state: recorded.state,
        since: recorded.since,
        action: own.action,
        last_api: seen.api,
        last_http: seen.http,
        first_seen,
    };
    let decision = decide::decide(&policy, &observed, now);
    tracing::debug!(namespace = %name, ?decision, "decided");
    let m = metrics::get();
    for (source, t) in [(Source::Api, seen.api), (Source::Http, seen.http)] {
        if let Some(t) = t {
            m.namespace
                .last_activity(&name, source, t.timestamp() as f64);
        }
    }

    let action = match decision.verdict {
        Verdict::Sleep(reason) => {
            if transition(&ctx, &ns, State::Asleep, reason, now)
                .await?
                .is_none()
            {
                return Ok(Action::requeue(CONFLICT_RECHECK));
            }
            // Counted when the new state is written: that write happens once.
            m.namespace.slept(&name, reason);
            m.namespace_state(&name, State::Asleep);
            let report = scaler::run(&ctx.client, &name, Pass::Sleep).await?;
            after_pass(&ctx, &name, &report, Pass::Sleep).await;
            ctx.savings.start(&name, now, &report);
            let changed: u32 = report.changed.values().sum();
            ctx.event(
                &ns_ref,
                EventType::Normal,
                "Sleeping",
                format!("asleep ({reason}): {changed} workload(s) scaled to zero or suspended; last activity: {}", ctx.describe_activity(&name)),
            )
            .await;
            tracing::info!(namespace = %name, %reason, changed, "namespace asleep");
            next(decision.next_check, now)
        }
        Verdict::Wake(reason) => {
            let Some(written) = transition(&ctx, &ns, State::Waking, reason, now).await? else {
                return Ok(Action::requeue(CONFLICT_RECHECK));
            };
            m.namespace.woke(&name, reason);
            m.namespace_state(&name, State::Waking);
            ctx.savings.stop(&name, now);
            let report = scaler::run(&ctx.client, &name, Pass::Wake).await?;
            after_pass(&ctx, &name, &report, Pass::Wake).await;
            let changed: u32 = report.changed.values().sum();
            ctx.event(
                &ns_ref,
                EventType::Normal,
                "Waking",
                format!(
                    "woken ({reason}) by {}: {changed} workload(s) restored",
                    ctx.describe_activity(&name)
                ),
            )
            .await;
            tracing::info!(namespace = %name, %reason, changed, "namespace waking");
            finish_waking(&ctx, &written, &ns_ref, now, report.not_ready).await?
        }
        Verdict::Keep => {
            if decision.clear_action {
                patch_namespace(&ctx, &name, json!({ ACTION: null })).await?;
            }
            // Series only for namespaces Siesta has acted on: 10,000 awake
            // namespaces cost nothing.
            if managed_before {
                m.namespace_state(&name, recorded.state);
            }
            // A pass acts on what the namespace was when this reconcile read
            // it; a replica whose copy is behind (another replica moved it on)
            // looks again instead of, say, putting a just-restored workload
            // back to sleep as if it were new.
            if recorded.state != State::Awake && !still_as_read(&ctx, &ns).await? {
                return Ok(Action::requeue(CONFLICT_RECHECK));
            }
            match recorded.state {
                State::Asleep => {
                    // Keep the promise "asleep means every managed workload at
                    // zero": workloads created meanwhile go to sleep too, and
                    // someone else's scale-up is released.
                    let report = scaler::run(&ctx.client, &name, Pass::Sleep).await?;
                    after_pass(&ctx, &name, &report, Pass::Sleep).await;
                    ctx.savings
                        .start(&name, recorded.since.unwrap_or(now), &report);
                    next(decision.next_check, now)
                }
                State::Waking => {
                    let report = scaler::run(&ctx.client, &name, Pass::Wake).await?;
                    after_pass(&ctx, &name, &report, Pass::Wake).await;
                    finish_waking(
                        &ctx,
                        &ns,
                        &ns_ref,
                        recorded.since.unwrap_or(now),
                        report.not_ready,
                    )
                    .await?
                }
                State::Awake => next(decision.next_check, now),
            }
        }
    };
    Ok(action)
}

fn next(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Action {
    match at {
        // a little late rather than early, so the deadline has passed when we look
        Some(t) => Action::requeue(decide::until(now, t) + Duration::from_millis(50)),
        None => Action::await_change(),
    }
}

async fn finish_waking(
    ctx: &Context,
    ns: &Namespace,
    ns_ref: &ObjectReference,
    since: DateTime<Utc>,
    not_ready: u32,
) -> Result<Action, ReconcileError> {
    let now = Utc::now();
    let waited = (now - since).to_std().unwrap_or_default();
    if not_ready > 0 && waited < WAKE_TIMEOUT {
        return Ok(Action::requeue(WAKING_RECHECK));
    }
    let name = &ns.name_any();
    let written = patch_if_unchanged(
        ctx,
        ns,
        json!({ STATE: State::Awake.as_str(), STATE_SINCE: format_instant(now) }),
    )
    .await?;
    if written.is_none() {
        return Ok(Action::requeue(CONFLICT_RECHECK));
    }
    metrics::get()
        .namespace
        .wake_duration(name, waited.as_secs_f64());
    metrics::get().namespace_state(name, State::Awake);
    if not_ready > 0 {
        ctx.event(
            ns_ref,
            EventType::Warning,
            "WakeTimeout",
            format!(
                "{not_ready} workload(s) still not ready after {}s; marked awake anyway",
                waited.as_secs()
            ),
        )
        .await;
    } else {
        ctx.event(
            ns_ref,
            EventType::Normal,
            "Awake",
            format!(
                "every restored workload is ready after {:.1}s",
                waited.as_secs_f64()
            ),
        )
        .await;
    }
    tracing::info!(namespace = %name, seconds = waited.as_secs_f64(), "namespace awake");
    Ok(Action::await_change())
}

/// Write the namespace's new state, only if it is still as this reconcile saw
/// it: of two replicas that both believe they lead, one applies a transition.
/// The namespace as written, or None if it had changed.
async fn transition(
    ctx: &Context,
    ns: &Namespace,
    to: State,
    reason: Reason,
    now: DateTime<Utc>,
) -> Result<Option<Namespace>, ReconcileError> {
    let activity = ctx.describe_activity(&ns.name_any());
    patch_if_unchanged(
        ctx,
        ns,
        json!({
            STATE: to.as_str(),
            STATE_SINCE: format_instant(now),
            REASON: reason.as_str(),
            LAST_ACTIVITY: activity,
            ACTION: null,
        }),
    )
    .await
}

/// What a decision about a namespace rests on: its labels (admin policies
/// select by them) and its `siesta.dev/` annotations. Others' annotations are
/// not part of it, so a busy labeller or GitOps agent never blocks a transition.
type Basis<'a> = (
    Option<&'a BTreeMap<String, String>>,
    Vec<(&'a String, &'a String)>,
);

fn basis(meta: &ObjectMeta) -> Basis<'_> {
    let ours = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(annotations::PREFIX))
        .collect();
    (meta.labels.as_ref(), ours)
}

/// Whether the namespace still rests on what this reconcile read.
async fn still_as_read(ctx: &Context, ns: &Namespace) -> Result<bool, ReconcileError> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let now = api.get_metadata_opt(&ns.name_any()).await?;
    Ok(now.is_some_and(|n| basis(&n.metadata) == basis(&ns.metadata)))
}

/// Merge annotations into a namespace if its basis is still as read: guarded
/// by resourceVersion, and on a conflict read again and retry only when the
/// change was someone else's annotation. None when the basis changed.
async fn patch_if_unchanged(
    ctx: &Context,
    read: &Namespace,
    annotations: serde_json::Value,
) -> Result<Option<Namespace>, ReconcileError> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let name = read.name_any();
    let pp = PatchParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut version = read.resource_version();
    for _ in 0..5 {
        let patch =
            json!({ "metadata": { "annotations": annotations, "resourceVersion": version } });
        match api.patch(&name, &pp, &Patch::Merge(patch)).await {
            Ok(ns) => return Ok(Some(ns)),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let Some(now) = api.get_metadata_opt(&name).await? else {
                    return Ok(None);
                };
                if basis(&now.metadata) != basis(&read.metadata) {
                    tracing::debug!(namespace = %name, "namespace changed since it was read; looking again");
                    return Ok(None);
                }
                version = now.resource_version();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Merge annotations into a namespace, unconditionally.
async fn patch_namespace(
    ctx: &Context,
    name: &str,
    annotations: serde_json::Value,
) -> Result<(), ReconcileError> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let pp = PatchParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(
        name,
        &pp,
        &Patch::Merge(json!({ "metadata": { "annotations": annotations } })),
    )
    .await?;
    Ok(())
}

async fn after_pass(ctx: &Context, name: &str, report: &scaler::Report, pass: Pass) {
    let m = metrics::get();
    for kind in metrics::namespaced::KINDS {
        let n = if pass == Pass::Sleep {
            report.asleep.get(kind).copied().unwrap_or(0)
        } else {
            0
        };
        m.namespace.replicas_asleep(name, kind, n);
    }
    m.namespace.workloads_without_requests(
        name,
        if pass == Pass::Sleep {
            report.without_requests
        } else {
            0
        },
    );
    for reference in &report.conflicts {
        m.namespace.conflict(name);
        let what = format!(
            "{}/{}",
            reference.kind.as_deref().unwrap_or("workload"),
            reference.name.as_deref().unwrap_or("")
        );
        let note = match pass {
            Pass::Sleep => format!(
                "{what} was scaled up by someone else while the namespace slept; Siesta lets that change win and leaves it alone until the namespace wakes"
            ),
            Pass::Wake => format!(
                "{what} was changed by someone else while the namespace slept; Siesta kept their change and dropped its record"
            ),
        };
        tracing::warn!(namespace = %name, workload = %what, "someone else changed a sleeping workload; their change wins");
        ctx.event(reference, EventType::Warning, "ChangedWhileAsleep", note)
            .await;
    }
    for (reference, value) in &report.unreadable {
        metrics::error("scale");
        let what = format!(
            "{}/{}",
            reference.kind.as_deref().unwrap_or("workload"),
            reference.name.as_deref().unwrap_or("")
        );
        tracing::error!(namespace = %name, workload = %what, value, "unreadable siesta.dev/original-* record; left for a person");
        ctx.event(
            reference,
            EventType::Warning,
            "UnreadableRecord",
            format!("the record {value:?} cannot be read; Siesta leaves this workload as it is"),
        )
        .await;
    }
}

pub fn error_policy(ns: Arc<Namespace>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = %ns.name_any(), %error, "reconcile failed; retrying");
    metrics::error("kube_api");
    Action::requeue(Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        ObjectMeta {
            labels: map(labels),
            annotations: map(annotations),
            resource_version: Some("1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn others_annotations_are_not_part_of_the_basis_of_a_decision() {
        let read = meta(&[("team", "a")], &[("siesta.dev/state", "asleep")]);
        let busy = meta(
            &[("team", "a")],
            &[("siesta.dev/state", "asleep"), ("argocd/sync", "42")],
        );
        assert_eq!(basis(&read), basis(&busy));
    }

    #[test]
    fn siesta_annotations_and_labels_are() {
        let read = meta(&[("team", "a")], &[("siesta.dev/state", "asleep")]);
        let moved_on = meta(&[("team", "a")], &[("siesta.dev/state", "waking")]);
        let asked = meta(
            &[("team", "a")],
            &[
                ("siesta.dev/state", "asleep"),
                ("siesta.dev/action", "wake"),
            ],
        );
        let relabelled = meta(&[("team", "b")], &[("siesta.dev/state", "asleep")]);
        for other in [moved_on, asked, relabelled] {
            assert_ne!(basis(&read), basis(&other));
        }
    }
}
