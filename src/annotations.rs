//! The `siesta.dev/*` annotation contract of DESIGN.md: names, parsing of what
//! users write on a Namespace, and rendering of what the controller writes.
//!
//! Parsing never fails half-way: every malformed annotation is returned as an
//! [`AnnotationError`] naming the annotation, so the controller can report all of
//! them and leave the namespace exactly as it is.
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{Action, Reason, Source, State, parse_instant};
use crate::schedule::Schedule;

pub const PREFIX: &str = "siesta.dev/";
pub const ENABLED: &str = "siesta.dev/enabled";
pub const IDLE_AFTER: &str = "siesta.dev/idle-after";
pub const SCHEDULE: &str = "siesta.dev/schedule";
pub const AWAKE_HOURS: &str = "siesta.dev/awake-hours";
pub const WAKE_ON: &str = "siesta.dev/wake-on";
pub const WAKE_PAGE: &str = "siesta.dev/wake-page";
pub const KEEP_AWAKE_UNTIL: &str = "siesta.dev/keep-awake-until";
pub const ACTION: &str = "siesta.dev/action";
/// Who asked for `siesta.dev/action`: the user the API server says the CLI is
/// (a SelfSubjectReview), written with the action and removed with it.
pub const REQUESTED_BY: &str = "siesta.dev/requested-by";
pub const EXCLUDE: &str = "siesta.dev/exclude";
/// `"true"`: never mark this namespace abandoned.
pub const KEEP: &str = "siesta.dev/keep";
/// Namespaces woken with this one: `"team-db, team-cache"`.
pub const WAKE_WITH: &str = "siesta.dev/wake-with";
/// `"before"`: the namespaces of `wake-with` wake first, and this one's
/// workloads are restored once they are awake.
pub const WAKE_WITH_ORDER: &str = "siesta.dev/wake-with-order";
/// Written by the controller: asleep without counted activity for the
/// policy's `abandonAfter`, since this instant.
pub const ABANDONED_SINCE: &str = "siesta.dev/abandoned-since";
/// A namespace label written by the controller: the namespace, abandoned
/// under a policy with `deleteAfter`, is deleted at this instant (Unix
/// seconds: a label value cannot hold an RFC 3339 instant). The
/// delete-namespaces component's admission policy lets the controller delete
/// only namespaces that carry it.
pub const DELETE_AFTER: &str = "siesta.dev/delete-after";

pub const STATE: &str = "siesta.dev/state";
pub const STATE_SINCE: &str = "siesta.dev/state-since";
pub const REASON: &str = "siesta.dev/reason";
pub const LAST_ACTIVITY: &str = "siesta.dev/last-activity";
pub const ORIGINAL_REPLICAS: &str = "siesta.dev/original-replicas";
pub const ORIGINAL_SUSPEND: &str = "siesta.dev/original-suspend";
pub const SAVED: &str = "siesta.dev/saved";
/// Observe mode's record, apart from the real one (the proxy holds on
/// `siesta.dev/state`): the would-be state, its start and reason, the
/// would-be totals and the potential savings.
pub const OBSERVED_STATE: &str = "siesta.dev/observed-state";
pub const OBSERVED_SINCE: &str = "siesta.dev/observed-since";
pub const OBSERVED_REASON: &str = "siesta.dev/observed-reason";
pub const OBSERVED: &str = "siesta.dev/observed";
pub const OBSERVED_SAVED: &str = "siesta.dev/observed-saved";
/// On a workload: its wake group (an integer; lower wakes first).
pub const WAKE_ORDER: &str = "siesta.dev/wake-order";
/// On a waking namespace (written by the controller): the wake group being
/// restored and since when, `ORDER INSTANT`; removed when it is awake.
pub const WAKE_GROUP: &str = "siesta.dev/wake-group";

/// The longest activity description written to an annotation.
pub const MAX_DESCRIPTION: usize = 120;

/// `siesta.dev/idle-after`: a duration, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleAfter {
    Off,
    After(Duration),
}

