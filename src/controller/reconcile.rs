//! One namespace's reconcile: observe what it wants and what happened, run
//! [`decide`], turn the decision into a [`Plan`] (pure, [`crate::plan`]) and
//! carry its effects out, stopping at the first guard that fails. Called by
//! the kube-runtime controller, never twice at once for the same namespace.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use crate::activity::Reporter;
use crate::annotations::DELETE_AFTER;
use crate::annotations::{
    self, ACTION, LAST_ACTIVITY, OBSERVED, OBSERVED_REASON, OBSERVED_SAVED, OBSERVED_SINCE,
    OBSERVED_STATE, ObservedTotals, Overrides, REASON, Recorded, SAVED, STATE, STATE_SINCE, Saved,
    WAKE_GROUP,
};
use crate::config::AdminConfig;
use crate::controller::events::{Kind as EventType, Publisher};
use crate::controller::savings::{self, Savings};
use crate::decide::{self, Observed};
use crate::lifecycle;
use crate::metrics::namespaced::Account;
use crate::metrics::{ErrorKind, Metrics, ReconcileFailure};
use crate::model::{Source, State, format_instant};
use crate::plan::{self, Announcement, Effect, Facts, Next, Plan};
use crate::scaler::{self, Pass, WakeGroup};

/// How long a namespace may stay `waking` before it is declared awake anyway.
pub const WAKE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one wake group (`siesta.dev/wake-order`) is waited for before
/// the next one is restored anyway.
pub const WAKE_GROUP_TIMEOUT: Duration = Duration::from_secs(300);
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
/// How often a namespace waking after its `wake-with` targets looks at them
/// (their state changes do not trigger its reconcile).
const TARGETS_RECHECK: Duration = Duration::from_secs(2);
/// How long after a refused deletion (403: the delete-namespaces component
/// is not installed, or its admission policy said no) it is tried again.
const DELETION_RETRY: Duration = Duration::from_secs(300);
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub client: kube::Client,
    pub config: watch::Receiver<Arc<AdminConfig>>,
    pub reporter: Reporter,
    pub events: Publisher,
    pub metrics: Arc<Metrics>,
    /// When this process first saw each namespace opted in: the idle clock's
    /// floor, so a controller start never sleeps a namespace at once.
    pub first_seen: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The last annotation problems reported per namespace, so an Event is
    /// emitted once per distinct problem, not per reconcile.
    pub reported: Mutex<HashMap<String, String>>,
    pub savings: Savings,
    /// Observe mode's potential savings, accounted like `savings`.
    pub potential: Savings,
    /// Where this controller runs (its leader election and proxy Service
    /// namespaces): never deleted, like [`lifecycle::PROTECTED`].
    pub own_namespaces: Vec<String>,
    /// Namespaces whose deletion the API server refused (403), so the
    /// `DeletionRefused` Event is emitted once, not at every retry.
    pub refused: Mutex<std::collections::HashSet<String>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        config: watch::Receiver<Arc<AdminConfig>>,
        reporter: Reporter,
        events: Publisher,
    ) -> Context {
        Context {
            client,
            config,
            metrics: reporter.metrics().clone(),
            reporter,
            events,
            first_seen: Mutex::default(),
            reported: Mutex::default(),
            savings: Savings::default(),
            potential: Savings::default(),
            own_namespaces: Vec::new(),
            refused: Mutex::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
}

impl ReconcileError {
    /// The `kind` it is counted under in `siesta_reconcile_failures_total`.
    pub fn kind(&self) -> ReconcileFailure {
        match self {
            ReconcileError::Kube(kube::Error::Api(e)) => match e.code {
                403 => ReconcileFailure::Forbidden,
                404 => ReconcileFailure::NotFound,
                409 => ReconcileFailure::Conflict,
                429 => ReconcileFailure::Throttled,
                _ => ReconcileFailure::Api,
            },
            ReconcileError::Kube(_) => ReconcileFailure::Unreachable,
        }
    }
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
            self.metrics.error(ErrorKind::KubeApi);
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

/// Reconcile one namespace, counted in `siesta_reconciles_total` and timed in
/// `siesta_reconcile_duration_seconds`.
pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = observe_and_act(&ns, &ctx).await;
    ctx.metrics.reconciled(
        started.elapsed().as_secs_f64(),
        result.as_ref().err().map(ReconcileError::kind),
    );
    result
}

async fn observe_and_act(ns: &Namespace, ctx: &Context) -> Result<Action, ReconcileError> {
    let name = ns.name_any();
    let empty = BTreeMap::new();
    let ann = ns.metadata.annotations.as_ref().unwrap_or(&empty);
    let labels = ns.metadata.labels.as_ref().unwrap_or(&empty);
    let recorded = Recorded::parse(ann);
    let config = ctx.config.borrow().clone();
    let (own, errors) = Overrides::parse(ann);
    let mut problems: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let (mut policy, problem) = config.resolve(labels, &own);
    if let Some(p) = problem {
        problems.push(format!("annotation {}: {p}", annotations::SCHEDULE));
    }
    let wake_with = own.wake_with.clone().unwrap_or_default();
    if !wake_with.is_empty()
        && let Some(p) = plan::wake_with_problem(
            &name,
            &wake_with,
            &wake_graph(&ctx.client, &config, &wake_with).await?,
        )
    {
        problems.push(format!("annotation {}: {p}", annotations::WAKE_WITH));
    }
    let now = Utc::now();
    // Nobody pins a namespace awake for a year: beyond the admin's maximum,
    // keep-awake-until is brought back (and rewritten, with an Event).
    let limit = now
        + chrono::Duration::from_std(config.defaults.max_keep_awake)
            .unwrap_or(chrono::Duration::MAX);
    let clamp_keep_awake = policy
        .keep_awake_until
        .filter(|until| *until > limit)
        .map(|_| limit);
    if clamp_keep_awake.is_some() {
        policy.keep_awake_until = clamp_keep_awake;
    }
    // Observe mode decides on the would-be state. A namespace put in observe
    // mode while Siesta had it asleep is first woken for real, as opting out
    // would: observe mode never leaves workloads at zero.
    let observing = policy.observe && recorded.state == State::Awake;
    if policy.observe && !observing {
        policy.enabled = false;
    }
    let mut facts = Facts {
        problems: (!problems.is_empty()).then(|| problems.join("; ")),
        enabled: policy.enabled,
        managed: ann.contains_key(STATE),
        state: recorded.state,
        since: recorded.since,
        now,
        clamp_keep_awake,
        observing: recorded.observed_state.is_some(),
        targets_first: own.wake_with_order == Some(annotations::WakeWithOrder::Before)
            && !wake_with.is_empty(),
    };
    if observing {
        facts.state = recorded.observed_state.unwrap_or_default();
        facts.since = recorded.observed_since;
    }
    let reason = if observing {
        recorded.observed_reason
    } else {
        recorded.reason
    };
    let marked = recorded.abandoned_since;
    let mut exec = Executor::new(ctx, ns, recorded, &config, now);
    exec.wake_with = wake_with;
    let plan = match plan::before_deciding(&facts) {
        Some(plan) => plan,
        None => {
            let first_seen = *lock(&ctx.first_seen).entry(name.clone()).or_insert(now);
            let seen = ctx.reporter.seen(&name).unwrap_or_default();
            let observed = Observed {
                state: facts.state,
                since: facts.since,
                reason,
                action: own.action,
                last_api: seen.api,
                last_http: seen.http,
                first_seen,
            };
            let decision = decide::decide(&policy, &observed, now);
            tracing::debug!(namespace = %name, ?decision, "decided");
            for (source, t) in [(Source::Api, seen.api), (Source::Http, seen.http)] {
                if let Some(t) = t {
                    ctx.metrics
                        .namespace
                        .last_activity(&name, source, t.timestamp() as f64);
                }
            }
            if observing {
                plan::observe(&facts, &decision)
            } else {
                let mut plan = plan::plan(&facts, &decision);
                if decision.verdict == decide::Verdict::Keep {
                    let (effects, due) = lifecycle::lifecycle(&lifecycle::Lifecycle {
                        abandon_after: config.abandon_after(labels),
                        delete_after: config.delete_after(labels),
                        protected: lifecycle::protected(&name, &ctx.own_namespaces),
                        keep: own.keep == Some(true),
                        terminating: ns.metadata.deletion_timestamp.is_some(),
                        asleep_since: (facts.state == State::Asleep)
                            .then_some(facts.since)
                            .flatten(),
                        last_activity: observed.last_activity(),
                        marked,
                        scheduled: lifecycle::Scheduled::parse(
                            labels.get(DELETE_AFTER).map(String::as_str),
                        ),
                        now,
                    });
                    plan.effects.extend(effects);
                    plan.next = match (plan.next, due) {
                        (Next::At(a), Some(b)) => Next::At(a.min(b)),
                        (Next::AwaitChange, Some(b)) => Next::At(b),
                        (next, None) => next,
                    };
                }
                plan
            }
        }
    };
    exec.run(plan).await
}

/// The namespaces reachable through `siesta.dev/wake-with` from `targets`
/// (at most 64): whether each exists and opted in, and its own targets.
async fn wake_graph(
    client: &kube::Client,
    config: &AdminConfig,
    targets: &[String],
) -> Result<plan::WakeGraph, ReconcileError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut graph = plan::WakeGraph::new();
    let mut todo: Vec<String> = targets.to_vec();
    while let Some(n) = todo.pop() {
        if graph.contains_key(&n) || graph.len() >= 64 {
            continue;
        }
        let Some(meta) = api.get_metadata_opt(&n).await? else {
            graph.insert(n, None);
            continue;
        };
        let empty = BTreeMap::new();
        let (own, _) = Overrides::parse(meta.annotations());
        let (policy, _) = config.resolve(meta.metadata.labels.as_ref().unwrap_or(&empty), &own);
        let opted_in =
            (policy.enabled && !policy.observe) || meta.annotations().contains_key(STATE);
        let next = own.wake_with.unwrap_or_default();
        todo.extend(next.iter().cloned());
        graph.insert(n, Some((opted_in, next)));
    }
    Ok(graph)
}

