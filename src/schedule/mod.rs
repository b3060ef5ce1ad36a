//! Schedules: when a namespace should be awake. Two forms, both pure functions of
//! the instant asked about:
//!
//! - weekly awake hours in kube-downscaler's syntax (`Mon-Fri 07:30-20:30 Europe/Berlin`,
//!   comma-separated, absolute ranges, `always`, `never`), in `weekly.rs`;
//! - a cron pair (`sleep`, `wake`, `timezone`) read as Kubernetes CronJobs read
//!   cron, in `cron.rs`;
//! - either with holidays laid over it (whole local days asleep or awake), in
//!   `holidays.rs`, the days read from dates and RFC 5545 calendars (`ical.rs`).
//!
//! Phases change *at* an instant: at a window's start the namespace is awake, at
//! its end asleep. Local times are mapped to instants in one place,
//! [`resolve`]: a time in a spring-forward gap means the first valid instant
//! after the gap, and a time in a fall-back fold means its first occurrence, so
//! it fires once. Where specs overlap, awake wins. docs/schedules.md has the
//! user-facing rules and where Siesta differs from kube-downscaler and Kubernetes.
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

mod cron;
mod holidays;
pub mod ical;
mod weekly;
mod windows_zones;

pub use cron::{CronPair, CronSpec, parse_cron};
pub use holidays::{HORIZON, HolidayMode, Holidays, WithHolidays, parse_dates};
pub use weekly::AwakeHours;

/// Whether a schedule wants the namespace awake or asleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Awake,
    Asleep,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Awake => "awake",
            Phase::Asleep => "asleep",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ScheduleError> {
    Err(ScheduleError(msg.into()))
}

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Always,
    Never,
    /// Weekly windows and absolute ranges; awake inside any of them.
    AwakeHours(AwakeHours),
    /// Asleep from each `sleep` firing until the next `wake` firing.
    Cron(Box<CronPair>),
    /// Another schedule, overridden on holidays.
    Holidays(Box<WithHolidays>),
}

impl Schedule {
    /// Parse the `siesta.dev/awake-hours` syntax.
    pub fn parse_awake_hours(spec: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = spec.trim();
        if trimmed.is_empty() {
            return err(
                "empty awake-hours spec: use `always`, `never`, or windows such as \"Mon-Fri 07:30-20:30 Europe/Berlin\"",
            );
        }
        let hours = AwakeHours::parse(trimmed)?;
        // `always` anywhere in the list wins (awake wins); a list of nothing
        // but `never` is never awake.
        let words: Vec<Option<bool>> = trimmed
            .split(',')
            .map(|e| weekly::keyword(e.trim()))
            .collect();
        if words.contains(&Some(true)) {
            return Ok(Schedule::Always);
        }
        if words.iter().all(|w| *w == Some(false)) {
            return Ok(Schedule::Never);
        }
        Ok(Schedule::AwakeHours(hours))
    }

    /// A cron pair: asleep from each `sleep` firing until the next `wake` firing,
    /// both read in `timezone`.
    pub fn cron(sleep: &str, wake: &str, timezone: &str) -> Result<Schedule, ScheduleError> {
        let sleep = parse_cron(sleep).map_err(|e| ScheduleError(format!("sleep: {e}")))?;
        let wake = parse_cron(wake).map_err(|e| ScheduleError(format!("wake: {e}")))?;
        let tz = parse_zone(timezone)?;
        CronPair::new(sleep, wake, tz).map(|c| Schedule::Cron(Box::new(c)))
    }

    /// The phase at `now`.
    pub fn phase_at(&self, now: DateTime<Utc>) -> Phase {
        match self {
            Schedule::Always => Phase::Awake,
            Schedule::Never => Phase::Asleep,
            Schedule::AwakeHours(a) => a.phase_at(now),
            Schedule::Cron(c) => c.phase_at(now),
            Schedule::Holidays(h) => h.phase_at(now),
        }
    }

