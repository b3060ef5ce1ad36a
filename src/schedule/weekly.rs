//! Weekly awake hours in kube-downscaler's syntax: windows such as
//! `Mon-Fri 07:30-20:30 Europe/Berlin` and absolute ranges; awake inside any.
use chrono::{DateTime, Datelike, Days, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use super::{Phase, ScheduleError, err, parse_zone, resolve};

/// Weekly windows are scanned in chunks of this length.
const CHUNK: TimeDelta = TimeDelta::days(15);
/// How long weekly windows may leave the phase unchanged before the scan stops
/// looking (a year: every daylight-saving rule repeats within it).
const QUIET_SPAN: TimeDelta = TimeDelta::days(400);
/// A bound on the work of one scan, whatever the spec.
const MAX_CHUNKS: usize = 200;
/// Comma-separated entries in one awake-hours spec: each costs work at every
/// evaluation, and an annotation is written by users.
const MAX_ENTRIES: usize = 50;

/// Weekly windows and absolute ranges (`siesta.dev/awake-hours`).
#[derive(Clone, Debug, PartialEq)]
pub struct AwakeHours {
    pub(super) spec: String,
    windows: Vec<Window>,
    /// Sorted half-open `[start, end)` ranges.
    ranges: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl AwakeHours {
    /// A comma-separated list of weekly windows and absolute ranges (not
    /// `always` or `never`, which [`super::Schedule::parse_awake_hours`] reads).
    pub(super) fn parse(trimmed: &str) -> Result<AwakeHours, ScheduleError> {
        let entries = trimmed.split(',').count();
        if entries > MAX_ENTRIES {
            return err(format!(
                "awake-hours: {entries} entries, more than the {MAX_ENTRIES} allowed"
            ));
        }
        let mut windows = Vec::new();
        let mut ranges = Vec::new();
        for part in trimmed.split(',').map(str::trim) {
            if part.is_empty() {
                return err(format!(
                    "awake-hours {trimmed:?}: empty entry between commas"
                ));
            }
            // GoKubeDownscaler's entries: `always` (`true`) and `never`
            // (`false`); the caller makes the first win over the whole list.
            if keyword(part).is_some() {
                continue;
            }
            if part.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                ranges.push(parse_range(part)?);
            } else if let Some(w) = Window::parse(part)? {
                windows.push(w);
            }
        }
        ranges.sort();
        Ok(AwakeHours {
            spec: trimmed.to_string(),
            windows,
            ranges,
        })
    }
}

/// `always`/`true` is `Some(true)`, `never`/`false` `Some(false)`, any case.
pub(super) fn keyword(entry: &str) -> Option<bool> {
    let is = |words: [&str; 2]| words.iter().any(|w| entry.eq_ignore_ascii_case(w));
    if is(["always", "true"]) {
        Some(true)
    } else if is(["never", "false"]) {
        Some(false)
    } else {
        None
    }
}

/// `Mon-Fri 07:30-20:30 Europe/Berlin`: awake from the start time on each listed
/// day until the end time (the next day if the end is not after the start).
#[derive(Clone, Debug, PartialEq)]
struct Window {
    /// Days the window starts on, Monday first.
    days: [bool; 7],
    /// Minutes after local midnight; `end` may be 1440 (24:00).
    start: u32,
    end: u32,
    tz: Tz,
}

pub(super) const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FORMAT_HINT: &str = "expected DAYS HH:MM-HH:MM ZONE such as \"Mon-Fri 07:30-20:30 Europe/Berlin\", or an absolute range such as \"2026-12-24T00:00:00+01:00-2026-12-27T00:00:00+01:00\"";

impl Window {
    /// `None` for a window that starts and ends at the same time: it is never
    /// awake, as in kube-downscaler and GoKubeDownscaler.
    fn parse(part: &str) -> Result<Option<Window>, ScheduleError> {
        let tokens: Vec<&str> = part.split_whitespace().collect();
        let [days, times, zone] = tokens[..] else {
            if tokens.len() == 2 && tokens[1].contains(':') {
                return err(format!("{part:?}: missing time zone; {FORMAT_HINT}"));
            }
            return err(format!("{part:?}: {FORMAT_HINT}"));
        };
        let days = parse_days(days).map_err(|e| ScheduleError(format!("{part:?}: {e}")))?;
        let (start, end) = times.split_once('-').ok_or_else(|| {
            ScheduleError(format!("{part:?}: times {times:?} are not HH:MM-HH:MM"))
        })?;
        let start =
            parse_clock(start, false).map_err(|e| ScheduleError(format!("{part:?}: {e}")))?;
        let end = parse_clock(end, true).map_err(|e| ScheduleError(format!("{part:?}: {e}")))?;
        let tz = parse_zone(zone).map_err(|e| ScheduleError(format!("{part:?}: {e}")))?;
        Ok((start != end).then_some(Window {
            days,
            start,
            end,
            tz,
        }))
    }

    /// The occurrence starting on local `date`, as instants, if the window runs
    /// that day and is not swallowed whole by a gap.
    fn occurrence(&self, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if !self.days[date.weekday().num_days_from_monday() as usize] {
            return None;
        }
        let midnight = date.and_hms_opt(0, 0, 0)?;
        let start = resolve(self.tz, midnight + TimeDelta::minutes(self.start.into()));
        let end_minutes = if self.end > self.start {
            self.end
        } else {
            self.end + 1440
        };
        let end = resolve(self.tz, midnight + TimeDelta::minutes(end_minutes.into()));
        (start < end).then_some((start, end))
    }

    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }

    fn contains(&self, t: DateTime<Utc>) -> bool {
        let d = self.local_date(t);
        [d.pred_opt(), Some(d), d.succ_opt()]
            .into_iter()
            .flatten()
            .filter_map(|date| self.occurrence(date))
            .any(|(s, e)| s <= t && t < e)
    }

    /// Every start and end instant in `[lo, hi]`.
    fn boundaries(&self, lo: DateTime<Utc>, hi: DateTime<Utc>, out: &mut Vec<DateTime<Utc>>) {
        let Some(mut date) = self.local_date(lo).checked_sub_days(Days::new(2)) else {
            return;
        };
        let last = self.local_date(hi);
        while date <= last {
            if let Some((s, e)) = self.occurrence(date) {
                out.extend([s, e].into_iter().filter(|b| lo <= *b && *b <= hi));
            }
            match date.succ_opt() {
                Some(d) => date = d,
                None => break,
            }
        }
    }
}