/// Carries one plan out. Holds what the effects so far learned: the namespace
/// as last written, and the last pass's report.
struct Executor<'a> {
    ctx: &'a Context,
    name: String,
    /// The namespace as read, then as the transition wrote it.
    ns: Namespace,
    /// Its own Events live in the namespace, where its users look.
    ns_ref: ObjectReference,
    recorded: Recorded,
    config: &'a AdminConfig,
    report: scaler::Report,
    /// What a sleep pass would stop now (cores, bytes), in observe mode.
    potential_rate: (f64, f64),
    /// Who asked for `siesta.dev/action`, as the CLI wrote it.
    requested_by: Option<String>,
    /// `siesta.dev/wake-with`, checked.
    wake_with: Vec<String>,
    now: DateTime<Utc>,
}

impl<'a> Executor<'a> {
    fn new(
        ctx: &'a Context,
        ns: &Namespace,
        recorded: Recorded,
        config: &'a AdminConfig,
        now: DateTime<Utc>,
    ) -> Executor<'a> {
        let name = ns.name_any();
        let mut ns_ref = ns.object_ref(&());
        ns_ref.namespace = Some(name.clone());
        Executor {
            ctx,
            name,
            ns: ns.clone(),
            ns_ref,
            recorded,
            config,
            report: scaler::Report::default(),
            potential_rate: (0.0, 0.0),
            requested_by: ns
                .annotations()
                .get(annotations::REQUESTED_BY)
                .map(|u| annotations::truncate(u, annotations::MAX_DESCRIPTION)),
            wake_with: Vec::new(),
            now,
        }
    }

    async fn run(&mut self, plan: Plan) -> Result<Action, ReconcileError> {
        for effect in plan.effects {
            if let Some(done) = self.apply(effect).await? {
                return Ok(done);
            }
        }
        Ok(match plan.next {
            // a little late rather than early, so the deadline has passed when we look
            Next::At(t) => Action::requeue(decide::until(self.now, t) + Duration::from_millis(50)),
            Next::AwaitChange => Action::await_change(),
        })
    }

    /// An unguarded merge patch of this namespace's metadata. Later guards
    /// compare with the namespace as read plus this write, not with the
    /// server's answer, which would hide a change someone made meanwhile.
    async fn merge(&mut self, patch: serde_json::Value) -> Result<(), ReconcileError> {
        merge_namespace(&self.ctx.client, &self.name, patch.clone()).await?;
        if let Ok(mut doc) = serde_json::to_value(&self.ns) {
            merge_patch(&mut doc, &patch);
            if let Ok(ns) = serde_json::from_value(doc) {
                self.ns = ns;
            }
        }
        Ok(())
    }

    /// [`Executor::merge`] of `siesta.dev/` annotations (and their labels).
    async fn annotate(&mut self, annotations: serde_json::Value) -> Result<(), ReconcileError> {
        self.merge(metadata_patch(&annotations)).await
    }

    /// One effect; `Some` ends the plan there, with when to look again.
    async fn apply(&mut self, effect: Effect) -> Result<Option<Action>, ReconcileError> {
        let own_name = self.name.clone();
        let (ctx, name, now) = (self.ctx, own_name.as_str(), self.now);
        let m = &ctx.metrics;
        match effect {
            Effect::ReportProblems(text) => {
                let first = lock(&ctx.reported).insert(name.to_string(), text.clone())
                    != Some(text.clone());
                if first {
                    tracing::error!(namespace = %name, problems = %text, "invalid siesta annotations; namespace left as it is");
                    m.error(ErrorKind::BadAnnotation);
                    ctx.event(
                        &self.ns_ref,
                        EventType::Warning,
                        "InvalidAnnotation",
                        format!("{text}; nothing was changed"),
                    )
                    .await;
                }
            }
            Effect::ProblemsFixed => {
                lock(&ctx.reported).remove(name);
            }
            Effect::Forget => {
                lock(&ctx.first_seen).remove(name);
            }
            Effect::Transition { to, reason } => {
                let mut write = json!({
                    STATE: to.as_str(),
                    STATE_SINCE: crate::model::format_precise(now),
                    REASON: reason.as_str(),
                    LAST_ACTIVITY: self.activity(reason),
                    ACTION: null,
                    annotations::REQUESTED_BY: null,
                    annotations::ABANDONED_SINCE: null,
                    // A new transition starts its wake order from the beginning.
                    WAKE_GROUP: null,
                });
                // A wake writes the sleep's savings in the same request, so
                // the totals survive whatever happens to this process next.
                if to == State::Waking
                    && let Some(totals) = self.totals_of(Account::Saved)
                {
                    write[SAVED] = json!(
                        Saved {
                            cpu_rate: 0.0,
                            memory_rate: 0.0,
                            ..totals
                        }
                        .format()
                    );
                }
                let scheduled = self.ns.labels().contains_key(DELETE_AFTER);
                match patch_if_unchanged(&ctx.client, &self.ns, write).await? {
                    Some(written) => {
                        self.ns = written;
                        if self.recorded.abandoned_since.take().is_some() {
                            m.namespace.abandoned(name, false);
                        }
                        if scheduled {
                            let why = format!("the namespace is {} ({reason})", to.as_str());
                            self.deletion_cancelled(&why).await;
                        }
                    }
                    None => {
                        tracing::debug!(namespace = %name, "transition not written: the namespace changed since it was read");
                        return Ok(Some(Action::requeue(CONFLICT_RECHECK)));
                    }
                }
            }
            Effect::ClearAction => {
                let clear = json!({ ACTION: null, annotations::REQUESTED_BY: null });
                self.annotate(clear).await?;
            }
            Effect::StillAsRead => {
                if !still_as_read(&ctx.client, &self.ns).await? {
                    tracing::debug!(namespace = %name, "the namespace changed since it was read; looking again");
                    return Ok(Some(Action::requeue(CONFLICT_RECHECK)));
                }
            }
            Effect::CountSleep(reason) => m.namespace.slept(name, reason),
            Effect::CountWake(reason) => m.namespace.woke(name, reason),
            Effect::PublishState(state) => {
                m.namespace_state(name, state);
                // A restarted controller shows the mark and the deletion at once.
                if self.recorded.abandoned_since.is_some() && state == State::Asleep {
                    m.namespace.abandoned(name, true);
                    let label = self.ns.labels().get(DELETE_AFTER).map(String::as_str);
                    if let lifecycle::Scheduled::At(at) = lifecycle::Scheduled::parse(label) {
                        m.namespace.deletion_at(name, Some(at.timestamp()));
                    }
                }
                // Labels that lag their annotations (written before labels
                // were, or removed by someone) are brought in step.
                let meta = &self.ns.metadata;
                let lagging: serde_json::Map<String, serde_json::Value> = [STATE, REASON]
                    .into_iter()
                    .filter_map(|key| {
                        let want = meta.annotations.as_ref().and_then(|a| a.get(key));
                        let have = meta.labels.as_ref().and_then(|l| l.get(key));
                        (want.is_some() && want != have).then(|| (key.to_string(), json!(want)))
                    })
                    .collect();
                if !lagging.is_empty() {
                    let labels = json!({ "metadata": { "labels": lagging } });
                    self.merge(labels).await?;
                }
                // A restarted controller shows the totals at once, from the namespace.
                if ctx.savings.rate(name).is_none() {
                    self.publish(Account::Saved);
                }
            }
            Effect::Pass(pass) => {
                let ann = self.ns.annotations();
                let started = ann.get(WAKE_GROUP).and_then(|v| WakeGroup::parse(v));
                let waking_since = ann
                    .get(STATE_SINCE)
                    .and_then(|v| crate::model::parse_instant(v).ok())
                    .unwrap_or(now);
                let mut progress = crate::workloads::Progress {
                    started,
                    all_at_once: (now - waking_since).to_std().unwrap_or_default() >= WAKE_TIMEOUT,
                    group_timeout: WAKE_GROUP_TIMEOUT,
                    now,
                };
                self.report = crate::workloads::run(&ctx.client, name, pass, &mut progress).await?;
                // Which group is being woken, and since when, is recorded on
                // the namespace: a restarted controller waits for the same one.
                if pass == Pass::Wake
                    && progress.started != started
                    && let Some(group) = progress.started
                {
                    let write = json!({ WAKE_GROUP: group.format() });
                    if let Some(written) = patch_if_unchanged(&ctx.client, &self.ns, write).await? {
                        self.ns = written;
                    }
                }
                self.after_pass(pass).await;
            }
            Effect::SaveFrom(since) => {
                let rate = (self.report.cpu_cores, self.report.memory_bytes);
                self.accrue(Account::Saved, since, rate).await?;
            }
            Effect::StopSaving => self.stop_accruing(Account::Saved),
            Effect::ClampKeepAwake(to) => {
                let to = format_instant(to);
                self.annotate(json!({ annotations::KEEP_AWAKE_UNTIL: to }))
                    .await?;
                let max = crate::duration::format(self.config.defaults.max_keep_awake);
                ctx.event(
                    &self.ns_ref,
                    EventType::Warning,
                    "KeepAwakeClamped",
                    format!("{} is further ahead than the admin's maximum of {max}; kept awake until {to} instead", annotations::KEEP_AWAKE_UNTIL),
                )
                .await;
            }
            Effect::Announce(a) => {
                let changed: u32 = self.report.changed.values().sum();
                let activity = match a {
                    Announcement::Sleeping(r)
                    | Announcement::Waking(r)
                    | Announcement::WouldSleep(r) => self.activity(r),
                };
                let (reason, note) = match a {
                    Announcement::Sleeping(reason) => (
                        "Sleeping",
                        format!(
                            "asleep ({reason}): {changed} workload(s) scaled to zero or suspended{}; last activity: {activity}",
                            paused(&self.report.paused)
                        ),
                    ),
                    Announcement::Waking(reason) => (
                        "Waking",
                        format!("woken ({reason}) by {activity}: {changed} workload(s) restored"),
                    ),
                    Announcement::WouldSleep(reason) => {
                        let (cores, bytes) = self.potential_rate;
                        (
                            "WouldSleep",
                            format!(
                                "observe mode: would sleep now ({reason}), stopping pods that request {cores} CPU cores and {:.2} GiB of memory; last activity: {activity}; nothing was changed",
                                bytes / GIB
                            ),
                        )
                    }
                };
                ctx.event(&self.ns_ref, EventType::Normal, reason, note)
                    .await;
                tracing::info!(namespace = %name, ?a, changed, "namespace transition");
            }
            Effect::FinishWaking { since } => return self.finish_waking(since).await.map(Some),
            Effect::ObservedTransition { to, reason } => {
                let r = &self.recorded;
                let mut totals = r.observed.unwrap_or_else(|| ObservedTotals::zero(now));
                let mut write = json!({
                    OBSERVED_STATE: to.as_str(),
                    OBSERVED_SINCE: format_instant(now),
                    OBSERVED_REASON: reason.as_str(),
                    ACTION: null,
                    annotations::REQUESTED_BY: null,
                });
                if to == State::Asleep {
                    totals.sleeps += 1;
                } else {
                    totals.wakes += 1;
                    if r.observed_state == Some(State::Asleep) {
                        totals.asleep_seconds = totals.asleep_until(r.observed_since, now);
                    }
                    // The would-be sleep's potential savings, in the same request.
                    if let Some(p) = self.totals_of(Account::Potential) {
                        write[OBSERVED_SAVED] = json!(
                            Saved {
                                cpu_rate: 0.0,
                                memory_rate: 0.0,
                                ..p
                            }
                            .format()
                        );
                    }
                }
                write[OBSERVED] = json!(totals.format());
                match patch_if_unchanged(&ctx.client, &self.ns, write).await? {
                    Some(written) => self.ns = written,
                    None => {
                        tracing::debug!(namespace = %name, "observed transition not written: the namespace changed since it was read");
                        return Ok(Some(Action::requeue(CONFLICT_RECHECK)));
                    }
                }
                tracing::info!(namespace = %name, to = to.as_str(), %reason, "observe mode: would-be transition");
            }
            Effect::CountObservedSleep(reason) => m.namespace.observed_sleep(name, reason),
            Effect::CountObservedWake(trigger) => m.namespace.observed_wake(name, trigger),
            Effect::PublishObserved(state) => {
                m.namespace.observed_state(name, state);
                if ctx.potential.rate(name).is_none() {
                    self.publish(Account::Potential);
                }
            }
            Effect::PotentialFrom(since) => {
                let report = crate::workloads::potential(&ctx.client, name).await?;
                self.potential_rate = (report.cpu_cores, report.memory_bytes);
                self.accrue(Account::Potential, since, self.potential_rate)
                    .await?;
            }
            Effect::StopPotential => self.stop_accruing(Account::Potential),
            Effect::StopObserving => {
                self.annotate(
                    json!({ OBSERVED_STATE: null, OBSERVED_SINCE: null, OBSERVED_REASON: null }),
                )
                .await?;
                ctx.potential.stop(name);
                m.namespace.stop_observing(name);
                tracing::info!(namespace = %name, "left observe mode; its would-be totals stay on the namespace");
            }
            Effect::MarkAbandoned(at) => {
                let since = crate::model::format_precise(at);
                self.annotate(json!({ annotations::ABANDONED_SINCE: since }))
                    .await?;
                self.recorded.abandoned_since = Some(at);
                m.namespace.abandoned(name, true);
                tracing::warn!(namespace = %name, since, "asleep without counted activity for the policy's abandonAfter: marked abandoned");
                ctx.event(
                    &self.ns_ref,
                    EventType::Warning,
                    "Abandoned",
                    format!(
                        "asleep with no counted activity since {since} (the policy's abandonAfter): marked abandoned; any counted activity or {}: \"true\" clears the mark",
                        annotations::KEEP
                    ),
                )
                .await;
            }
            Effect::WakeWith => {
                let api: Api<Namespace> = Api::all(ctx.client.clone());
                for target in &self.wake_with {
                    let Some(t) = api.get_metadata_opt(target).await? else {
                        continue;
                    };
                    let state = Recorded::parse(t.annotations()).state;
                    if state == State::Asleep && !t.annotations().contains_key(ACTION) {
                        let wake = json!({ ACTION: "wake", annotations::REQUESTED_BY: format!("wake-with {name}") });
                        patch_namespace(&ctx.client, target, wake).await?;
                        tracing::info!(namespace = %name, target, "waking with it (siesta.dev/wake-with)");
                    }
                }
            }
            Effect::AwaitTargets { announce } => {
                let ann = self.ns.annotations();
                let since = ann
                    .get(STATE_SINCE)
                    .and_then(|v| crate::model::parse_instant(v).ok())
                    .unwrap_or(now);
                let started = ann.contains_key(WAKE_GROUP);
                let mut waiting_for = Vec::new();
                if !started {
                    let api: Api<Namespace> = Api::all(ctx.client.clone());
                    for target in &self.wake_with {
                        let Some(t) = api.get_metadata_opt(target).await? else {
                            continue;
                        };
                        // Never managed (no state): nothing to wait for.
                        let managed = t.annotations().contains_key(STATE);
                        if managed && Recorded::parse(t.annotations()).state != State::Awake {
                            waiting_for.push(target.clone());
                        }
                    }
                }
                let wait = plan::targets_first(&plan::TargetsFirst {
                    since,
                    started,
                    waiting_for,
                    timeout: WAKE_GROUP_TIMEOUT,
                    now,
                });
                match wait {
                    plan::TargetsWait::Go => {}
                    plan::TargetsWait::Wait(until) => {
                        tracing::debug!(namespace = %name, "waking: waiting for its wake-with namespaces first");
                        if announce {
                            ctx.event(
                                &self.ns_ref,
                                EventType::Normal,
                                "WaitingForWakeWith",
                                format!(
                                    "waking: its workloads are restored once {} {} awake ({}: before), at the latest at {}",
                                    self.wake_with.join(", "),
                                    if self.wake_with.len() == 1 { "is" } else { "are" },
                                    annotations::WAKE_WITH_ORDER,
                                    format_instant(until)
                                ),
                            )
                            .await;
                        }
                        let left = decide::until(now, until) + Duration::from_millis(50);
                        return Ok(Some(Action::requeue(left.min(TARGETS_RECHECK))));
                    }
                    plan::TargetsWait::TimedOut(late) => {
                        let late = late.join(", ");
                        tracing::warn!(namespace = %name, late, "wake-with namespaces not awake after the wake group timeout; restoring anyway");
                        ctx.event(
                            &self.ns_ref,
                            EventType::Warning,
                            "WakeWithTimeout",
                            format!(
                                "{late} not awake after {}s; restoring this namespace's workloads anyway",
                                WAKE_GROUP_TIMEOUT.as_secs()
                            ),
                        )
                        .await;
                    }
                }
            }
            Effect::ClearAbandoned => {
                // The deletion label goes in the same request (metadata_patch).
                self.annotate(json!({ annotations::ABANDONED_SINCE: null }))
                    .await?;
                self.recorded.abandoned_since = None;
                m.namespace.abandoned(name, false);
                tracing::info!(namespace = %name, "no longer abandoned");
            }
            Effect::ScheduleDeletion(at) => {
                if !still_as_read(&ctx.client, &self.ns).await? {
                    return Ok(Some(Action::requeue(CONFLICT_RECHECK)));
                }
                let value = lifecycle::format_scheduled(at);
                let labels = json!({ "metadata": { "labels": { DELETE_AFTER: value } } });
                self.merge(labels).await?;
                m.namespace.deletion_at(name, Some(at.timestamp()));
                let when = format_instant(at);
                let (policy, after) = self.deleting_policy();
                tracing::warn!(namespace = %name, at = when, policy, "abandoned: deletion scheduled (the policy's deleteAfter)");
                ctx.event(
                    &self.ns_ref,
                    EventType::Warning,
                    "DeletionScheduled",
                    format!(
                        "abandoned since {}: the policy {policy} (deleteAfter {after}) deletes this namespace at {when} (label {DELETE_AFTER}={value}); counted activity, a wake or {}: \"true\" before then cancels it",
                        self.recorded.abandoned_since.map_or_else(|| "-".into(), crate::model::format_precise),
                        annotations::KEEP
                    ),
                )
                .await;
            }
            Effect::CancelDeletion => {
                let labels = json!({ "metadata": { "labels": { DELETE_AFTER: null } } });
                self.merge(labels).await?;
                self.deletion_cancelled("no longer abandoned under a policy with deleteAfter")
                    .await;
            }
            Effect::Delete(at) => return self.delete(at).await.map(Some),
        }
        Ok(None)
    }

    /// The policy that deletes this namespace, and its `deleteAfter`, for
    /// the Events.
    fn deleting_policy(&self) -> (String, String) {
        let empty = BTreeMap::new();
        let labels = self.ns.metadata.labels.as_ref().unwrap_or(&empty);
        let policy = self.config.policy_for(labels);
        (
            policy.map_or_else(|| "-".into(), |p| p.name.clone()),
            policy
                .and_then(|p| p.delete_after)
                .map_or_else(|| "-".into(), crate::duration::format),
        )
    }

    /// The deletion label is gone (removed with the mark, or alone): say so.
    async fn deletion_cancelled(&self, why: &str) {
        let (ctx, name) = (self.ctx, self.name.as_str());
        ctx.metrics.namespace.deletion_at(name, None);
        lock(&ctx.refused).remove(name);
        tracing::info!(namespace = %name, why, "scheduled deletion cancelled");
        ctx.event(
            &self.ns_ref,
            EventType::Normal,
            "DeletionCancelled",
            format!("the scheduled deletion is cancelled: {why}"),
        )
        .await;
    }

    /// Delete the namespace whose grace period ended at `at`, if it still
    /// rests on what was read and still carries that label: a Warning Event
    /// `Deleting` first (also in `default`, about the Namespace, since the
    /// namespace's own Events go with it), then one request guarded by its
    /// uid and resourceVersion. A 403 (no delete-namespaces component, or its
    /// admission policy) leaves the namespace as it is: an error log, one
    /// Warning Event `DeletionRefused`, and another try later.
    async fn delete(&mut self, at: DateTime<Utc>) -> Result<Action, ReconcileError> {
        let (ctx, name) = (self.ctx, self.name.as_str());
        let m = &ctx.metrics;
        // The plan never asks for it; deleting cannot be undone, so look again.
        if lifecycle::protected(name, &ctx.own_namespaces) {
            return Ok(Action::await_change());
        }
        let api: Api<Namespace> = Api::all(ctx.client.clone());
        let value = lifecycle::format_scheduled(at);
        let Some(current) = api.get_metadata_opt(name).await? else {
            return Ok(Action::await_change());
        };
        if basis(&current.metadata) != basis(&self.ns.metadata)
            || current.labels().get(DELETE_AFTER) != Some(&value)
            || current.metadata.deletion_timestamp.is_some()
        {
            tracing::debug!(namespace = %name, "not deleted: the namespace changed since it was read");
            return Ok(Action::requeue(CONFLICT_RECHECK));
        }
        let since = self
            .recorded
            .abandoned_since
            .map_or_else(|| "-".into(), format_instant);
        let (policy, after) = self.deleting_policy();
        let retrying = lock(&ctx.refused).contains(name);
        if !retrying {
            let note = format!(
                "abandoned since {since}; the deletion announced for {} (policy {policy}, deleteAfter {after}) is due: deleting namespace {name}",
                format_instant(at)
            );
            ctx.event(&self.ns_ref, EventType::Warning, "Deleting", note.clone())
                .await;
            let mut cluster_scoped = self.ns_ref.clone();
            cluster_scoped.namespace = None;
            ctx.event(&cluster_scoped, EventType::Warning, "Deleting", note)
                .await;
        }
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: current.uid(),
                resource_version: current.resource_version(),
            }),
            ..Default::default()
        };
        let result = |r: &str| m.namespace_deletions.with_label_values(&[r]).inc();
        match api.delete(name, &params).await {
            Ok(_) => {
                result("deleted");
                lock(&ctx.refused).remove(name);
                m.namespace.deletion_at(name, None);
                tracing::warn!(namespace = %name, since, policy, "abandoned namespace deleted (the policy's deleteAfter)");
                Ok(Action::await_change())
            }
            Err(kube::Error::Api(e)) if e.code == 403 => {
                result("refused");
                tracing::error!(namespace = %name, error = %e.message, "cannot delete the abandoned namespace (403): install the delete-namespaces component to let Siesta delete; left as it is");
                if lock(&ctx.refused).insert(name.to_string()) {
                    ctx.event(
                        &self.ns_ref,
                        EventType::Warning,
                        "DeletionRefused",
                        format!(
                            "the API server refused to let Siesta delete this namespace ({}); it is left as it is. Siesta may delete namespaces only with the delete-namespaces component (Helm: controller.deleteNamespaces=true); tried again every {}s",
                            annotations::truncate(&e.message, 300),
                            DELETION_RETRY.as_secs()
                        ),
                    )
                    .await;
                }
                Ok(Action::requeue(DELETION_RETRY))
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Action::requeue(CONFLICT_RECHECK)),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
            Err(e) => Err(e.into()),
        }
    }

    /// The activity a transition for `reason` names: for a manual one, the
    /// user who asked (as the CLI wrote it), else the newest counted activity.
    fn activity(&self, reason: crate::model::Reason) -> String {
        match (&self.requested_by, reason) {
            (Some(user), crate::model::Reason::Manual) => {
                format!(
                    "{} manual {user} siesta.dev/action",
                    format_instant(self.now)
                )
            }
            _ => self.ctx.describe_activity(&self.name),
        }
    }

    /// The savings totals now, real or potential: this process's account,
    /// else the namespace's record.
    fn totals_of(&self, account: Account) -> Option<Saved> {
        let r = &self.recorded;
        let (savings, since, recorded) = match account {
            Account::Saved => (&self.ctx.savings, r.since, r.saved),
            Account::Potential => (
                &self.ctx.potential,
                (r.observed_state == Some(State::Asleep))
                    .then_some(r.observed_since)
                    .flatten(),
                r.observed_saved,
            ),
        };
        savings.totals(&self.name, since, recorded, self.now, &self.config.prices)
    }

    /// Savings of `account` accrue from `since` at `rate`; a new rate is
    /// checkpointed on the namespace (`siesta.dev/saved`, or
    /// `siesta.dev/observed-saved`) so every process computes the same totals.
    async fn accrue(
        &mut self,
        account: Account,
        since: DateTime<Utc>,
        rate: (f64, f64),
    ) -> Result<(), ReconcileError> {
        let (ctx, prices) = (self.ctx, &self.config.prices);
        let (savings, recorded, key) = match account {
            Account::Saved => (&ctx.savings, self.recorded.saved, SAVED),
            Account::Potential => (&ctx.potential, self.recorded.observed_saved, OBSERVED_SAVED),
        };
        if let Some(c) = savings.start(&self.name, since, rate, recorded, self.now, prices) {
            self.annotate(json!({ key: c.format() })).await?;
            match account {
                Account::Saved => self.recorded.saved = Some(c),
                Account::Potential => self.recorded.observed_saved = Some(c),
            }
        }
        self.publish(account);
        Ok(())
    }

    /// Savings of `account` stop accruing; the counters keep their totals.
    fn stop_accruing(&mut self, account: Account) {
        self.publish(account);
        match account {
            Account::Saved => self.ctx.savings.stop(&self.name),
            Account::Potential => self.ctx.potential.stop(&self.name),
        }
    }

    fn publish(&self, account: Account) {
        if let Some(totals) = self.totals_of(account) {
            savings::publish(
                &self.ctx.metrics,
                account,
                &self.name,
                &totals,
                &self.config.prices,
            );
        }
    }

    async fn finish_waking(&mut self, since: DateTime<Utc>) -> Result<Action, ReconcileError> {
        let (ctx, name) = (self.ctx, self.name.as_str());
        let now = Utc::now();
        let waited = (now - since).to_std().unwrap_or_default();
        let (not_ready, group) = (self.report.not_ready, self.report.wake_group);
        if (not_ready > 0 || group.is_some()) && waited < WAKE_TIMEOUT {
            tracing::debug!(namespace = %name, not_ready, group, "waking: restored workloads not all ready");
            return Ok(Action::requeue(WAKING_RECHECK));
        }
        let not_ready = not_ready + self.report.given_up;
        let write = json!({
            STATE: State::Awake.as_str(),
            STATE_SINCE: crate::model::format_precise(now),
            WAKE_GROUP: null,
        });
        if patch_if_unchanged(&ctx.client, &self.ns, write)
            .await?
            .is_none()
        {
            tracing::debug!(namespace = %name, "awake not written: the namespace changed since it was read");
            return Ok(Action::requeue(CONFLICT_RECHECK));
        }
        ctx.metrics
            .namespace
            .wake_duration(name, waited.as_secs_f64());
        ctx.metrics.namespace_state(name, State::Awake);
        let (type_, reason, note) = if not_ready > 0 {
            (
                EventType::Warning,
                "WakeTimeout",
                format!(
                    "{not_ready} workload(s) still not ready after {}s; marked awake anyway",
                    waited.as_secs()
                ),
            )
        } else {
            (
                EventType::Normal,
                "Awake",
                format!(
                    "every restored workload is ready after {:.1}s",
                    waited.as_secs_f64()
                ),
            )
        };
        ctx.event(&self.ns_ref, type_, reason, note).await;
        tracing::info!(namespace = %name, seconds = waited.as_secs_f64(), "namespace awake");
        Ok(Action::await_change())
    }

    async fn after_pass(&self, pass: Pass) {
        let (ctx, name, report) = (self.ctx, self.name.as_str(), &self.report);
        let m = &ctx.metrics;
        for kind in crate::metrics::namespaced::KINDS {
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
        for (reference, by) in &report.conflicts {
            m.namespace.conflict(name);
            let what = describe(reference);
            let argo = by.as_deref().is_some_and(crate::gitops::is_argo_cd);
            let who = by.as_deref().unwrap_or("someone else");
            let note = match pass {
                Pass::Sleep if argo => format!(
                    "{what} was scaled back up by Argo CD ({who}) while the namespace slept: Argo CD's self-heal undoes sleep. To let it sleep, {}. Siesta lets the change win and leaves it alone until the namespace wakes",
                    crate::gitops::ARGO_CD_FIX
                ),
                Pass::Sleep => format!(
                    "{what} was scaled up by {who} while the namespace slept; Siesta lets that change win and leaves it alone until the namespace wakes"
                ),
                Pass::Wake => format!(
                    "{what} was changed by someone else while the namespace slept; Siesta kept their change and dropped its record"
                ),
            };
            tracing::warn!(namespace = %name, workload = %what, "someone else changed a sleeping workload; their change wins");
            ctx.event(reference, EventType::Warning, "ChangedWhileAsleep", note)
                .await;
        }
        for (reference, value) in &report.bad_orders {
            let what = describe(reference);
            tracing::warn!(namespace = %name, workload = %what, value, "siesta.dev/wake-order is not an integer; the kind's default applies");
            ctx.event(
                reference,
                EventType::Warning,
                "InvalidAnnotation",
                format!(
                    "siesta.dev/wake-order {value:?} is not an integer; this {} wakes with the default order of its kind",
                    reference.kind.as_deref().unwrap_or("workload")
                ),
            )
            .await;
        }
        for (reference, value) in &report.unreadable {
            m.error(ErrorKind::Scale);
            let what = describe(reference);
            tracing::error!(namespace = %name, workload = %what, value, "unreadable siesta.dev/original-* record; left for a person");
            ctx.event(
                reference,
                EventType::Warning,
                "UnreadableRecord",
                format!(
                    "the record {value:?} cannot be read; Siesta leaves this workload as it is"
                ),
            )
            .await;
        }
    }
}

