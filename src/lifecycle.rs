//! Namespaces nobody uses any more, as data: when an asleep namespace is
//! marked abandoned (its policy's `abandonAfter`), when its deletion is
//! announced and carried out (`deleteAfter`), and what undoes both. Pure,
//! like [`crate::plan`], whose effects it returns; the controller's executor
//! carries them out.
//!
//! Deleting cannot be undone, so every rule leans towards not deleting:
//! - only a namespace marked abandoned, under a policy with `deleteAfter`,
//!   never a [`protected`] one and never one with `siesta.dev/keep: "true"`;
//! - the grace period starts when the deletion is announced (the label
//!   `siesta.dev/delete-after` and a Warning Event) and lasts `deleteAfter`
//!   in full: a label that is unreadable, or earlier than the mark plus
//!   `deleteAfter` (left from an older mark, written by hand, or a policy
//!   that now asks for longer), is announced again from now;
//! - whatever clears the mark (counted activity, a wake, `keep`), and a
//!   policy that no longer deletes, cancels it;
//! - a namespace already being deleted is left to Kubernetes.
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::plan::Effect;

/// Namespaces deleted never, whatever a policy says, besides every name
/// starting with `kube-` (Kubernetes reserves the prefix: `kube-system`,
/// `kube-public`, `kube-node-lease`) and the controller's own namespaces.
pub const PROTECTED: [&str; 2] = ["default", "siesta-system"];

/// Whether `name` must never be deleted: Kubernetes' namespaces, `default`,
/// `siesta-system` and `own` (where this controller runs: its leader
/// election and proxy Service namespaces).
pub fn protected(name: &str, own: &[String]) -> bool {
    name.starts_with("kube-") || PROTECTED.contains(&name) || own.iter().any(|o| o == name)
}

/// The label `siesta.dev/delete-after` as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduled {
    None,
    At(DateTime<Utc>),
    /// Present, but not Unix seconds.
    Unreadable,
}

impl Scheduled {
    pub fn parse(label: Option<&str>) -> Scheduled {
        match label {
            None => Scheduled::None,
            Some(v) => v
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .map_or(Scheduled::Unreadable, Scheduled::At),
        }
    }
}

/// The label's value for a deletion at `at`.
pub fn format_scheduled(at: DateTime<Utc>) -> String {
    at.timestamp().to_string()
}

/// What a namespace's abandonment and deletion rest on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lifecycle {
    /// The policy's `abandonAfter`; `None`: never abandoned.
    pub abandon_after: Option<Duration>,
    /// The policy's `deleteAfter`; `None`: never deleted.
    pub delete_after: Option<Duration>,
    /// Never deleted ([`protected`]).
    pub protected: bool,
    /// `siesta.dev/keep: "true"`.
    pub keep: bool,
    /// Kubernetes is deleting it already (`deletionTimestamp`).
    pub terminating: bool,
    /// Asleep since (`None`: not asleep).
    pub asleep_since: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
    /// The mark as recorded (`siesta.dev/abandoned-since`).
    pub marked: Option<DateTime<Utc>>,
    /// The deletion label as recorded.
    pub scheduled: Scheduled,
    pub now: DateTime<Utc>,
}

/// The effects, in order, and when they would next change by the passage of
/// time alone.
pub fn lifecycle(l: &Lifecycle) -> (Vec<Effect>, Option<DateTime<Utc>>) {
    if l.terminating {
        return (Vec::new(), None);
    }
    let (mark, mut due) = abandonment(l);
    let marked = match mark {
        Some(Effect::MarkAbandoned(at)) => Some(at),
        Some(Effect::ClearAbandoned) => None,
        _ => l.marked,
    };
    let grace = l
        .delete_after
        .filter(|_| !l.protected && !l.keep)
        .and_then(|d| chrono::Duration::from_std(d).ok());
    let fresh_mark = mark.is_some();
    let mut effects = Vec::new();
    match (marked, grace) {
        (Some(since), Some(grace)) => {
            effects.extend(mark);
            let announced = match l.scheduled {
                // A fresh mark is always announced afresh.
                Scheduled::At(at) if !fresh_mark && since.checked_add_signed(grace) <= Some(at) => {
                    Some(at)
                }
                _ => None,
            };
            match announced {
                Some(at) if l.now >= at => effects.push(Effect::Delete(at)),
                Some(at) => due = earliest(due, at),
                None => {
                    // Whole seconds (the label's), rounded up: never less
                    // than `deleteAfter` after the announcement.
                    let up = i64::from(l.now.timestamp_subsec_nanos() > 0);
                    let from = DateTime::from_timestamp(l.now.timestamp() + up, 0);
                    if let Some(at) = from.and_then(|f| f.checked_add_signed(grace)) {
                        effects.push(Effect::ScheduleDeletion(at));
                        due = earliest(due, at);
                    }
                }
            }
        }
        _ => {
            // The label first: it is what lets a deletion through.
            if l.scheduled != Scheduled::None {
                effects.push(Effect::CancelDeletion);
            }
            effects.extend(mark);
        }
    }
    (effects, due)
}