impl IdleAfter {
    pub fn parse(s: &str) -> Result<IdleAfter, String> {
        if s.trim() == "off" {
            return Ok(IdleAfter::Off);
        }
        crate::duration::parse(s).map(IdleAfter::After)
    }
}

/// `siesta.dev/wake-on`: which activity wakes a sleeping namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakeOn {
    pub api: bool,
    pub http: bool,
}

impl Default for WakeOn {
    fn default() -> Self {
        WakeOn {
            api: true,
            http: true,
        }
    }
}

impl WakeOn {
    pub fn parse(s: &str) -> Result<WakeOn, String> {
        let s = s.trim();
        if s == "none" {
            return Ok(WakeOn {
                api: false,
                http: false,
            });
        }
        let mut w = WakeOn {
            api: false,
            http: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "api" => w.api = true,
                "http" => w.http = true,
                other => {
                    return Err(format!(
                        "{other:?} is not one of api, http (comma separated) or none"
                    ));
                }
            }
        }
        Ok(w)
    }
    pub fn allows(self, source: Source) -> bool {
        match source {
            Source::Api => self.api,
            Source::Http => self.http,
        }
    }
}

/// `siesta.dev/wake-page`: what a browser sees while the namespace wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WakePage {
    #[default]
    Auto,
    Never,
}

impl WakePage {
    pub fn parse(s: &str) -> Result<WakePage, String> {
        match s.trim() {
            "auto" => Ok(WakePage::Auto),
            "never" => Ok(WakePage::Never),
            other => Err(format!("{other:?} is not auto or never")),
        }
    }
}

/// `siesta.dev/wake-with-order`: when the namespaces of `wake-with` wake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WakeWithOrder {
    /// At the same time as this one (the default).
    #[default]
    Together,
    /// First: this namespace's workloads wait until they are awake.
    Before,
}

impl WakeWithOrder {
    pub fn parse(s: &str) -> Result<WakeWithOrder, String> {
        match s.trim() {
            "together" => Ok(WakeWithOrder::Together),
            "before" => Ok(WakeWithOrder::Before),
            other => Err(format!("{other:?} is not before or together")),
        }
    }
}

/// `siesta.dev/enabled` (and a policy's `enabled`): off, on, or observe mode,
/// where Siesta tracks and decides exactly as it would but writes nothing to
/// the workloads, and counts what it would have done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enabled {
    No,
    Yes,
    Observe,
}

impl Enabled {
    /// `"true"`, `"false"` or `"observe"`, nothing else.
    pub fn parse(s: &str) -> Result<Enabled, String> {
        match s.trim() {
            "true" => Ok(Enabled::Yes),
            "false" => Ok(Enabled::No),
            "observe" => Ok(Enabled::Observe),
            other => Err(format!("{other:?} is not true, false or observe")),
        }
    }
}

/// A comma-separated list of namespace names (RFC 1123 labels), at least one.
pub fn parse_namespaces(s: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = s.split(',').map(|n| n.trim().to_string()).collect();
    for n in &names {
        let ok = !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        if !ok {
            return Err(format!("{n:?} is not a namespace name"));
        }
    }
    Ok(names)
}

/// A strict boolean: `"true"` or `"false"`, nothing else, so that a typo is
/// reported instead of silently meaning false.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// One malformed annotation: which one, what it said, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotationError {
    pub annotation: &'static str,
    pub value: String,
    pub message: String,
}

impl fmt::Display for AnnotationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "annotation {}: {}", self.annotation, self.message)
    }
}

/// What a namespace's own annotations say; `None` means "not set here", so the
/// admin policy or the defaults apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub enabled: Option<Enabled>,
    pub idle_after: Option<IdleAfter>,
    pub schedule: Option<String>,
    pub awake_hours: Option<Schedule>,
    pub wake_on: Option<WakeOn>,
    pub wake_page: Option<WakePage>,
    pub keep_awake_until: Option<DateTime<Utc>>,
    pub action: Option<Action>,
    pub wake_with: Option<Vec<String>>,
    /// `siesta.dev/keep`: never mark abandoned (nor delete). Strict, like
    /// every boolean: a typo is an error that changes nothing, never "false".
    pub keep: Option<bool>,
    pub wake_with_order: Option<WakeWithOrder>,
}