/// `, GitOps paused on 2 (Flux Kustomization flux-system/apps)`, or nothing.
fn paused(by_agent: &BTreeMap<String, u32>) -> String {
    if by_agent.is_empty() {
        return String::new();
    }
    let n: u32 = by_agent.values().sum();
    let agents: Vec<&str> = by_agent.keys().map(String::as_str).collect();
    format!(
        ", GitOps reconcile paused on {n} until the wake ({})",
        agents.join(", ")
    )
}

fn describe(reference: &ObjectReference) -> String {
    format!(
        "{}/{}",
        reference.kind.as_deref().unwrap_or("workload"),
        reference.name.as_deref().unwrap_or("")
    )
}

/// What a decision about a namespace rests on: its labels (admin policies
/// select by them) and its `siesta.dev/` annotations. Others' annotations are
/// not part of it, so a busy labeller or GitOps agent never blocks a
/// transition; nor are Siesta's own labels, which only mirror its annotations.
type Basis<'a> = (Vec<(&'a String, &'a String)>, Vec<(&'a String, &'a String)>);

fn basis(meta: &ObjectMeta) -> Basis<'_> {
    let labels = meta
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with(annotations::PREFIX))
        .collect();
    let ours = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(annotations::PREFIX))
        .collect();
    (labels, ours)
}

