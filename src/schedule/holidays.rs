//! Holidays on a named schedule: whole local days in one zone on which the
//! schedule is asleep (or, in `awake` mode, awake), whatever it says
//! otherwise. Days come from dates and ranges in the admin config and from
//! RFC 5545 calendars ([`super::ical`]); here they are only a sorted list of
//! day spans, and [`WithHolidays`] lays them over a schedule.
use std::fmt;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use super::{Phase, Schedule, ScheduleError, err, resolve};

/// Calendars are expanded up to this day (exclusive): a rule without an end
/// is followed that far, and nothing later counts.
pub const HORIZON: NaiveDate = match NaiveDate::from_ymd_opt(2100, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};
/// How far [`WithHolidays`] looks for a change (as cron pairs do).
const LOOK: TimeDelta = TimeDelta::days(5 * 366 + 1);
/// A bound on the candidates one look at the next or last change visits.
const MAX_STEPS: usize = 4_000;

/// What a holiday does to the schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HolidayMode {
    /// Asleep all day (the default).
    #[default]
    Asleep,
    /// Awake all day.
    Awake,
}

impl HolidayMode {
    pub fn parse(s: &str) -> Result<HolidayMode, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "asleep" => Ok(HolidayMode::Asleep),
            "awake" => Ok(HolidayMode::Awake),
            _ => Err(format!(
                "{s:?} is not a holiday mode: asleep (the default) or awake"
            )),
        }
    }

    pub fn phase(self) -> Phase {
        match self {
            HolidayMode::Asleep => Phase::Asleep,
            HolidayMode::Awake => Phase::Awake,
        }
    }
}

