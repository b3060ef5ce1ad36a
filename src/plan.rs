//! What to do about one namespace, as data: the decision of [`crate::decide`]
//! and what the controller recorded go in, an ordered list of effects comes
//! out. Pure, like `decide`: the controller's executor
//! (`controller::reconcile`) carries the effects out against the API server,
//! stopping at the first guard that fails.
//!
//! Each verdict has one plan, so the order of writes is written down once:
//! a transition is recorded on the namespace before any workload changes
//! (so a controller killed in between finds the new state and finishes the
//! pass), counters move only after that write succeeded, and the Event comes
//! last, saying what the pass did.
use chrono::{DateTime, Utc};

use crate::decide::{Decision, Verdict};
use crate::model::{Reason, State};
use crate::scaler::Pass;

/// One thing the executor does, in plan order.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Invalid annotations: log, count and emit a Warning Event (once per
    /// distinct text, which the executor remembers), and change nothing.
    ReportProblems(String),
    /// The namespace is valid again: forget the problems reported before.
    ProblemsFixed,
    /// Not opted in and never managed: forget when it was first seen.
    Forget,
    /// Write the new state, its start, the reason and the last activity, and
    /// remove `siesta.dev/action`, only if the namespace still rests on what
    /// was read. Guard: the rest of the plan runs only if it was written.
    Transition {
        to: State,
        reason: Reason,
    },
    /// Remove `siesta.dev/action` (it had nothing to do).
    ClearAction,
    /// Guard: the rest runs only if the namespace still rests on what was read
    /// (a replica whose copy is behind looks again instead of acting on it).
    StillAsRead,
    /// Count the transition (`siesta_sleeps_total`, `siesta_wakes_total`).
    CountSleep(Reason),
    CountWake(Reason),
    /// Publish the state gauges.
    PublishState(State),
    /// Run a scaler pass over every managed workload and publish what it left
    /// (replicas asleep, conflicts and unreadable records as Events).
    Pass(Pass),
    /// Savings accrue from `since` at the rate the last pass found.
    SaveFrom(DateTime<Utc>),
    /// Savings stop accruing; the totals are written on the namespace.
    StopSaving,
    /// `keep-awake-until` lay beyond the admin's `maxKeepAwake`: write this
    /// instant instead and say so in a Warning Event.
    ClampKeepAwake(DateTime<Utc>),
    /// The Normal Event of a transition, with what the pass changed.
    Announce(Announcement),
    /// A wake that began at `since`: once every restored workload is ready
    /// (or the wake timeout passed), write `awake`; else look again later.
    /// Decides when to look again, in place of [`Plan::next`].
    FinishWaking {
        since: DateTime<Utc>,
    },
    /// Observe mode: write the would-be state, its start and reason, the
    /// would-be totals (and remove `siesta.dev/action`), only if the
    /// namespace still rests on what was read. Nothing touches a workload.
    /// Guard like [`Effect::Transition`].
    ObservedTransition {
        to: State,
        reason: Reason,
    },
    /// Count a would-be transition (`siesta_observed_sleeps_total`,
    /// `siesta_observed_wakes_total`).
    CountObservedSleep(Reason),
    CountObservedWake(Reason),
    /// Publish `siesta_observed_asleep`.
    PublishObserved(State),
    /// Potential savings accrue from `since` at the rate of what a sleep pass
    /// would scale to zero now (read, not changed).
    PotentialFrom(DateTime<Utc>),
    /// Potential savings stop accruing.
    StopPotential,
    /// The namespace left observe mode: remove the would-be state (the
    /// would-be totals stay, for `siesta report`) and its gauge.
    StopObserving,
    /// Asleep without counted activity for the policy's `abandonAfter`:
    /// write `siesta.dev/abandoned-since`, a Warning Event `Abandoned`, the
    /// gauge at 1.
    MarkAbandoned(DateTime<Utc>),
    /// Activity or `siesta.dev/keep` since: remove the mark, the gauge at 0.
    ClearAbandoned,
    /// Abandoned under a policy with `deleteAfter`: the grace period starts.
    /// Write the label `siesta.dev/delete-after` (this instant), a Warning
    /// Event `DeletionScheduled` naming it, the deletion gauge.
    ScheduleDeletion(DateTime<Utc>),
    /// The deletion no longer applies (the mark cleared, `keep`, a policy
    /// that no longer deletes): remove the label, a Normal Event
    /// `DeletionCancelled`.
    CancelDeletion,
    /// The grace period that ends at this instant is over: if the namespace
    /// still rests on what was read and still carries this label, a Warning
    /// Event `Deleting`, then delete it (guarded by its uid and
    /// resourceVersion). Refused (403, no delete-namespaces component): a
    /// Warning Event `DeletionRefused`, and the namespace stays as it is.
    Delete(DateTime<Utc>),
    /// Wake the namespaces of `siesta.dev/wake-with` that are asleep (a
    /// `siesta.dev/action: wake` on each); again while waking, so a restart
    /// between the transition and these writes loses none.
    WakeWith,
    /// `siesta.dev/wake-with-order: before`: guard, the rest of the plan (the
    /// wake pass) runs only once [`targets_first`] says so; else look again
    /// soon. `announce`: the wake was decided in this pass, so a first wait
    /// is said in a Normal Event `WaitingForWakeWith`.
    AwaitTargets {
        announce: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announcement {
    Sleeping(Reason),
    Waking(Reason),
    /// Observe mode's Normal Event `WouldSleep`, once per would-be sleep.
    WouldSleep(Reason),
}

/// When to look at the namespace again if the plan runs to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// At this instant (a deadline of the decision).
    At(DateTime<Utc>),
    /// Only when something changes.
    AwaitChange,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub effects: Vec<Effect>,
    pub next: Next,
}

