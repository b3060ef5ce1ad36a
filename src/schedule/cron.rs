//! Cron pairs: asleep from each `sleep` firing until the next `wake` firing,
//! each a 5-field expression read as a Kubernetes CronJob reads it.
use chrono::{DateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::{Phase, ScheduleError, err, resolve};

/// How far [`Schedule::last_change`] and [`Schedule::next_change`] look for a
/// firing of a cron pair before answering `None` (5 years covers a leap day).
const CRON_HORIZON_DAYS: u64 = 5 * 366 + 1;
/// How many firings that change nothing (a sleep at the same instant as a wake)
/// are skipped before giving up.
const MAX_SKIPPED_FIRINGS: usize = 2_000;

/// One 5-field cron expression, as written and as parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct CronSpec {
    pub(super) text: String,
    cron: Cron,
}

impl CronSpec {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Parse a cron expression as a Kubernetes CronJob reads it: five fields (minute,
/// hour, day of month, month, day of week), names such as `MON` and `JAN`, the
/// macros `@yearly`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`.
/// Day of week 0 and 7 are Sunday; day of month and day of week are OR'ed when
/// both are restricted. Croner's extensions (`L`, `W`, `#`, seconds, years) are
/// refused, since a CronJob would refuse them too.
pub fn parse_cron(expr: &str) -> Result<CronSpec, ScheduleError> {
    let text = expr.trim();
    if text.is_empty() {
        return err("empty cron expression: expected 5 fields such as \"0 19 * * 1-5\"");
    }
    let expanded = match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        other if other.starts_with("@every") => {
            return err(format!(
                "cron {text:?}: @every is an interval, not a time of day; use 5 fields such as \"0 19 * * 1-5\""
            ));
        }
        other if other.starts_with('@') => {
            return err(format!(
                "cron {text:?}: unknown macro; use @yearly, @monthly, @weekly, @daily, @hourly or 5 fields"
            ));
        }
        other if other.starts_with("tz=") || other.starts_with("cron_tz=") => {
            return err(format!(
                "cron {text:?}: set the zone with `timezone`, not in the expression"
            ));
        }
        _ => text,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return err(format!(
            "cron {text:?}: expected 5 fields (minute hour day-of-month month day-of-week), got {}",
            fields.len()
        ));
    }
    const NAMES: [&str; 5] = ["minute", "hour", "day of month", "month", "day of week"];
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    for (i, field) in fields.iter().enumerate() {
        let allowed =
            |c: char| c.is_ascii_digit() || "*/,-".contains(c) || (c == '?' && (i == 2 || i == 4));
        for word in field
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|w| !w.is_empty())
        {
            let known = match i {
                3 => MONTHS.iter().any(|m| m.eq_ignore_ascii_case(word)),
                4 => DAYS.iter().any(|d| d.eq_ignore_ascii_case(word)),
                _ => false,
            };
            if !known {
                return err(format!(
                    "cron {text:?}: {word:?} is not allowed in the {} field",
                    NAMES[i]
                ));
            }
        }
        if let Some(c) = field
            .chars()
            .find(|c| !c.is_ascii_alphabetic() && !allowed(*c))
        {
            return err(format!(
                "cron {text:?}: {c:?} is not allowed in the {} field",
                NAMES[i]
            ));
        }
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .build();
    let cron = parser
        .parse(expanded)
        .map_err(|e| ScheduleError(format!("cron {text:?}: {e}")))?;
    // A pattern that never fires (30 February) would make every search run to
    // the end of croner's calendar.
    let reference = Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).single();
    let fires = reference
        .and_then(|r| cron.find_next_occurrence(&r, false).ok())
        .is_some_and(|n| {
            n < Utc
                .with_ymd_and_hms(2010, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or(n)
        });
    if !fires {
        return err(format!("cron {text:?} never fires"));
    }
    Ok(CronSpec {
        text: text.to_string(),
        cron,
    })
}

/// Asleep from each `sleep` firing until the next `wake` firing. A sleep and a
/// wake at the same instant: awake wins.
#[derive(Clone, Debug, PartialEq)]
pub struct CronPair {
    pub(super) sleep: CronSpec,
    pub(super) wake: CronSpec,
    pub(super) tz: Tz,
}

impl CronPair {
    pub fn new(sleep: CronSpec, wake: CronSpec, tz: Tz) -> Result<CronPair, ScheduleError> {
        if sleep.cron.pattern == wake.cron.pattern {
            return err(format!(
                "sleep and wake are the same times ({:?}), so it never sleeps",
                sleep.text
            ));
        }
        Ok(CronPair { sleep, wake, tz })
    }