/// `Mon-Fri`, `Sat-Sun`, `Sun-Thu` (wraps around), or a single day `Sat`.
fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let day = |name: &str| {
        WEEKDAYS
            .iter()
            .position(|d| d.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("{name:?} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
    };
    let (from, to) = match s.split_once('-') {
        Some((a, b)) => (day(a)?, day(b)?),
        None => {
            let d = day(s)?;
            (d, d)
        }
    };
    let mut days = [false; 7];
    let mut d = from;
    loop {
        days[d] = true;
        if d == to {
            break;
        }
        d = (d + 1) % 7;
    }
    Ok(days)
}

/// `HH:MM` as minutes after midnight; `24:00` only as an end.
fn parse_clock(s: &str, is_end: bool) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a time of day HH:MM (00:00 to 23:59, or 24:00 as an end)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 {
        return Err(format!("{s:?}: minute {m} is out of range (00-59)"));
    }
    if h == 24 && m == 0 && is_end {
        return Ok(1440);
    }
    if h > 23 {
        return Err(format!(
            "{s:?}: hour {h} is out of range (00-23, or 24:00 as an end)"
        ));
    }
    Ok(h * 60 + m)
}

/// `2026-12-24T00:00:00+01:00-2026-12-27T00:00:00+01:00`: awake from the first
/// instant until the second (exclusive).
fn parse_range(part: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), ScheduleError> {
    let bad = || ScheduleError(format!("{part:?}: {FORMAT_HINT}"));
    // The first instant ends with `Z` (20 characters) or an offset (25).
    let split = if part
        .as_bytes()
        .get(19)
        .is_some_and(|b| b.eq_ignore_ascii_case(&b'Z'))
    {
        20
    } else {
        25
    };
    let (first, rest) = (
        part.get(..split).ok_or_else(bad)?,
        part.get(split..).ok_or_else(bad)?,
    );
    // GoKubeDownscaler allows spaces around the dash.
    let second = rest
        .trim_start()
        .strip_prefix('-')
        .ok_or_else(bad)?
        .trim_start();
    let instant = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ScheduleError(format!(
                    "{part:?}: {s:?} is not an instant such as 2026-12-24T00:00:00+01:00: {e}"
                ))
            })
    };
    let (start, end) = (instant(first)?, instant(second)?);
    if end <= start {
        return err(format!("{part:?}: the range ends before it starts"));
    }
    Ok((start, end))
}