/// Whether the namespace still rests on what this reconcile read.
async fn still_as_read(client: &kube::Client, ns: &Namespace) -> Result<bool, ReconcileError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let now = api.get_metadata_opt(&ns.name_any()).await?;
    Ok(now.is_some_and(|n| basis(&n.metadata) == basis(&ns.metadata)))
}

/// Merge annotations into a namespace if its basis is still as read: guarded
/// by resourceVersion, and on a conflict read again and retry only when the
/// change was someone else's annotation. None when the basis changed.
async fn patch_if_unchanged(
    client: &kube::Client,
    read: &Namespace,
    annotations: serde_json::Value,
) -> Result<Option<Namespace>, ReconcileError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let name = read.name_any();
    let pp = PatchParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut version = read.resource_version();
    for _ in 0..5 {
        let mut patch = metadata_patch(&annotations);
        patch["metadata"]["resourceVersion"] = json!(version);
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
    client: &kube::Client,
    name: &str,
    annotations: serde_json::Value,
) -> Result<(), ReconcileError> {
    merge_namespace(client, name, metadata_patch(&annotations)).await
}

/// One merge patch of a namespace, as Siesta's field manager.
async fn merge_namespace(
    client: &kube::Client,
    name: &str,
    patch: serde_json::Value,
) -> Result<(), ReconcileError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let pp = PatchParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(name, &pp, &Patch::Merge(patch)).await?;
    Ok(())
}