    fn horizon(t: DateTime<Utc>, forward: bool) -> DateTime<Utc> {
        let span = TimeDelta::days(CRON_HORIZON_DAYS as i64);
        if forward { t + span } else { t - span }
    }

    /// The first firing strictly after `t`.
    pub(super) fn next_firing(&self, spec: &CronSpec, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let limit = Self::horizon(t, true);
        // Whole seconds: croner compares the seconds field, and firings are on them.
        let mut local = t.with_timezone(&self.tz).naive_local().with_nanosecond(0)?;
        for _ in 0..MAX_SKIPPED_FIRINGS {
            let n = spec
                .cron
                .find_next_occurrence(&Utc.from_utc_datetime(&local), false)
                .ok()?
                .naive_utc();
            let at = resolve(self.tz, n);
            if at > limit {
                return None;
            }
            if at > t {
                return Some(at);
            }
            local = n;
        }
        None
    }

    /// The last firing at or before `t`.
    fn last_firing(&self, spec: &CronSpec, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let limit = Self::horizon(t, false);
        // In the second pass through a fold, later wall times map (to their first
        // occurrence) before `t`: start from the largest offset of the last days.
        let offset = |at: DateTime<Utc>| {
            i64::from(
                self.tz
                    .offset_from_utc_datetime(&at.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        };
        let widest = [t, t - TimeDelta::days(1), t - TimeDelta::days(2)]
            .into_iter()
            .map(offset)
            .max()
            .unwrap_or(0);
        let mut local = (t.naive_utc() + TimeDelta::seconds(widest)).with_nanosecond(0)?;
        let mut inclusive = true;
        for _ in 0..MAX_SKIPPED_FIRINGS {
            let n = spec
                .cron
                .find_previous_occurrence(&Utc.from_utc_datetime(&local), inclusive)
                .ok()?
                .naive_utc();
            let at = resolve(self.tz, n);
            if at < limit {
                return None;
            }
            if at <= t {
                return Some(at);
            }
            local = n;
            inclusive = false;
        }
        None
    }

    fn wakes_at(&self, t: DateTime<Utc>) -> bool {
        self.last_firing(&self.wake, t) == Some(t)
    }

    pub fn phase_at(&self, t: DateTime<Utc>) -> Phase {
        match (
            self.last_firing(&self.sleep, t),
            self.last_firing(&self.wake, t),
        ) {
            (Some(s), Some(w)) if s > w => Phase::Asleep,
            (Some(_), None) => Phase::Asleep,
            _ => Phase::Awake,
        }
    }

    /// The first sleep firing after `t` that is not also a wake.
    fn next_effective_sleep(&self, mut t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        for _ in 0..MAX_SKIPPED_FIRINGS {
            let s = self.next_firing(&self.sleep, t)?;
            if !self.wakes_at(s) {
                return Some(s);
            }
            t = s;
        }
        None
    }

    pub fn next_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.phase_at(t) {
            Phase::Awake => self.next_effective_sleep(t),
            Phase::Asleep => self.next_firing(&self.wake, t),
        }
    }

    pub fn last_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.phase_at(t) {
            Phase::Awake => {
                // The last sleep that took effect, then the first wake after it.
                let mut at = t;
                let slept = loop {
                    let s = self.last_firing(&self.sleep, at)?;
                    if !self.wakes_at(s) {
                        break s;
                    }
                    at = s - TimeDelta::nanoseconds(1);
                };
                self.next_firing(&self.wake, slept).filter(|w| *w <= t)
            }
            Phase::Asleep => {
                let woke = self.last_firing(&self.wake, t)?;
                self.next_effective_sleep(woke).filter(|s| *s <= t)
            }
        }
    }
}
