//! The decision: sleep, wake or keep, and when to look again. A pure function of
//! the effective policy, what the controller recorded, the newest activity and
//! the current instant; no I/O and no clock of its own.
//!
//! Rules, in order:
//! 1. A one-shot `siesta.dev/action` wins (manual sleep or wake).
//! 2. A namespace that is no longer opted in but still asleep is woken, so
//!    opting out never strands workloads at zero.
//! 3. Asleep: activity newer than the sleep wakes it if `wake-on` allows that
//!    source; a schedule that turned awake after the sleep wakes it, and so does
//!    an awake schedule when it slept for its schedule (a config reload, such as
//!    a holiday removed, can end a sleep window early); `keep-awake-until` in
//!    the future wakes it.
//! 4. Awake: `keep-awake-until` in the future keeps it; a schedule sleep window
//!    that began after the namespace last woke puts it to sleep, and so does any
//!    sleep window when it woke for its schedule (a holiday added for today);
//!    otherwise it
//!    sleeps after `idle-after` without activity. The idle clock starts at the
//!    newest of: last activity, last transition, and when this controller first
//!    saw the namespace, so a controller start never sleeps a namespace at once.
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::annotations::{IdleAfter, WakeOn};
use crate::model::{Action, Reason, Source, State};
use crate::schedule::{Phase, Schedule};

/// The settings in force for one namespace, after layering annotations over the
/// matching policy over the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub enabled: bool,
    /// Observe mode: decided as usual, but the verdict is only counted (the
    /// controller writes nothing to the workloads).
    pub observe: bool,
    pub idle_after: IdleAfter,
    pub schedule: Option<Schedule>,
    pub wake_on: WakeOn,
    pub keep_awake_until: Option<DateTime<Utc>>,
}

/// What is known about the namespace right now.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub state: State,
    /// When the recorded state began (`siesta.dev/state-since`).
    pub since: Option<DateTime<Utc>>,
    /// Why it sleeps or woke (`siesta.dev/reason`).
    pub reason: Option<Reason>,
    pub action: Option<Action>,
    /// Newest counted activity per source.
    pub last_api: Option<DateTime<Utc>>,
    pub last_http: Option<DateTime<Utc>>,
    /// When this controller process first saw the namespace opted in.
    pub first_seen: DateTime<Utc>,
}

impl Observed {
    pub fn last_activity(&self) -> Option<DateTime<Utc>> {
        self.last_api.max(self.last_http)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Sleep(Reason),
    Wake(Reason),
    Keep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Remove `siesta.dev/action` (it has been acted on, or had nothing to do).
    pub clear_action: bool,
    /// When the decision could change by the passage of time alone.
    pub next_check: Option<DateTime<Utc>>,
}

impl Decision {
    fn now(verdict: Verdict, clear_action: bool) -> Decision {
        Decision {
            verdict,
            clear_action,
            next_check: None,
        }
    }
}

pub fn decide(policy: &Policy, seen: &Observed, now: DateTime<Utc>) -> Decision {
    let asleep = seen.state == State::Asleep;
    // 1. manual commands
    match seen.action {
        Some(Action::Sleep) if !asleep && policy.enabled => {
            return Decision::now(Verdict::Sleep(Reason::Manual), true);
        }
        Some(Action::Wake) if asleep => return Decision::now(Verdict::Wake(Reason::Manual), true),
        _ => {}
    }
    let clear_action = seen.action.is_some();
    // 2. opted out while asleep
    if !policy.enabled {
        let verdict = if asleep {
            Verdict::Wake(Reason::Manual)
        } else {
            Verdict::Keep
        };
        return Decision::now(verdict, clear_action);
    }
    let since = seen.since.unwrap_or(seen.first_seen);
    let keep_until = policy.keep_awake_until.filter(|t| *t > now);
    let schedule_next = policy.schedule.as_ref().and_then(|s| s.next_change(now));

    if asleep {
        // 3. wake on activity newer than the sleep
        let newer = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t > since);
        if policy.wake_on.allows(Source::Api) && newer(seen.last_api) {
            return Decision::now(Verdict::Wake(Reason::Api), clear_action);
        }
        if policy.wake_on.allows(Source::Http) && newer(seen.last_http) {
            return Decision::now(Verdict::Wake(Reason::Http), clear_action);
        }
        if keep_until.is_some() {
            return Decision::now(Verdict::Wake(Reason::Manual), clear_action);
        }
        let for_schedule = seen.reason == Some(Reason::Schedule);
        if let Some(s) = &policy.schedule
            && s.phase_at(now) == Phase::Awake
            && (for_schedule || s.last_change(now).is_some_and(|t| t > since))
        {
            return Decision::now(Verdict::Wake(Reason::Schedule), clear_action);
        }
        return Decision {
            verdict: Verdict::Keep,
            clear_action,
            next_check: schedule_next,
        };
    }