impl Overrides {
    /// Read every user-set annotation, collecting every error.
    pub fn parse(annotations: &BTreeMap<String, String>) -> (Overrides, Vec<AnnotationError>) {
        let mut errors = Vec::new();
        let get = |name: &'static str| annotations.get(name).map(|v| (name, v.as_str()));
        fn field<T>(
            errors: &mut Vec<AnnotationError>,
            entry: Option<(&'static str, &str)>,
            parse: impl Fn(&str) -> Result<T, String>,
        ) -> Option<T> {
            let (name, value) = entry?;
            match parse(value) {
                Ok(v) => Some(v),
                Err(message) => {
                    errors.push(AnnotationError {
                        annotation: name,
                        value: truncate(value, MAX_DESCRIPTION),
                        message,
                    });
                    None
                }
            }
        }
        let enabled = get(ENABLED);
        let idle = get(IDLE_AFTER);
        let schedule = get(SCHEDULE);
        let awake = get(AWAKE_HOURS);
        let wake_on = get(WAKE_ON);
        let wake_page = get(WAKE_PAGE);
        let keep = get(KEEP_AWAKE_UNTIL);
        let action = get(ACTION);
        let wake_with = get(WAKE_WITH);
        let keep_ns = get(KEEP);
        let wake_with_order = get(WAKE_WITH_ORDER);
        let o = Overrides {
            enabled: field(&mut errors, enabled, Enabled::parse),
            idle_after: field(&mut errors, idle, IdleAfter::parse),
            schedule: field(&mut errors, schedule, |s| {
                let s = s.trim();
                if s.is_empty() {
                    Err("empty schedule name".to_string())
                } else {
                    Ok(s.to_string())
                }
            }),
            awake_hours: field(&mut errors, awake, |s| {
                Schedule::parse_awake_hours(s).map_err(|e| e.to_string())
            }),
            wake_on: field(&mut errors, wake_on, WakeOn::parse),
            wake_page: field(&mut errors, wake_page, WakePage::parse),
            keep_awake_until: field(&mut errors, keep, parse_instant),
            action: field(&mut errors, action, Action::parse),
            wake_with: field(&mut errors, wake_with, parse_namespaces),
            keep: field(&mut errors, keep_ns, parse_bool),
            wake_with_order: field(&mut errors, wake_with_order, WakeWithOrder::parse),
        };
        (o, errors)
    }
}

/// What the controller last wrote on a namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recorded {
    pub state: State,
    pub since: Option<DateTime<Utc>>,
    pub reason: Option<Reason>,
    pub last_activity: Option<String>,
    pub saved: Option<Saved>,
    /// Observe mode: the would-be state (`None`: not observed), its start
    /// and reason, the would-be totals and the potential savings.
    pub observed_state: Option<State>,
    pub observed_since: Option<DateTime<Utc>>,
    pub observed_reason: Option<Reason>,
    pub observed: Option<ObservedTotals>,
    pub observed_saved: Option<Saved>,
    /// Marked abandoned since (`siesta.dev/abandoned-since`).
    pub abandoned_since: Option<DateTime<Utc>>,
}

impl Recorded {
    /// Controller-written annotations; unreadable ones count as absent (the
    /// controller rewrites them at the next transition).
    pub fn parse(annotations: &BTreeMap<String, String>) -> Recorded {
        Recorded {
            state: annotations
                .get(STATE)
                .and_then(|s| State::parse(s))
                .unwrap_or_default(),
            since: annotations
                .get(STATE_SINCE)
                .and_then(|s| parse_instant(s).ok()),
            reason: annotations.get(REASON).and_then(|s| Reason::parse(s)),
            last_activity: annotations.get(LAST_ACTIVITY).cloned(),
            saved: annotations.get(SAVED).and_then(|s| Saved::parse(s)),
            observed_state: annotations
                .get(OBSERVED_STATE)
                .and_then(|s| State::parse(s)),
            observed_since: annotations
                .get(OBSERVED_SINCE)
                .and_then(|s| parse_instant(s).ok()),
            observed_reason: annotations
                .get(OBSERVED_REASON)
                .and_then(|s| Reason::parse(s)),
            observed: annotations
                .get(OBSERVED)
                .and_then(|s| ObservedTotals::parse(s)),
            observed_saved: annotations
                .get(OBSERVED_SAVED)
                .and_then(|s| Saved::parse(s)),
            abandoned_since: annotations
                .get(ABANDONED_SINCE)
                .and_then(|s| parse_instant(s).ok()),
        }
    }
}