fn earliest(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// The abandonment effect, if any, and when it would next change: a
/// namespace asleep for `abandon_after` since the later of its sleep and its
/// last counted activity is abandoned from that instant; activity, `keep` or
/// a wake clears the mark.
fn abandonment(a: &Lifecycle) -> (Option<Effect>, Option<DateTime<Utc>>) {
    let due = match (a.abandon_after, a.asleep_since, a.keep) {
        (Some(after), Some(since), false) => {
            let quiet_from = a.last_activity.map_or(since, |t| t.max(since));
            chrono::Duration::from_std(after)
                .ok()
                .and_then(|d| quiet_from.checked_add_signed(d))
        }
        _ => None,
    };
    match (due, a.marked) {
        (Some(at), None) if a.now >= at => (Some(Effect::MarkAbandoned(at)), None),
        (Some(at), None) => (None, Some(at)),
        // Marked from an older quiet stretch, or not due any more: clear.
        (Some(at), Some(m)) if m < at || a.now < at => (Some(Effect::ClearAbandoned), Some(at)),
        (Some(_), Some(_)) => (None, None),
        (None, Some(_)) => (Some(Effect::ClearAbandoned), None),
        (None, None) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Effect::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::model::parse_instant(s).expect("test instant")
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn quiet(hours_asleep: i64, marked: Option<DateTime<Utc>>) -> Lifecycle {
        let now = t("2026-12-02T12:00:00Z");
        Lifecycle {
            abandon_after: Some(DAY),
            delete_after: None,
            protected: false,
            keep: false,
            terminating: false,
            asleep_since: Some(now - chrono::Duration::hours(hours_asleep)),
            last_activity: None,
            marked,
            scheduled: Scheduled::None,
            now,
        }
    }

    #[test]
    fn a_namespace_asleep_without_activity_for_abandon_after_is_marked_once() {
        let (e, next) = lifecycle(&quiet(10, None));
        assert_eq!((e, next), (vec![], Some(t("2026-12-03T02:00:00Z"))));
        let (e, _) = lifecycle(&quiet(30, None));
        assert_eq!(e, vec![MarkAbandoned(t("2026-12-02T06:00:00Z"))]);
        // Marked at that instant: nothing more to do.
        let a = quiet(30, Some(t("2026-12-02T06:00:00Z")));
        assert_eq!(lifecycle(&a), (vec![], None));
    }

    #[test]
    fn activity_keep_or_a_wake_clears_the_mark() {
        let marked = Some(t("2026-12-02T06:00:00Z"));
        let active = Lifecycle {
            last_activity: Some(t("2026-12-02T11:00:00Z")),
            ..quiet(30, marked)
        };
        assert_eq!(lifecycle(&active).0, vec![ClearAbandoned]);
        let kept = Lifecycle {
            keep: true,
            ..quiet(30, marked)
        };
        assert_eq!(lifecycle(&kept).0, vec![ClearAbandoned]);
        let awake = Lifecycle {
            asleep_since: None,
            ..quiet(30, marked)
        };
        assert_eq!(lifecycle(&awake).0, vec![ClearAbandoned]);
        let no_policy = Lifecycle {
            abandon_after: None,
            ..quiet(30, None)
        };
        assert_eq!(lifecycle(&no_policy), (vec![], None));
    }

    /// Asleep 30 h under abandonAfter 1d, deleteAfter 14d: marked at 06:00.
    fn deleting(marked: Option<DateTime<Utc>>, scheduled: Scheduled) -> Lifecycle {
        Lifecycle {
            delete_after: Some(14 * DAY),
            scheduled,
            ..quiet(30, marked)
        }
    }

    const MARK: &str = "2026-12-02T06:00:00Z";
    const DELETION: &str = "2026-12-16T12:00:00Z";

    #[test]
    fn the_grace_period_starts_with_the_mark_and_lasts_delete_after_from_the_announcement() {
        // Marked and announced in one pass: now (12:00) plus 14 days.
        let (e, next) = lifecycle(&deleting(None, Scheduled::None));
        assert_eq!(
            e,
            vec![MarkAbandoned(t(MARK)), ScheduleDeletion(t(DELETION))]
        );
        assert_eq!(next, Some(t(DELETION)));
        // Marked before (a policy that gained deleteAfter): announced from now.
        let (e, _) = lifecycle(&deleting(Some(t(MARK)), Scheduled::None));
        assert_eq!(e, vec![ScheduleDeletion(t(DELETION))]);
        // A fraction of a second rounds up: never less than deleteAfter.
        let l = Lifecycle {
            now: t("2026-12-02T12:00:00.300Z"),
            ..deleting(Some(t(MARK)), Scheduled::None)
        };
        assert_eq!(
            lifecycle(&l).0,
            vec![ScheduleDeletion(t("2026-12-16T12:00:01Z"))]
        );
    }

    #[test]
    fn deletion_comes_at_the_announced_instant_and_not_a_moment_before() {
        let at = t(DELETION);
        let before = Lifecycle {
            now: at - chrono::Duration::milliseconds(1),
            ..deleting(Some(t(MARK)), Scheduled::At(at))
        };
        assert_eq!(lifecycle(&before), (vec![], Some(at)));
        let on_time = Lifecycle {
            now: at,
            ..deleting(Some(t(MARK)), Scheduled::At(at))
        };
        assert_eq!(lifecycle(&on_time).0, vec![Delete(at)]);
        let late = Lifecycle {
            now: at + chrono::Duration::days(3),
            ..deleting(Some(t(MARK)), Scheduled::At(at))
        };
        assert_eq!(lifecycle(&late).0, vec![Delete(at)]);
    }

    #[test]
    fn a_label_too_early_unreadable_or_older_than_the_mark_is_announced_again() {
        let now = t("2026-12-02T12:00:00Z");
        // Earlier than the mark plus deleteAfter (by hand, or a longer policy now).
        let early = Scheduled::At(t("2026-12-03T00:00:00Z"));
        let (e, _) = lifecycle(&Lifecycle {
            now: t("2026-12-20T00:00:00Z"),
            ..deleting(Some(t(MARK)), early)
        });
        assert_eq!(e, vec![ScheduleDeletion(t("2027-01-03T00:00:00Z"))]);
        assert_eq!(
            lifecycle(&deleting(Some(t(MARK)), Scheduled::Unreadable)).0,
            vec![ScheduleDeletion(t(DELETION))]
        );
        // Left from an older mark: a fresh mark is announced afresh.
        let stale = Scheduled::At(now - chrono::Duration::days(1));
        assert_eq!(
            lifecycle(&deleting(None, stale)).0,
            vec![MarkAbandoned(t(MARK)), ScheduleDeletion(t(DELETION))]
        );
        // Later than needed (a policy that now asks for less): kept.
        let later = t("2026-12-30T00:00:00Z");
        assert_eq!(
            lifecycle(&deleting(Some(t(MARK)), Scheduled::At(later))),
            (vec![], Some(later))
        );
    }

    #[test]
    fn keep_activity_or_a_policy_without_delete_after_cancels_the_deletion_label_first() {
        let at = Scheduled::At(t(DELETION));
        let kept = Lifecycle {
            keep: true,
            now: t(DELETION),
            ..deleting(Some(t(MARK)), at)
        };
        assert_eq!(lifecycle(&kept).0, vec![CancelDeletion, ClearAbandoned]);
        let active = Lifecycle {
            last_activity: Some(t("2026-12-02T11:00:00Z")),
            ..deleting(Some(t(MARK)), at)
        };
        assert_eq!(lifecycle(&active).0, vec![CancelDeletion, ClearAbandoned]);
        let awake = Lifecycle {
            asleep_since: None,
            ..deleting(Some(t(MARK)), at)
        };
        assert_eq!(lifecycle(&awake).0, vec![CancelDeletion, ClearAbandoned]);
        // The policy dropped deleteAfter: still abandoned, no longer deleted.
        let no_delete = Lifecycle {
            delete_after: None,
            now: t(DELETION),
            ..deleting(Some(t(MARK)), at)
        };
        assert_eq!(lifecycle(&no_delete).0, vec![CancelDeletion]);
        // A label on a namespace that was never marked: removed.
        let stray = Lifecycle {
            abandon_after: None,
            ..deleting(None, Scheduled::Unreadable)
        };
        assert_eq!(lifecycle(&stray).0, vec![CancelDeletion]);
    }

    #[test]
    fn protected_and_terminating_namespaces_are_never_deleted() {
        for name in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "default",
            "siesta-system",
            "siesta-ops",
        ] {
            assert!(protected(name, &["siesta-ops".into()]), "{name}");
        }
        assert!(!protected("team-a", &["siesta-ops".into()]));
        assert!(!protected("my-kube-system", &[]));
        let at = t(DELETION);
        let guarded = Lifecycle {
            protected: true,
            now: at,
            ..deleting(Some(t(MARK)), Scheduled::At(at))
        };
        // Marked abandoned like any other, but the label goes and nothing is deleted.
        assert_eq!(lifecycle(&guarded).0, vec![CancelDeletion]);
        let fresh = Lifecycle {
            protected: true,
            ..deleting(None, Scheduled::None)
        };
        assert_eq!(lifecycle(&fresh).0, vec![MarkAbandoned(t(MARK))]);
        let terminating = Lifecycle {
            terminating: true,
            now: at,
            ..deleting(Some(t(MARK)), Scheduled::At(at))
        };
        assert_eq!(lifecycle(&terminating), (vec![], None));
    }

    #[test]
    fn the_label_is_unix_seconds() {
        let at = t(DELETION);
        assert_eq!(format_scheduled(at), "1797422400");
        assert_eq!(Scheduled::parse(Some("1797422400")), Scheduled::At(at));
        assert_eq!(Scheduled::parse(Some("soon")), Scheduled::Unreadable);
        assert_eq!(Scheduled::parse(Some("")), Scheduled::Unreadable);
        assert_eq!(Scheduled::parse(None), Scheduled::None);
    }
}