    // 4. awake (or waking)
    if let Some(until) = keep_until {
        return Decision {
            verdict: Verdict::Keep,
            clear_action,
            next_check: Some(until),
        };
    }
    if let Some(s) = &policy.schedule
        && s.phase_at(now) == Phase::Asleep
    {
        // A window we have not slept in yet: its start is after our last transition.
        // A window without a known start (`never`) counts as begun before anything.
        let window_start = s.last_change(now);
        // A namespace the schedule woke follows it whenever it turns asleep.
        let slept_in_window = seen.reason != Some(Reason::Schedule)
            && seen
                .since
                .is_some_and(|since| window_start.is_none_or(|w| since >= w));
        if !slept_in_window {
            return Decision::now(Verdict::Sleep(Reason::Schedule), clear_action);
        }
    }
    let idle_deadline = match policy.idle_after {
        IdleAfter::Off => None,
        IdleAfter::After(d) => {
            let base = [Some(since), Some(seen.first_seen), seen.last_activity()]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(now);
            Some(base + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
        }
    };
    if let Some(deadline) = idle_deadline
        && now >= deadline
    {
        return Decision::now(Verdict::Sleep(Reason::Idle), clear_action);
    }
    let next_check = [idle_deadline, schedule_next].into_iter().flatten().min();
    Decision {
        verdict: Verdict::Keep,
        clear_action,
        next_check,
    }
}

/// The idle timeout as a `std` duration, for callers that sleep on it.
pub fn until(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (then - now).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0).unwrap()
    }

    fn policy() -> Policy {
        Policy {
            enabled: true,
            observe: false,
            idle_after: IdleAfter::After(Duration::from_secs(30 * 60)),
            schedule: None,
            wake_on: WakeOn::default(),
            keep_awake_until: None,
        }
    }

    fn awake_since(at: DateTime<Utc>) -> Observed {
        Observed {
            state: State::Awake,
            since: None,
            reason: None,
            action: None,
            last_api: None,
            last_http: None,
            first_seen: at,
        }
    }

    fn asleep_since(at: DateTime<Utc>) -> Observed {
        Observed {
            state: State::Asleep,
            since: Some(at),
            reason: None,
            action: None,
            last_api: None,
            last_http: None,
            first_seen: at,
        }
    }

    #[test]
    fn idle_namespace_sleeps_after_idle_after() {
        let seen = Observed {
            last_api: Some(t(10, 0)),
            ..awake_since(t(9, 0))
        };
        let d = decide(&policy(), &seen, t(10, 29));
        assert_eq!(d.verdict, Verdict::Keep);
        assert_eq!(d.next_check, Some(t(10, 30)));
        assert_eq!(
            decide(&policy(), &seen, t(10, 30)).verdict,
            Verdict::Sleep(Reason::Idle)
        );
    }

    #[test]
    fn a_controller_start_never_sleeps_a_namespace_at_once() {
        // Activity was long ago, but this controller only just saw the namespace.
        let seen = Observed {
            last_api: Some(t(1, 0)),
            ..awake_since(t(12, 0))
        };
        let d = decide(&policy(), &seen, t(12, 0));
        assert_eq!(d.verdict, Verdict::Keep);
        assert_eq!(d.next_check, Some(t(12, 30)));
    }

    #[test]
    fn idle_after_off_never_sleeps() {
        let p = Policy {
            idle_after: IdleAfter::Off,
            ..policy()
        };
        let d = decide(&p, &awake_since(t(0, 0)), t(23, 0));
        assert_eq!(
            d,
            Decision {
                verdict: Verdict::Keep,
                clear_action: false,
                next_check: None
            }
        );
    }

    #[test]
    fn activity_newer_than_the_sleep_wakes_by_its_source() {
        let mut seen = asleep_since(t(10, 0));
        seen.last_http = Some(t(10, 5));
        assert_eq!(
            decide(&policy(), &seen, t(10, 6)).verdict,
            Verdict::Wake(Reason::Http)
        );
        seen.last_api = Some(t(10, 5));
        assert_eq!(
            decide(&policy(), &seen, t(10, 6)).verdict,
            Verdict::Wake(Reason::Api)
        );
    }

    #[test]
    fn activity_older_than_the_sleep_does_not_wake() {
        let seen = Observed {
            last_api: Some(t(9, 59)),
            ..asleep_since(t(10, 0))
        };
        assert_eq!(decide(&policy(), &seen, t(11, 0)).verdict, Verdict::Keep);
    }

    #[test]
    fn wake_on_filters_sources() {
        let p = Policy {
            wake_on: WakeOn {
                api: false,
                http: true,
            },
            ..policy()
        };
        let seen = Observed {
            last_api: Some(t(10, 5)),
            ..asleep_since(t(10, 0))
        };
        assert_eq!(decide(&p, &seen, t(10, 6)).verdict, Verdict::Keep);
        let none = Policy {
            wake_on: WakeOn {
                api: false,
                http: false,
            },
            ..policy()
        };
        let seen = Observed {
            last_http: Some(t(10, 5)),
            ..seen
        };
        assert_eq!(decide(&none, &seen, t(10, 6)).verdict, Verdict::Keep);
    }

    #[test]
    fn manual_actions_win_and_are_cleared() {
        let seen = Observed {
            action: Some(Action::Sleep),
            last_api: Some(t(10, 0)),
            ..awake_since(t(9, 0))
        };
        assert_eq!(
            decide(&policy(), &seen, t(10, 1)),
            Decision::now(Verdict::Sleep(Reason::Manual), true)
        );
        let seen = Observed {
            action: Some(Action::Wake),
            ..asleep_since(t(9, 0))
        };
        assert_eq!(
            decide(&policy(), &seen, t(10, 1)),
            Decision::now(Verdict::Wake(Reason::Manual), true)
        );
        // waking an awake namespace just clears the command
        let seen = Observed {
            action: Some(Action::Wake),
            ..awake_since(t(9, 0))
        };
        let d = decide(&policy(), &seen, t(9, 1));
        assert_eq!((d.verdict, d.clear_action), (Verdict::Keep, true));
    }

    #[test]
    fn keep_awake_until_blocks_sleep_and_wakes_a_sleeper() {
        let p = Policy {
            keep_awake_until: Some(t(18, 0)),
            ..policy()
        };
        let d = decide(&p, &awake_since(t(0, 0)), t(12, 0));
        assert_eq!((d.verdict, d.next_check), (Verdict::Keep, Some(t(18, 0))));
        assert_eq!(
            decide(&p, &asleep_since(t(1, 0)), t(12, 0)).verdict,
            Verdict::Wake(Reason::Manual)
        );
        // once past, idle rules apply again
        assert_eq!(
            decide(&p, &awake_since(t(0, 0)), t(18, 0)).verdict,
            Verdict::Sleep(Reason::Idle)
        );
    }

    #[test]
    fn opting_out_wakes_a_sleeping_namespace_and_leaves_others_alone() {
        let p = Policy {
            enabled: false,
            ..policy()
        };
        assert_eq!(
            decide(&p, &asleep_since(t(1, 0)), t(2, 0)).verdict,
            Verdict::Wake(Reason::Manual)
        );
        assert_eq!(
            decide(&p, &awake_since(t(1, 0)), t(23, 0)).verdict,
            Verdict::Keep
        );
        let seen = Observed {
            action: Some(Action::Sleep),
            ..awake_since(t(1, 0))
        };
        assert_eq!(decide(&p, &seen, t(2, 0)).verdict, Verdict::Keep);
    }

    #[test]
    fn a_never_schedule_sleeps_and_activity_wakes_then_idle_applies() {
        let p = Policy {
            schedule: Some(Schedule::Never),
            ..policy()
        };
        assert_eq!(
            decide(&p, &awake_since(t(1, 0)), t(1, 0)).verdict,
            Verdict::Sleep(Reason::Schedule)
        );
        // woken by activity during the window: stays awake until idle
        let woke = Observed {
            state: State::Awake,
            since: Some(t(2, 0)),
            last_api: Some(t(2, 0)),
            ..awake_since(t(1, 0))
        };
        assert_eq!(decide(&p, &woke, t(2, 10)).verdict, Verdict::Keep);
        assert_eq!(
            decide(&p, &woke, t(2, 30)).verdict,
            Verdict::Sleep(Reason::Idle)
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        crate::model::parse_instant(s).expect("test instant")
    }

    fn hours(spec: &str) -> Schedule {
        Schedule::parse_awake_hours(spec).expect("test spec")
    }

    /// The semantics docs/schedules.md promises, through the decision itself.
    #[test]
    fn a_day_under_office_hours() {
        let policy = Policy {
            enabled: true,
            observe: false,
            idle_after: IdleAfter::After(std::time::Duration::from_secs(30 * 60)),
            schedule: Some(hours("Mon-Fri 08:00-18:00 UTC")),
            wake_on: WakeOn::default(),
            keep_awake_until: None,
        };
        let seen = |state, since: &str, last_api: Option<&str>| Observed {
            state,
            since: Some(at(since)),
            reason: None,
            action: None,
            last_api: last_api.map(at),
            last_http: None,
            first_seen: at("2026-11-23T00:00:00Z"),
        };
        // Monday, busy until the window ends: the schedule is the next deadline.
        let busy = seen(
            State::Awake,
            "2026-11-23T08:00:00Z",
            Some("2026-11-23T17:55:00Z"),
        );
        let d = decide(&policy, &busy, at("2026-11-23T17:59:00Z"));
        assert_eq!(
            (d.verdict, d.next_check),
            (Verdict::Keep, Some(at("2026-11-23T18:00:00Z")))
        );
        // At 18:00 it sleeps, reason schedule.
        let d = decide(&policy, &busy, at("2026-11-23T18:00:00Z"));
        assert_eq!(d.verdict, Verdict::Sleep(Reason::Schedule));
        // kubectl at 21:00 wakes it (wake-on allows api)...
        let night = seen(
            State::Asleep,
            "2026-11-23T18:00:00Z",
            Some("2026-11-23T21:00:00Z"),
        );
        let d = decide(&policy, &night, at("2026-11-23T21:00:01Z"));
        assert_eq!(d.verdict, Verdict::Wake(Reason::Api));
        // ...the window it is in does not put it back to sleep, idle-after does.
        let woken = seen(
            State::Awake,
            "2026-11-23T21:00:01Z",
            Some("2026-11-23T21:05:00Z"),
        );
        let d = decide(&policy, &woken, at("2026-11-23T21:10:00Z"));
        assert_eq!(
            (d.verdict, d.next_check),
            (Verdict::Keep, Some(at("2026-11-23T21:35:00Z")))
        );
        let d = decide(&policy, &woken, at("2026-11-23T21:35:00Z"));
        assert_eq!(d.verdict, Verdict::Sleep(Reason::Idle));
        // With wake-on http only, kubectl at night changes nothing.
        let http_only = Policy {
            wake_on: WakeOn {
                api: false,
                http: true,
            },
            ..policy.clone()
        };
        let d = decide(&http_only, &night, at("2026-11-23T21:00:01Z"));
        assert_eq!(
            (d.verdict, d.next_check),
            (Verdict::Keep, Some(at("2026-11-24T08:00:00Z")))
        );
        // At 08:00 on Tuesday it wakes, reason schedule.
        let slept = seen(
            State::Asleep,
            "2026-11-23T21:35:00Z",
            Some("2026-11-23T21:05:00Z"),
        );
        let d = decide(&policy, &slept, at("2026-11-24T08:00:00Z"));
        assert_eq!(d.verdict, Verdict::Wake(Reason::Schedule));
    }

    /// A config reload that adds today as a holiday, or removes it, moves a
    /// namespace that follows its schedule at once; one woken by a person
    /// during a sleep window is left alone.
    #[test]
    fn a_holiday_added_or_removed_by_a_reload_moves_a_namespace_that_follows_its_schedule() {
        use crate::schedule::{HolidayMode, Holidays, WithHolidays, parse_dates};
        let office = hours("Mon-Fri 08:00-18:00 UTC");
        let holiday = Schedule::Holidays(Box::new(WithHolidays {
            base: office.clone(),
            holidays: Holidays::new(
                chrono_tz::UTC,
                HolidayMode::Asleep,
                parse_dates("2026-11-24"),
            ),
        }));
        let with = |schedule: &Schedule| Policy {
            idle_after: IdleAfter::Off,
            schedule: Some(schedule.clone()),
            ..policy()
        };
        let noon = at("2026-11-24T12:00:00Z");
        // Woken by the schedule at 08:00; at noon a reload makes today a holiday.
        let woke = Observed {
            since: Some(at("2026-11-24T08:00:00Z")),
            reason: Some(Reason::Schedule),
            ..awake_since(at("2026-11-23T00:00:00Z"))
        };
        assert_eq!(decide(&with(&office), &woke, noon).verdict, Verdict::Keep);
        assert_eq!(
            decide(&with(&holiday), &woke, noon).verdict,
            Verdict::Sleep(Reason::Schedule)
        );
        // Woken by kubectl instead: the holiday leaves it to idle-after.
        let by_hand = Observed {
            reason: Some(Reason::Api),
            ..woke.clone()
        };
        assert_eq!(
            decide(&with(&holiday), &by_hand, noon).verdict,
            Verdict::Keep
        );
        // Asleep for the holiday since 10:00; the holiday is removed at noon.
        let slept = Observed {
            reason: Some(Reason::Schedule),
            ..asleep_since(at("2026-11-24T10:00:00Z"))
        };
        assert_eq!(decide(&with(&holiday), &slept, noon).verdict, Verdict::Keep);
        assert_eq!(
            decide(&with(&office), &slept, noon).verdict,
            Verdict::Wake(Reason::Schedule)
        );
        // Put to sleep by hand: the schedule being awake does not wake it.
        let manual = Observed {
            reason: Some(Reason::Manual),
            ..slept
        };
        assert_eq!(decide(&with(&office), &manual, noon).verdict, Verdict::Keep);
    }
}