/// RFC 7386 merge patch of a JSON document.
pub(super) fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(Default::default());
    }
    if let serde_json::Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
    }
}

/// The merge patch for a namespace's `siesta.dev/` annotations. State and
/// reason are written as labels too, in the same request, so
/// `kubectl get ns -L siesta.dev/state` shows them and `-l siesta.dev/state=asleep`
/// selects by them; the annotations stay the record.
fn metadata_patch(annotations: &serde_json::Value) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    for key in [STATE, REASON] {
        if let Some(value) = annotations.get(key) {
            labels.insert(key.to_string(), value.clone());
        }
    }
    // The deletion label never outlives the abandoned mark.
    if annotations
        .get(annotations::ABANDONED_SINCE)
        .is_some_and(serde_json::Value::is_null)
    {
        labels.insert(DELETE_AFTER.to_string(), serde_json::Value::Null);
    }
    let mut patch = json!({ "metadata": { "annotations": annotations } });
    if !labels.is_empty() {
        patch["metadata"]["labels"] = labels.into();
    }
    patch
}

pub fn error_policy(ns: Arc<Namespace>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    tracing::warn!(namespace = %ns.name_any(), %error, "reconcile failed; retrying");
    ctx.metrics.error(ErrorKind::KubeApi);
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
        let mirrored = meta(
            &[("team", "a"), ("siesta.dev/state", "asleep")],
            &[("siesta.dev/state", "asleep")],
        );
        assert_eq!(basis(&read), basis(&mirrored));
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