/// What the plan rests on besides the decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// Malformed annotations, joined; a namespace with any is left alone.
    pub problems: Option<String>,
    /// The policy in force opts the namespace in.
    pub enabled: bool,
    /// Siesta has written a state on it before (it has series and records).
    pub managed: bool,
    /// The state and its start as recorded.
    pub state: State,
    pub since: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    /// `keep-awake-until` brought back to the admin's maximum, when it lay beyond.
    pub clamp_keep_awake: Option<DateTime<Utc>>,
    /// Observe mode has a would-be state on it (`siesta.dev/observed-state`).
    pub observing: bool,
    /// `siesta.dev/wake-with-order: before`, with targets to wait for.
    pub targets_first: bool,
}

impl Plan {
    fn with(effects: Vec<Effect>, next: Next) -> Plan {
        Plan { effects, next }
    }
}

fn next(at: Option<DateTime<Utc>>) -> Next {
    at.map_or(Next::AwaitChange, Next::At)
}

/// The plan before a decision is possible: bad input, or nothing to manage.
/// `None` when the namespace should be decided on.
pub fn before_deciding(facts: &Facts) -> Option<Plan> {
    if let Some(text) = &facts.problems {
        return Some(Plan::with(
            vec![Effect::ReportProblems(text.clone())],
            Next::AwaitChange,
        ));
    }
    if !facts.enabled && !facts.managed {
        let mut effects = vec![Effect::ProblemsFixed, Effect::Forget];
        if facts.observing {
            effects.push(Effect::StopObserving);
        }
        return Some(Plan::with(effects, Next::AwaitChange));
    }
    None
}

/// What a namespace's `siesta.dev/wake-with` targets look like: for each
/// namespace reached, whether it exists and opted in, and its own targets.
pub type WakeGraph = std::collections::BTreeMap<String, Option<(bool, Vec<String>)>>;

/// Why `me`'s `wake-with` cannot be followed, if it cannot: a target that
/// does not exist or did not opt in, or a cycle back to a namespace already
/// on the path.
pub fn wake_with_problem(me: &str, targets: &[String], graph: &WakeGraph) -> Option<String> {
    fn walk(
        at: &str,
        targets: &[String],
        graph: &WakeGraph,
        path: &mut Vec<String>,
    ) -> Option<String> {
        for t in targets {
            if path.iter().any(|p| p == t) {
                path.push(t.clone());
                return Some(format!("a cycle: {}", path.join(" -> ")));
            }
            match graph.get(t) {
                None | Some(None) => {
                    return Some(format!("{at} names {t:?}, which does not exist"));
                }
                Some(Some((false, _))) => {
                    return Some(format!("{at} names {t:?}, which has not opted in"));
                }
                Some(Some((true, next))) => {
                    path.push(t.clone());
                    if let Some(p) = walk(t, next, graph, path) {
                        return Some(p);
                    }
                    path.pop();
                }
            }
        }
        None
    }
    walk(me, targets, graph, &mut vec![me.to_string()])
}