/// `siesta.dev/observed`: what observe mode counted since it began: would-be
/// sleeps and wakes, and the seconds of would-be sleeps that ended (the
/// current one runs from `siesta.dev/observed-since`). Written as
/// `sleeps=3,wakes=2,asleep=5400,from=2026-12-01T09:00:00Z`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObservedTotals {
    pub sleeps: u64,
    pub wakes: u64,
    pub asleep_seconds: f64,
    /// When observing began.
    pub from: DateTime<Utc>,
}

impl ObservedTotals {
    pub fn zero(from: DateTime<Utc>) -> ObservedTotals {
        ObservedTotals {
            sleeps: 0,
            wakes: 0,
            asleep_seconds: 0.0,
            from,
        }
    }

    /// `None` for anything but what the controller writes.
    pub fn parse(s: &str) -> Option<ObservedTotals> {
        let mut t = ObservedTotals::zero(DateTime::<Utc>::MIN_UTC);
        let mut seen = 0u8;
        for field in s.split(',') {
            let (k, v) = field.trim().split_once('=')?;
            let v = v.trim();
            match k.trim() {
                "sleeps" => (t.sleeps, seen) = (v.parse().ok()?, seen | 1),
                "wakes" => (t.wakes, seen) = (v.parse().ok()?, seen | 2),
                "asleep" => {
                    let n: f64 = v
                        .parse()
                        .ok()
                        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
                    (t.asleep_seconds, seen) = (n, seen | 4);
                }
                "from" => (t.from, seen) = (parse_instant(v).ok()?, seen | 8),
                _ => return None,
            }
        }
        (seen == 0b1111).then_some(t)
    }

    pub fn format(&self) -> String {
        format!(
            "sleeps={},wakes={},asleep={},from={}",
            self.sleeps,
            self.wakes,
            self.asleep_seconds,
            crate::model::format_instant(self.from)
        )
    }

    /// Seconds of would-be sleep up to `now`, the current one included when
    /// it began at `asleep_since`.
    pub fn asleep_until(&self, asleep_since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> f64 {
        let current = asleep_since.map_or(0.0, |since| {
            (now - since).num_milliseconds().max(0) as f64 / 1000.0
        });
        self.asleep_seconds + current
    }
}

/// `siesta.dev/saved`: a namespace's savings so far, accounted up to `at`, and
/// the rate at which they grow while it sleeps (what its sleeping pods would
/// request). Written by the controller at each wake (in the same request as
/// the new state) and when a sleep pass finds a new rate, so that every
/// controller process computes the same totals at the same instant: the
/// savings counters continue across restarts and leader changes instead of
/// starting again from the sleep's start.
///
/// Written as `cpu=7200,memory=3.8e12,cost=0.0674,at=2026-12-02T18:00:00Z,cpuRate=2,memoryRate=1073741824`
/// (core-seconds, byte-seconds, money, RFC 3339, cores, bytes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Saved {
    pub cpu_core_seconds: f64,
    pub memory_byte_seconds: f64,
    pub cost: f64,
    pub at: DateTime<Utc>,
    /// Cores and bytes the sleeping pods would request; 0 while awake.
    pub cpu_rate: f64,
    pub memory_rate: f64,
}

impl Saved {
    pub fn zero(at: DateTime<Utc>) -> Saved {
        Saved {
            cpu_core_seconds: 0.0,
            memory_byte_seconds: 0.0,
            cost: 0.0,
            at,
            cpu_rate: 0.0,
            memory_rate: 0.0,
        }
    }