impl AwakeHours {
    /// The zone of each weekly window, in the order written.
    pub(super) fn zones(&self) -> Vec<Tz> {
        self.windows.iter().map(|w| w.tz).collect()
    }

    pub fn phase_at(&self, t: DateTime<Utc>) -> Phase {
        let awake = self.ranges.iter().any(|(s, e)| *s <= t && t < *e)
            || self.windows.iter().any(|w| w.contains(t));
        if awake { Phase::Awake } else { Phase::Asleep }
    }

    fn phase_before(&self, t: DateTime<Utc>) -> Phase {
        self.phase_at(t - TimeDelta::nanoseconds(1))
    }

    /// The nearest phase change after `t` (forward) or at or before `t`
    /// (backward). Candidates are window starts and ends and range ends, taken
    /// chunk by chunk in time order. Windows in zones with different daylight-saving
    /// dates can leave the union unchanged for months, so the scan goes on for a
    /// year past `t` or past the last range end it crossed, then jumps to the next
    /// range end, or gives up.
    fn scan(&self, t: DateTime<Utc>, forward: bool) -> Option<DateTime<Utc>> {
        let now = self.phase_at(t);
        let step = |d: TimeDelta| if forward { d } else { -d };
        // `a` lies further along the scan than `b`.
        let ahead = |a: DateTime<Utc>, b: DateTime<Utc>| if forward { a > b } else { a < b };
        // Forward: the first instant after `t` where the phase is not `now`;
        // backward: the last instant up to `t` just before which it was not.
        let is_change = |c: DateTime<Utc>| {
            if forward {
                c > t && self.phase_at(c) != now
            } else {
                c <= t && self.phase_before(c) != now
            }
        };
        let ends: Vec<_> = self.ranges.iter().flat_map(|&(s, e)| [s, e]).collect();
        let mut pos = t;
        let mut quiet_until = t + step(QUIET_SPAN);
        let mut candidates = Vec::new();
        for _ in 0..MAX_CHUNKS {
            let next = pos + step(CHUNK);
            let (lo, hi) = (pos.min(next), pos.max(next));
            candidates.clear();
            for w in &self.windows {
                w.boundaries(lo, hi, &mut candidates);
            }
            let crossed = ends.iter().copied().filter(|e| lo <= *e && *e <= hi);
            candidates.extend(crossed.clone());
            candidates.sort();
            if !forward {
                candidates.reverse();
            }
            if let Some(c) = candidates.iter().copied().find(|c| is_change(*c)) {
                return Some(c);
            }
            if let Some(e) = crossed.reduce(|a, b| if ahead(a, b) { a } else { b }) {
                quiet_until = e + step(QUIET_SPAN);
            }
            pos = next;
            if !ahead(quiet_until, pos) {
                // Nothing changed for a year: only a range end can change it again.
                let e = ends
                    .iter()
                    .copied()
                    .filter(|e| ahead(*e, pos))
                    .reduce(|a, b| if ahead(a, b) { b } else { a })?;
                quiet_until = e + step(QUIET_SPAN);
                // The next chunk starts at the range end (a backward one just after it).
                pos = if forward {
                    e
                } else {
                    e + TimeDelta::nanoseconds(1)
                };
            }
        }
        None
    }

    pub fn next_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.scan(t, true)
    }

    pub fn last_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.scan(t, false)
    }
}