/// What waiting for the namespaces of `wake-with` rests on
/// (`siesta.dev/wake-with-order: before`), all of it recorded in annotations,
/// so a restarted controller goes on where the last one was.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetsFirst {
    /// When the wake began (`siesta.dev/state-since` of `waking`).
    pub since: DateTime<Utc>,
    /// This namespace's own restore has begun (`siesta.dev/wake-group`):
    /// never held back again.
    pub started: bool,
    /// The targets not awake yet.
    pub waiting_for: Vec<String>,
    /// How long they are waited for, as one wake-order group.
    pub timeout: std::time::Duration,
    pub now: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetsWait {
    /// Restore this namespace's workloads now.
    Go,
    /// Not yet; give up waiting at this instant.
    Wait(DateTime<Utc>),
    /// Waited the whole timeout for these: restore anyway, and say so.
    TimedOut(Vec<String>),
}

/// Whether a namespace waking after its `wake-with` targets may restore its
/// own workloads.
pub fn targets_first(t: &TargetsFirst) -> TargetsWait {
    if t.started || t.waiting_for.is_empty() {
        return TargetsWait::Go;
    }
    let until = chrono::Duration::from_std(t.timeout)
        .ok()
        .and_then(|d| t.since.checked_add_signed(d))
        .unwrap_or(t.since);
    if t.now >= until {
        TargetsWait::TimedOut(t.waiting_for.clone())
    } else {
        TargetsWait::Wait(until)
    }
}

/// The plan for a decision in observe mode, where `facts.state` and
/// `facts.since` are the would-be state's: the same verdicts as [`plan`], but
/// only recorded, counted and announced. A would-be wake goes straight to
/// awake: nothing was scaled, so there is nothing to wait for.
pub fn observe(facts: &Facts, decision: &Decision) -> Plan {
    use Effect::*;
    let (now, observed) = (facts.now, facts.state);
    let mut effects = vec![ProblemsFixed];
    effects.extend(facts.clamp_keep_awake.map(ClampKeepAwake));
    let next = next(decision.next_check);
    match decision.verdict {
        Verdict::Sleep(reason) => effects.extend([
            ObservedTransition {
                to: State::Asleep,
                reason,
            },
            CountObservedSleep(reason),
            PublishObserved(State::Asleep),
            PotentialFrom(now),
            Announce(Announcement::WouldSleep(reason)),
        ]),
        Verdict::Wake(reason) => effects.extend([
            ObservedTransition {
                to: State::Awake,
                reason,
            },
            CountObservedWake(reason),
            PublishObserved(State::Awake),
            StopPotential,
        ]),
        Verdict::Keep => {
            if decision.clear_action {
                effects.push(ClearAction);
            }
            if facts.observing {
                effects.push(PublishObserved(observed));
            }
            if observed == State::Asleep {
                effects.extend([StillAsRead, PotentialFrom(facts.since.unwrap_or(now))]);
            }
        }
    }
    Plan::with(effects, next)
}