    /// `None` for a value that is not one this controller writes (it is then
    /// rewritten from zero at the next checkpoint, never trusted in part).
    pub fn parse(s: &str) -> Option<Saved> {
        let mut saved = Saved::zero(DateTime::<Utc>::MIN_UTC);
        let mut seen = 0u8;
        for field in s.split(',') {
            let (k, v) = field.trim().split_once('=')?;
            if k == "at" {
                saved.at = parse_instant(v).ok()?;
                seen |= 1 << 3;
                continue;
            }
            let n: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
            let (slot, bit) = match k {
                "cpu" => (&mut saved.cpu_core_seconds, 0),
                "memory" => (&mut saved.memory_byte_seconds, 1),
                "cost" => (&mut saved.cost, 2),
                "cpuRate" => (&mut saved.cpu_rate, 4),
                "memoryRate" => (&mut saved.memory_rate, 5),
                _ => return None,
            };
            *slot = n;
            seen |= 1 << bit;
        }
        (seen == 0b11_1111).then_some(saved)
    }

    pub fn format(&self) -> String {
        format!(
            "cpu={},memory={},cost={},at={},cpuRate={},memoryRate={}",
            self.cpu_core_seconds,
            self.memory_byte_seconds,
            self.cost,
            crate::model::format_instant(self.at),
            self.cpu_rate,
            self.memory_rate
        )
    }
}