/// `2026-12-24`, or an inclusive range `2026-12-28..2026-12-31`, as the
/// half-open span `[first, end)`.
pub fn parse_dates(s: &str) -> Result<(NaiveDate, NaiveDate), ScheduleError> {
    let s = s.trim();
    let day = |d: &str| {
        let d = d.trim();
        let ok = d.len() == 10 && d.as_bytes()[4] == b'-' && d.as_bytes()[7] == b'-';
        ok.then(|| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .flatten()
            .ok_or_else(|| {
                ScheduleError(format!(
                    "{d:?} is not a date YYYY-MM-DD (a holiday is 2026-12-24, or a range 2026-12-28..2026-12-31)"
                ))
            })
    };
    let (first, last) = match s.split_once("..") {
        Some((a, b)) => (day(a)?, day(b)?),
        None => {
            let d = day(s)?;
            (d, d)
        }
    };
    if last < first {
        return err(format!("{s:?}: the range ends before it starts"));
    }
    match last.succ_opt() {
        Some(end) if first < HORIZON => Ok((first, end.min(HORIZON))),
        _ => err(format!("{s:?}: holidays end before {HORIZON}")),
    }
}

/// Holiday days in one zone.
#[derive(Clone, Debug, PartialEq)]
pub struct Holidays {
    pub tz: Tz,
    pub mode: HolidayMode,
    /// Sorted half-open `[first, end)` day spans, merged: no two touch.
    spans: Vec<(NaiveDate, NaiveDate)>,
}

impl Holidays {
    pub fn new(
        tz: Tz,
        mode: HolidayMode,
        spans: impl IntoIterator<Item = (NaiveDate, NaiveDate)>,
    ) -> Holidays {
        let mut all: Vec<_> = spans.into_iter().filter(|(a, b)| a < b).collect();
        all.sort();
        let mut merged: Vec<(NaiveDate, NaiveDate)> = Vec::with_capacity(all.len());
        for (a, b) in all {
            match merged.last_mut() {
                Some((_, end)) if a <= *end => *end = (*end).max(b),
                _ => merged.push((a, b)),
            }
        }
        Holidays {
            tz,
            mode,
            spans: merged,
        }
    }

    /// The day spans, sorted and merged.
    pub fn spans(&self) -> &[(NaiveDate, NaiveDate)] {
        &self.spans
    }

    /// Holiday days in all.
    pub fn days(&self) -> i64 {
        self.spans.iter().map(|(a, b)| (*b - *a).num_days()).sum()
    }

    fn instants(&self, (first, end): (NaiveDate, NaiveDate)) -> (DateTime<Utc>, DateTime<Utc>) {
        let midnight = |d: NaiveDate| resolve(self.tz, d.and_time(chrono::NaiveTime::MIN));
        (midnight(first), midnight(end))
    }

    /// Index of the first span that could hold or follow `t`.
    fn near(&self, t: DateTime<Utc>) -> usize {
        let day = t.with_timezone(&self.tz).date_naive();
        // A midnight in a fold or a gap can put an instant a day off its date.
        let before = day.pred_opt().unwrap_or(day);
        self.spans.partition_point(|(_, end)| *end < before)
    }

    /// The holiday (as instants) that `t` is in.
    pub fn span_at(&self, t: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.spans[self.near(t)..]
            .iter()
            .take(3)
            .map(|s| self.instants(*s))
            .find(|(s, e)| *s <= t && t < *e)
    }

    /// The first holiday start after `t`.
    fn next_start(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.spans[self.near(t)..]
            .iter()
            .map(|s| self.instants(*s).0)
            .find(|s| *s > t)
    }

    /// The last holiday end at or before `t`.
    fn last_end(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let upto = (self.near(t) + 3).min(self.spans.len());
        self.spans[..upto]
            .iter()
            .rev()
            .map(|s| self.instants(*s).1)
            .find(|e| *e <= t)
    }

    /// The spans that end after `day`, at most `n`: what `siesta schedule` lists.
    pub fn upcoming(&self, day: NaiveDate, n: usize) -> &[(NaiveDate, NaiveDate)] {
        let from = self.spans.partition_point(|(_, end)| *end <= day);
        &self.spans[from..(from + n).min(self.spans.len())]
    }
}

/// A schedule with holidays laid over it.
#[derive(Clone, Debug, PartialEq)]
pub struct WithHolidays {
    pub base: Schedule,
    pub holidays: Holidays,
}

impl WithHolidays {
    pub fn phase_at(&self, t: DateTime<Utc>) -> Phase {
        match self.holidays.span_at(t) {
            Some(_) => self.holidays.mode.phase(),
            None => self.base.phase_at(t),
        }
    }

    /// Candidates are holiday ends inside a holiday, and the base's changes and
    /// holiday starts outside one; the first that changes the phase wins.
    pub fn next_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let now = self.phase_at(t);
        let mut c = t;
        for _ in 0..MAX_STEPS {
            let next = match self.holidays.span_at(c) {
                Some((_, end)) => Some(end),
                None => [self.base.next_change(c), self.holidays.next_start(c)]
                    .into_iter()
                    .flatten()
                    .min(),
            }?;
            if next - t > LOOK {
                return None;
            }
            if self.phase_at(next) != now {
                return Some(next);
            }
            c = next;
        }
        None
    }

    /// The same walk backwards: holiday starts inside a holiday, the base's
    /// changes and holiday ends outside one.
    pub fn last_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let now = self.phase_at(t);
        let mut c = t;
        for _ in 0..MAX_STEPS {
            let last = match self.holidays.span_at(c) {
                Some((start, _)) => Some(start),
                None => [self.base.last_change(c), self.holidays.last_end(c)]
                    .into_iter()
                    .flatten()
                    .max(),
            }?;
            if t - last > LOOK {
                return None;
            }
            let just_before = last - TimeDelta::nanoseconds(1);
            if self.phase_at(just_before) != now {
                return Some(last);
            }
            c = just_before;
        }
        None
    }
}

impl fmt::Display for WithHolidays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {} on {} holiday days ({})",
            self.base,
            self.holidays.mode.phase(),
            self.holidays.days(),
            self.holidays.tz.name()
        )
    }
}