/// The plan for a decision.
pub fn plan(facts: &Facts, decision: &Decision) -> Plan {
    use Effect::*;
    let now = facts.now;
    let mut effects = vec![ProblemsFixed];
    if facts.observing {
        effects.push(StopObserving);
    }
    effects.extend(facts.clamp_keep_awake.map(ClampKeepAwake));
    match decision.verdict {
        Verdict::Sleep(reason) => {
            effects.extend([
                Transition {
                    to: State::Asleep,
                    reason,
                },
                CountSleep(reason),
                PublishState(State::Asleep),
                Pass(crate::scaler::Pass::Sleep),
                SaveFrom(now),
                Announce(Announcement::Sleeping(reason)),
            ]);
            Plan::with(effects, next(decision.next_check))
        }
        Verdict::Wake(reason) => {
            effects.extend([
                Transition {
                    to: State::Waking,
                    reason,
                },
                CountWake(reason),
                PublishState(State::Waking),
                WakeWith,
                StopSaving,
            ]);
            if facts.targets_first {
                effects.push(AwaitTargets { announce: true });
            }
            effects.extend([
                Pass(crate::scaler::Pass::Wake),
                Announce(Announcement::Waking(reason)),
                FinishWaking { since: now },
            ]);
            Plan::with(effects, Next::AwaitChange)
        }
        Verdict::Keep => {
            if decision.clear_action {
                effects.push(ClearAction);
            }
            // Series only for namespaces Siesta has acted on: 10,000 awake
            // namespaces cost nothing.
            if facts.managed {
                effects.push(PublishState(facts.state));
            }
            let since = facts.since.unwrap_or(now);
            match facts.state {
                // Keep the promise "asleep means every managed workload at
                // zero": workloads created meanwhile go to sleep too, and
                // someone else's scale-up is released.
                State::Asleep => effects.extend([
                    StillAsRead,
                    Pass(crate::scaler::Pass::Sleep),
                    SaveFrom(since),
                ]),
                State::Waking => {
                    effects.extend([StillAsRead, WakeWith]);
                    if facts.targets_first {
                        effects.push(AwaitTargets { announce: false });
                    }
                    effects.extend([Pass(crate::scaler::Pass::Wake), FinishWaking { since }]);
                }
                State::Awake => {}
            }
            Plan::with(effects, next(decision.next_check))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Effect::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::model::parse_instant(s).expect("test instant")
    }

    fn facts(state: State) -> Facts {
        Facts {
            problems: None,
            enabled: true,
            managed: state != State::Awake,
            state,
            since: Some(t("2026-12-01T00:00:00Z")),
            now: t("2026-12-02T12:00:00Z"),
            clamp_keep_awake: None,
            observing: false,
            targets_first: false,
        }
    }

    fn decision(verdict: Verdict, next_check: Option<&str>) -> Decision {
        Decision {
            verdict,
            clear_action: false,
            next_check: next_check.map(t),
        }
    }

    fn position(plan: &Plan, wanted: impl Fn(&Effect) -> bool) -> usize {
        plan.effects
            .iter()
            .position(wanted)
            .expect("the effect is planned")
    }

    #[test]
    fn bad_input_is_reported_and_nothing_else_is_planned() {
        let f = Facts {
            problems: Some("annotation siesta.dev/idle-after: \"soon\"".into()),
            ..facts(State::Asleep)
        };
        let p = before_deciding(&f).expect("a plan without deciding");
        assert_eq!(p.effects, vec![ReportProblems(f.problems.unwrap())]);
        assert_eq!(p.next, Next::AwaitChange);
    }

    #[test]
    fn a_namespace_never_opted_in_is_only_forgotten() {
        let f = Facts {
            enabled: false,
            managed: false,
            ..facts(State::Awake)
        };
        let p = before_deciding(&f).expect("nothing to decide");
        assert_eq!(p.effects, vec![ProblemsFixed, Forget]);
        // Opted out but still managed: decided on (it may need a wake).
        let managed = Facts {
            enabled: false,
            ..facts(State::Asleep)
        };
        assert_eq!(before_deciding(&managed), None);
    }

    #[test]
    fn sleep_records_the_state_before_any_workload_changes_and_counts_after() {
        let p = plan(
            &facts(State::Awake),
            &decision(Verdict::Sleep(Reason::Idle), None),
        );
        let written = position(&p, |e| {
            matches!(
                e,
                Transition {
                    to: State::Asleep,
                    ..
                }
            )
        });
        let pass = position(&p, |e| *e == Pass(crate::scaler::Pass::Sleep));
        let counted = position(&p, |e| *e == CountSleep(Reason::Idle));
        let announced = position(&p, |e| matches!(e, Announce(_)));
        assert!(written < counted && written < pass && pass < announced);
        assert!(p.effects.contains(&SaveFrom(facts(State::Awake).now)));
    }

    #[test]
    fn wake_stops_saving_before_restoring_and_waits_for_readiness() {
        let f = facts(State::Asleep);
        let p = plan(&f, &decision(Verdict::Wake(Reason::Http), None));
        let written = position(&p, |e| {
            matches!(
                e,
                Transition {
                    to: State::Waking,
                    ..
                }
            )
        });
        let stop = position(&p, |e| *e == StopSaving);
        let pass = position(&p, |e| *e == Pass(crate::scaler::Pass::Wake));
        assert!(written < stop && stop < pass);
        assert_eq!(p.effects.last(), Some(&FinishWaking { since: f.now }));
    }

    #[test]
    fn keeping_an_asleep_namespace_re_checks_and_keeps_the_sleep_start() {
        let f = facts(State::Asleep);
        let p = plan(&f, &decision(Verdict::Keep, Some("2026-12-03T07:00:00Z")));
        let guard = position(&p, |e| *e == StillAsRead);
        let pass = position(&p, |e| *e == Pass(crate::scaler::Pass::Sleep));
        assert!(guard < pass);
        assert!(p.effects.contains(&SaveFrom(f.since.unwrap())));
        assert!(!p.effects.iter().any(|e| matches!(e, Transition { .. })));
        assert_eq!(p.next, Next::At(t("2026-12-03T07:00:00Z")));
    }

    #[test]
    fn keeping_a_waking_namespace_finishes_the_wake_it_began() {
        let f = facts(State::Waking);
        let p = plan(&f, &decision(Verdict::Keep, None));
        assert_eq!(
            p.effects.last(),
            Some(&FinishWaking {
                since: f.since.unwrap()
            })
        );
    }

    #[test]
    fn a_keep_awake_beyond_the_maximum_is_brought_back_first() {
        let f = Facts {
            clamp_keep_awake: Some(t("2026-12-03T12:00:00Z")),
            ..facts(State::Awake)
        };
        let p = plan(&f, &decision(Verdict::Keep, None));
        assert_eq!(p.effects[1], ClampKeepAwake(t("2026-12-03T12:00:00Z")));
    }

    #[test]
    fn an_awake_namespace_unmanaged_gets_no_series_and_no_pass() {
        let mut d = decision(Verdict::Keep, Some("2026-12-02T12:30:00Z"));
        d.clear_action = true;
        let p = plan(&facts(State::Awake), &d);
        assert_eq!(p.effects, vec![ProblemsFixed, ClearAction]);
        assert_eq!(p.next, Next::At(t("2026-12-02T12:30:00Z")));
    }

    /// Observe mode, where `since` is the would-be state's start.
    fn observing(observed: State) -> Facts {
        Facts {
            observing: true,
            ..facts(observed)
        }
    }

    fn touches_workloads(p: &Plan) -> bool {
        p.effects.iter().any(|e| {
            matches!(
                e,
                Pass(_) | Transition { .. } | SaveFrom(_) | CountSleep(_) | CountWake(_)
            )
        })
    }

    #[test]
    fn observe_mode_records_counts_and_announces_a_would_be_sleep_but_touches_nothing() {
        let f = observing(State::Awake);
        let p = observe(&f, &decision(Verdict::Sleep(Reason::Idle), None));
        assert!(!touches_workloads(&p), "{p:?}");
        let written = position(&p, |e| {
            matches!(
                e,
                ObservedTransition {
                    to: State::Asleep,
                    ..
                }
            )
        });
        let counted = position(&p, |e| *e == CountObservedSleep(Reason::Idle));
        let potential = position(&p, |e| *e == PotentialFrom(f.now));
        let announced = position(&p, |e| {
            *e == Announce(Announcement::WouldSleep(Reason::Idle))
        });
        assert!(written < counted && counted < potential && potential < announced);
    }

    #[test]
    fn observe_mode_counts_a_would_be_wake_and_goes_straight_to_awake() {
        let f = observing(State::Asleep);
        let p = observe(&f, &decision(Verdict::Wake(Reason::Http), None));
        assert!(!touches_workloads(&p), "{p:?}");
        assert!(p.effects.contains(&ObservedTransition {
            to: State::Awake,
            reason: Reason::Http
        }));
        assert!(p.effects.contains(&CountObservedWake(Reason::Http)));
        assert!(p.effects.contains(&StopPotential));
        assert!(
            !p.effects
                .iter()
                .any(|e| matches!(e, Announce(_) | FinishWaking { .. }))
        );
    }

    #[test]
    fn observe_mode_keeps_potential_savings_from_the_would_be_sleeps_start() {
        let f = observing(State::Asleep);
        let p = observe(&f, &decision(Verdict::Keep, None));
        assert!(!touches_workloads(&p), "{p:?}");
        let guard = position(&p, |e| *e == StillAsRead);
        let potential = position(&p, |e| *e == PotentialFrom(f.since.unwrap()));
        assert!(guard < potential);
        assert!(p.effects.contains(&PublishObserved(State::Asleep)));
    }

    #[test]
    fn leaving_observe_mode_removes_the_would_be_state_first() {
        let f = observing(State::Awake);
        let p = plan(&f, &decision(Verdict::Sleep(Reason::Idle), None));
        assert_eq!(p.effects[1], StopObserving);
        let off = Facts {
            enabled: false,
            ..f
        };
        let p = before_deciding(&off).expect("nothing to decide");
        assert!(p.effects.contains(&StopObserving));
    }

    #[test]
    fn waking_after_the_targets_holds_the_wake_pass_back_behind_a_guard() {
        let wake = Pass(crate::scaler::Pass::Wake);
        for (f, verdict, announce) in [
            (facts(State::Asleep), Verdict::Wake(Reason::Http), true),
            (facts(State::Waking), Verdict::Keep, false),
        ] {
            let before = Facts {
                targets_first: true,
                ..f.clone()
            };
            let p = plan(&before, &decision(verdict, None));
            let guard = position(&p, |e| *e == AwaitTargets { announce });
            let targets = position(&p, |e| *e == WakeWith);
            assert!(
                targets < guard && guard < position(&p, |e| *e == wake),
                "{p:?}"
            );
            // Together (the default): no guard.
            let p = plan(&f, &decision(verdict, None));
            assert!(!p.effects.iter().any(|e| matches!(e, AwaitTargets { .. })));
        }
    }

    #[test]
    fn targets_are_waited_for_up_to_the_group_timeout_and_never_once_the_restore_began() {
        let since = t("2026-12-02T12:00:00Z");
        let wait = |now: &str, waiting: &[&str], started: bool| {
            targets_first(&TargetsFirst {
                since,
                started,
                waiting_for: waiting.iter().map(|s| s.to_string()).collect(),
                timeout: std::time::Duration::from_secs(300),
                now: t(now),
            })
        };
        let until = t("2026-12-02T12:05:00Z");
        assert_eq!(
            wait("2026-12-02T12:00:00Z", &["db"], false),
            TargetsWait::Wait(until)
        );
        assert_eq!(
            wait("2026-12-02T12:04:59Z", &["db"], false),
            TargetsWait::Wait(until)
        );
        assert_eq!(
            wait("2026-12-02T12:05:00Z", &["db"], false),
            TargetsWait::TimedOut(vec!["db".into()])
        );
        assert_eq!(wait("2026-12-02T12:01:00Z", &[], false), TargetsWait::Go);
        // A restarted controller that finds the restore begun goes on with it.
        assert_eq!(wait("2026-12-02T12:01:00Z", &["db"], true), TargetsWait::Go);
    }

    #[test]
    fn wake_with_follows_opted_in_targets_and_refuses_cycles_and_strangers() {
        let v = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut g = WakeGraph::new();
        g.insert("db".into(), Some((true, v(&["cache"]))));
        g.insert("cache".into(), Some((true, vec![])));
        g.insert("other".into(), Some((false, vec![])));
        g.insert("gone".into(), None);
        assert_eq!(wake_with_problem("app", &v(&["db", "cache"]), &g), None);
        let p = wake_with_problem("app", &v(&["other"]), &g).unwrap();
        assert!(p.contains("not opted in"), "{p}");
        let p = wake_with_problem("app", &v(&["gone"]), &g).unwrap();
        assert!(p.contains("does not exist"), "{p}");
        g.insert("cache".into(), Some((true, v(&["app"]))));
        let p = wake_with_problem("app", &v(&["db"]), &g).unwrap();
        assert_eq!(p, "a cycle: app -> db -> cache -> app");
    }
}