/// Cut a description to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::format_instant;
    use proptest::prelude::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_fully_annotated_namespace_reads_back() {
        let (o, errors) = Overrides::parse(&ann(&[
            (ENABLED, "true"),
            (IDLE_AFTER, "1h30m"),
            (SCHEDULE, "office-hours"),
            (WAKE_ON, "http"),
            (WAKE_PAGE, "never"),
            (KEEP_AWAKE_UNTIL, "2026-12-01T18:00:00Z"),
            (ACTION, "wake"),
        ]));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(o.enabled, Some(Enabled::Yes));
        assert_eq!(
            o.idle_after,
            Some(IdleAfter::After(Duration::from_secs(5400)))
        );
        assert_eq!(o.schedule.as_deref(), Some("office-hours"));
        assert_eq!(
            o.wake_on,
            Some(WakeOn {
                api: false,
                http: true
            })
        );
        assert_eq!(o.wake_page, Some(WakePage::Never));
        assert_eq!(o.action, Some(Action::Wake));
        assert_eq!(
            o.keep_awake_until.map(format_instant).as_deref(),
            Some("2026-12-01T18:00:00Z")
        );
    }

    #[test]
    fn every_bad_annotation_is_named() {
        let (o, errors) = Overrides::parse(&ann(&[
            (ENABLED, "yes"),
            (IDLE_AFTER, "banana"),
            (WAKE_ON, "api,smtp"),
            (KEEP_AWAKE_UNTIL, "tomorrow"),
            (ACTION, "nap"),
            // Never read as false: a typo must not let a namespace be deleted.
            (KEEP, "yes"),
            (WAKE_WITH_ORDER, "after"),
        ]));
        let named: Vec<_> = errors.iter().map(|e| e.annotation).collect();
        assert_eq!(
            named,
            vec![
                ENABLED,
                IDLE_AFTER,
                WAKE_ON,
                KEEP_AWAKE_UNTIL,
                ACTION,
                KEEP,
                WAKE_WITH_ORDER
            ]
        );
        assert_eq!((o.keep, o.wake_with_order), (None, None));
        assert!(errors[1].to_string().contains("siesta.dev/idle-after"));
        assert_eq!(o.enabled, None);
        let (o, _) = Overrides::parse(&ann(&[(WAKE_WITH_ORDER, "before")]));
        assert_eq!(o.wake_with_order, Some(WakeWithOrder::Before));
    }

    #[test]
    fn idle_after_off_and_wake_on_none() {
        assert_eq!(IdleAfter::parse("off"), Ok(IdleAfter::Off));
        assert_eq!(
            WakeOn::parse("none"),
            Ok(WakeOn {
                api: false,
                http: false
            })
        );
        assert_eq!(WakeOn::parse("api, http"), Ok(WakeOn::default()));
    }

    #[test]
    fn recorded_state_defaults_to_awake() {
        let r = Recorded::parse(&ann(&[
            (STATE, "asleep"),
            (REASON, "idle"),
            (STATE_SINCE, "2026-01-01T00:00:00Z"),
        ]));
        assert_eq!(r.state, State::Asleep);
        assert_eq!(r.reason, Some(Reason::Idle));
        assert_eq!(
            Recorded::parse(&ann(&[(STATE, "garbage")])).state,
            State::Awake
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 10), "abc");
    }

    proptest! {
        #[test]
        fn parsing_random_annotations_never_panics(
            vals in proptest::collection::vec("\\PC{0,40}", 8)
        ) {
            let names = [ENABLED, IDLE_AFTER, SCHEDULE, AWAKE_HOURS, WAKE_ON, WAKE_PAGE, KEEP_AWAKE_UNTIL, ACTION];
            let map: BTreeMap<String, String> = names.iter().zip(vals.iter()).map(|(k, v)| (k.to_string(), v.clone())).collect();
            let (_o, errors) = Overrides::parse(&map);
            for e in errors { prop_assert!(e.annotation.starts_with(PREFIX)); }
        }
    }

    #[test]
    fn saved_totals_round_trip_and_anything_else_is_refused() {
        let saved = Saved {
            cpu_core_seconds: 7200.5,
            memory_byte_seconds: 3.8e12,
            cost: 0.0674,
            at: crate::model::parse_instant("2026-12-02T18:00:00Z").unwrap(),
            cpu_rate: 2.0,
            memory_rate: 1073741824.0,
        };
        assert_eq!(Saved::parse(&saved.format()), Some(saved));
        let good = saved.format();
        for bad in [
            "",
            "cpu=1",
            &good.replace("cpu=7200.5", "cpu=-1"),
            &good.replace("cpu=7200.5", "cpu=NaN"),
            &good.replace("cpu=7200.5", "cpu=inf"),
            &good.replace("at=2026-12-02T18:00:00Z", "at=yesterday"),
            &format!("{good},extra=1"),
        ] {
            assert_eq!(Saved::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn enabled_is_true_false_or_observe_and_nothing_else() {
        for (v, want) in [
            ("true", Ok(Enabled::Yes)),
            ("false", Ok(Enabled::No)),
            (" observe ", Ok(Enabled::Observe)),
        ] {
            assert_eq!(Enabled::parse(v), want, "{v:?}");
        }
        for bad in ["yes", "Observe", "dry-run", ""] {
            assert!(Enabled::parse(bad).is_err(), "{bad:?}");
        }
        let (_, errors) = Overrides::parse(&ann(&[(ENABLED, "observing")]));
        assert_eq!(errors[0].annotation, ENABLED);
        assert!(errors[0].message.contains("observe"), "{}", errors[0]);
    }

    #[test]
    fn observed_totals_round_trip_and_anything_else_is_refused() {
        let t = ObservedTotals {
            sleeps: 3,
            wakes: 2,
            asleep_seconds: 5400.5,
            from: crate::model::parse_instant("2026-12-01T09:00:00Z").unwrap(),
        };
        assert_eq!(ObservedTotals::parse(&t.format()), Some(t));
        let good = t.format();
        for bad in [
            "",
            "sleeps=1",
            &good.replace("sleeps=3", "sleeps=-1"),
            &good.replace("asleep=5400.5", "asleep=NaN"),
            &format!("{good},extra=1"),
        ] {
            assert_eq!(ObservedTotals::parse(bad), None, "{bad:?}");
        }
        let since = crate::model::parse_instant("2026-12-02T09:00:00Z").unwrap();
        let now = crate::model::parse_instant("2026-12-02T10:00:00Z").unwrap();
        assert_eq!(t.asleep_until(Some(since), now), 5400.5 + 3600.0);
        assert_eq!(t.asleep_until(None, now), 5400.5);
    }
}