    /// The most recent instant at or before `now` at which the phase changed
    /// (looking back a bounded time); `None` if it has not changed in that time.
    pub fn last_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Always | Schedule::Never => None,
            Schedule::AwakeHours(a) => a.last_change(now),
            Schedule::Cron(c) => c.last_change(now),
            Schedule::Holidays(h) => h.last_change(now),
        }
    }

    /// The first instant after `now` at which the phase changes, if any.
    pub fn next_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Always | Schedule::Never => None,
            Schedule::AwakeHours(a) => a.next_change(now),
            Schedule::Cron(c) => c.next_change(now),
            Schedule::Holidays(h) => h.next_change(now),
        }
    }

    /// The time zones the schedule names, each once, in the order written
    /// (absolute ranges name none).
    pub fn zones(&self) -> Vec<Tz> {
        let mut out: Vec<Tz> = Vec::new();
        let named = match self {
            Schedule::Always | Schedule::Never => Vec::new(),
            Schedule::AwakeHours(a) => a.zones(),
            Schedule::Cron(c) => vec![c.tz],
            Schedule::Holidays(h) => h.base.zones(),
        };
        for tz in named {
            if !out.contains(&tz) {
                out.push(tz);
            }
        }
        out
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Always => f.write_str("always"),
            Schedule::Never => f.write_str("never"),
            Schedule::AwakeHours(a) => f.write_str(&a.spec),
            Schedule::Cron(c) => write!(
                f,
                "sleep {:?}, wake {:?} ({})",
                c.sleep.text,
                c.wake.text,
                c.tz.name()
            ),
            Schedule::Holidays(h) => write!(f, "{h}"),
        }
    }
}

/// A zone name from the IANA database, such as `Europe/Berlin` or `UTC`. Like
/// kube-downscaler (pytz), the case of the name does not matter.
pub fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    let name = name.trim();
    if name.is_empty() {
        return err(
            "empty time zone: name one from the IANA database, such as Europe/Berlin or UTC",
        );
    }
    if let Ok(tz) = Tz::from_str(name) {
        return Ok(tz);
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .find(|tz| tz.name().eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| ScheduleError(format!("unknown time zone {name:?}: name one from the IANA database, such as Europe/Berlin or UTC")))
}

/// The instant a local wall-clock time means in `tz`: the first occurrence in a
/// fall-back fold, and the first valid instant after a spring-forward gap.
pub fn resolve(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => after_gap(tz, local),
    }
}

/// The first valid instant after `local`, which lies in a gap. Gaps are at most a
/// day long (Pacific/Kiritimati skipped 31 December 1994), so the end is found by
/// bisection on the wall clock, to the second.
fn after_gap(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let valid = |seconds: i64| {
        tz.from_local_datetime(&(local + TimeDelta::seconds(seconds)))
            .earliest()
    };
    // `lo` is always in the gap, `hi` valid once found.
    let (mut lo, mut hi) = (0i64, 86_400i64);
    while valid(hi).is_none() && hi < 4 * 86_400 {
        hi += 86_400;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if valid(mid).is_some() {
            hi = mid
        } else {
            lo = mid
        }
    }
    valid(hi).map_or_else(|| Utc.from_utc_datetime(&local), |t| t.with_timezone(&Utc))
}

// `siesta schedule`

impl Schedule {
    /// The phase at `at` and the next change (or `never`), as two lines: what
    /// `siesta schedule` prints.
    /// With holidays, more lines follow: whether `at` is on one, and the
    /// next few.
    pub fn describe(&self, at: DateTime<Utc>) -> String {
        let next = self
            .next_change(at)
            .map_or_else(|| "never".to_string(), crate::model::format_instant);
        let mut out = format!("{}\n{next}\n", self.phase_at(at));
        if let Schedule::Holidays(h) = self {
            let days = &h.holidays;
            let zone = days.tz.name();
            let mode = days.mode.phase();
            if days.span_at(at).is_some() {
                out.push_str(&format!("holiday: {mode} all day ({zone})\n"));
            }
            let today = at.with_timezone(&days.tz).date_naive();
            let list: Vec<String> = days
                .upcoming(today, 5)
                .iter()
                .map(|&(first, end)| {
                    let last = end.pred_opt().unwrap_or(first);
                    if last == first {
                        first.to_string()
                    } else {
                        format!("{first}..{last}")
                    }
                })
                .collect();
            let list = if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            };
            out.push_str(&format!("next holidays ({mode}, {zone}): {list}\n"));
        }
        out
    }
}

#[cfg(test)]
mod holiday_tests;
#[cfg(test)]
mod tests;
