//! Schedules: when a namespace should be awake. Two forms, both pure functions of
//! the instant asked about:
//!
//! - weekly awake hours in kube-downscaler's syntax (`Mon-Fri 07:30-20:30 Europe/Berlin`,
//!   comma-separated, absolute ranges, `always`, `never`);
//! - a cron pair (`sleep`, `wake`, `timezone`) read as Kubernetes CronJobs read cron.
//!
//! Phases change *at* an instant: at a window's start the namespace is awake, at
//! its end asleep. Local times are mapped to instants in one place,
//! [`resolve`]: a time in a spring-forward gap means the first valid instant
//! after the gap, and a time in a fall-back fold means its first occurrence, so
//! it fires once. Where specs overlap, awake wins. docs/schedules.md has the
//! user-facing rules and where Siesta differs from kube-downscaler and Kubernetes.
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

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
}

/// How far [`Schedule::last_change`] and [`Schedule::next_change`] look for a
/// firing of a cron pair before answering `None` (5 years covers a leap day).
const CRON_HORIZON_DAYS: u64 = 5 * 366 + 1;
/// How many firings that change nothing (a sleep at the same instant as a wake)
/// are skipped before giving up.
const MAX_SKIPPED_FIRINGS: usize = 2_000;
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

impl Schedule {
    /// Parse the `siesta.dev/awake-hours` syntax.
    pub fn parse_awake_hours(spec: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = spec.trim();
        if trimmed.is_empty() {
            return err(
                "empty awake-hours spec: use `always`, `never`, or windows such as \"Mon-Fri 07:30-20:30 Europe/Berlin\"",
            );
        }
        if trimmed.eq_ignore_ascii_case("always") {
            return Ok(Schedule::Always);
        }
        if trimmed.eq_ignore_ascii_case("never") {
            return Ok(Schedule::Never);
        }
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
            if part.eq_ignore_ascii_case("always") || part.eq_ignore_ascii_case("never") {
                return err(format!(
                    "awake-hours {trimmed:?}: `{part}` must be the whole spec, not one entry of a list"
                ));
            }
            if part.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                ranges.push(parse_range(part)?);
            } else {
                windows.push(Window::parse(part)?);
            }
        }
        ranges.sort();
        Ok(Schedule::AwakeHours(AwakeHours {
            spec: trimmed.to_string(),
            windows,
            ranges,
        }))
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
        }
    }

    /// The most recent instant at or before `now` at which the phase changed
    /// (looking back a bounded time); `None` if it has not changed in that time.
    pub fn last_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Always | Schedule::Never => None,
            Schedule::AwakeHours(a) => a.last_change(now),
            Schedule::Cron(c) => c.last_change(now),
        }
    }

    /// The first instant after `now` at which the phase changes, if any.
    pub fn next_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Always | Schedule::Never => None,
            Schedule::AwakeHours(a) => a.next_change(now),
            Schedule::Cron(c) => c.next_change(now),
        }
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

// ---------------------------------------------------------------------------
// Weekly awake hours

/// Weekly windows and absolute ranges (`siesta.dev/awake-hours`).
#[derive(Clone, Debug, PartialEq)]
pub struct AwakeHours {
    spec: String,
    windows: Vec<Window>,
    /// Sorted half-open `[start, end)` ranges.
    ranges: Vec<(DateTime<Utc>, DateTime<Utc>)>,
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

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FORMAT_HINT: &str = "expected DAYS HH:MM-HH:MM ZONE such as \"Mon-Fri 07:30-20:30 Europe/Berlin\", or an absolute range such as \"2026-12-24T00:00:00+01:00-2026-12-27T00:00:00+01:00\"";

impl Window {
    fn parse(part: &str) -> Result<Window, ScheduleError> {
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
        if start == end {
            return err(format!(
                "{part:?}: the window starts and ends at the same time"
            ));
        }
        let tz = parse_zone(zone).map_err(|e| ScheduleError(format!("{part:?}: {e}")))?;
        Ok(Window {
            days,
            start,
            end,
            tz,
        })
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
    let second = rest.strip_prefix('-').ok_or_else(bad)?;
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
    fn phase_at(&self, t: DateTime<Utc>) -> Phase {
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
        let is_change = |c: DateTime<Utc>| {
            if forward {
                c > t && self.phase_at(c) != now
            } else {
                c <= t && self.phase_before(c) != now
            }
        };
        let ends = || self.ranges.iter().flat_map(|&(s, e)| [s, e]);
        let quiet = |from: DateTime<Utc>| {
            if forward {
                from + QUIET_SPAN
            } else {
                from - QUIET_SPAN
            }
        };
        let mut pos = t;
        let mut quiet_until = quiet(t);
        let mut candidates = Vec::new();
        for _ in 0..MAX_CHUNKS {
            let (lo, hi) = if forward {
                (pos, pos + CHUNK)
            } else {
                (pos - CHUNK, pos)
            };
            candidates.clear();
            self.windows
                .iter()
                .for_each(|w| w.boundaries(lo, hi, &mut candidates));
            let crossed: Vec<_> = ends().filter(|e| lo <= *e && *e <= hi).collect();
            candidates.extend(&crossed);
            candidates.sort();
            let found = if forward {
                candidates.iter().copied().find(|c| is_change(*c))
            } else {
                candidates.iter().rev().copied().find(|c| is_change(*c))
            };
            if found.is_some() {
                return found;
            }
            if let Some(e) = if forward {
                crossed.iter().max()
            } else {
                crossed.iter().min()
            } {
                quiet_until = quiet(*e);
            }
            pos = if forward { hi } else { lo };
            let quiet_over = if forward {
                pos >= quiet_until
            } else {
                pos <= quiet_until
            };
            if quiet_over {
                // Nothing changes for a year: only a range end can change it again.
                let next_end = if forward {
                    ends().filter(|e| *e > pos).min()
                } else {
                    ends().filter(|e| *e < pos).max()
                };
                let e = next_end?;
                // Start the chunk at the range end itself.
                pos = e;
                quiet_until = quiet(e);
                if !forward {
                    pos = e + TimeDelta::nanoseconds(1);
                }
            }
        }
        None
    }

    fn next_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.scan(t, true)
    }

    fn last_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.scan(t, false)
    }
}

// ---------------------------------------------------------------------------
// Cron pairs

/// One 5-field cron expression, as written and as parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct CronSpec {
    text: String,
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
    sleep: CronSpec,
    wake: CronSpec,
    tz: Tz,
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
    fn next_firing(&self, spec: &CronSpec, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
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

    fn phase_at(&self, t: DateTime<Utc>) -> Phase {
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

    fn next_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.phase_at(t) {
            Phase::Awake => self.next_effective_sleep(t),
            Phase::Asleep => self.next_firing(&self.wake, t),
        }
    }

    fn last_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
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

// ---------------------------------------------------------------------------
// `siesta schedule`

/// `siesta schedule SPEC [--at INSTANT] [--config FILE]`: the phase at the
/// instant and the next change, as two lines. With a config, SPEC names one of
/// its schedules.
pub fn cli(
    spec: &str,
    at: Option<&str>,
    config: Option<&std::path::Path>,
) -> crate::Result<String> {
    let at = match at {
        Some(s) => crate::annotations::parse_instant(s).map_err(crate::Error::Other)?,
        None => Utc::now(),
    };
    let schedule = match config {
        Some(path) => {
            let cfg = crate::config::load(path).map_err(|e| crate::Error::Config(e.to_string()))?;
            let known = cfg.schedules.keys().cloned().collect::<Vec<_>>().join(", ");
            cfg.schedules.get(spec.trim()).cloned().ok_or_else(|| {
                crate::Error::Config(format!(
                    "{}: no schedule named {spec:?} (defined: {known})",
                    path.display()
                ))
            })?
        }
        None => {
            Schedule::parse_awake_hours(spec).map_err(|e| crate::Error::Other(e.to_string()))?
        }
    };
    let next = schedule
        .next_change(at)
        .map_or_else(|| "never".to_string(), crate::annotations::format_instant);
    Ok(format!("{}\n{next}\n", schedule.phase_at(at)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    fn hours(spec: &str) -> Schedule {
        Schedule::parse_awake_hours(spec).expect("test spec")
    }

    fn cron(sleep: &str, wake: &str, tz: &str) -> Schedule {
        Schedule::cron(sleep, wake, tz).expect("test cron pair")
    }

    #[track_caller]
    fn assert_at(s: &Schedule, t: &str, phase: Phase, next: Option<&str>) {
        let t = at(t);
        assert_eq!(s.phase_at(t), phase, "phase at {t}");
        assert_eq!(s.next_change(t), next.map(at), "next change after {t}");
    }

    #[test]
    fn office_hours_in_berlin_are_awake_on_weekdays_only() {
        let s = hours("Mon-Fri 07:30-20:30 Europe/Berlin");
        // Wednesday 2026-11-25, CET (UTC+1)
        assert_at(
            &s,
            "2026-11-25T06:29:59Z",
            Phase::Asleep,
            Some("2026-11-25T06:30:00Z"),
        );
        assert_at(
            &s,
            "2026-11-25T06:30:00Z",
            Phase::Awake,
            Some("2026-11-25T19:30:00Z"),
        );
        assert_at(
            &s,
            "2026-11-25T19:30:00Z",
            Phase::Asleep,
            Some("2026-11-26T06:30:00Z"),
        );
        // Friday evening sleeps until Monday morning
        assert_at(
            &s,
            "2026-11-27T20:00:00Z",
            Phase::Asleep,
            Some("2026-11-30T06:30:00Z"),
        );
        assert_eq!(
            s.last_change(at("2026-11-29T12:00:00Z")),
            Some(at("2026-11-27T19:30:00Z"))
        );
    }

    #[test]
    fn weekend_windows_and_wrap_around_day_ranges() {
        let weekend = hours("Sat-Sun 10:00-16:00 UTC");
        assert_at(
            &weekend,
            "2026-11-27T12:00:00Z",
            Phase::Asleep,
            Some("2026-11-28T10:00:00Z"),
        );
        assert_at(
            &weekend,
            "2026-11-29T15:00:00Z",
            Phase::Awake,
            Some("2026-11-29T16:00:00Z"),
        );
        assert_at(
            &weekend,
            "2026-11-29T16:00:00Z",
            Phase::Asleep,
            Some("2026-12-05T10:00:00Z"),
        );
        // Sun-Thu wraps around the end of the week, as in kube-downscaler.
        let gulf = hours("Sun-Thu 08:00-17:00 Asia/Dubai");
        assert_eq!(gulf.phase_at(at("2026-11-29T06:00:00Z")), Phase::Awake); // Sunday 10:00
        assert_eq!(gulf.phase_at(at("2026-11-27T06:00:00Z")), Phase::Asleep); // Friday 10:00
    }

    #[test]
    fn overnight_windows_run_into_the_next_day() {
        let s = hours("Mon-Fri 22:00-06:00 UTC");
        assert_at(
            &s,
            "2026-11-23T21:00:00Z",
            Phase::Asleep,
            Some("2026-11-23T22:00:00Z"),
        );
        assert_at(
            &s,
            "2026-11-24T03:00:00Z",
            Phase::Awake,
            Some("2026-11-24T06:00:00Z"),
        );
        // Friday night runs into Saturday morning; Sunday night does not start.
        assert_at(
            &s,
            "2026-11-28T05:00:00Z",
            Phase::Awake,
            Some("2026-11-28T06:00:00Z"),
        );
        assert_at(
            &s,
            "2026-11-29T23:00:00Z",
            Phase::Asleep,
            Some("2026-11-30T22:00:00Z"),
        );
        // Monday 01:00 belongs to no window: Sunday is not listed.
        assert_eq!(s.phase_at(at("2026-11-30T01:00:00Z")), Phase::Asleep);
    }

    #[test]
    fn overlapping_windows_merge_and_awake_wins() {
        let s = hours("Mon-Fri 08:00-12:00 UTC, Mon-Fri 11:00-18:00 UTC, Mon-Sun 17:00-19:00 UTC");
        assert_at(
            &s,
            "2026-11-23T09:00:00Z",
            Phase::Awake,
            Some("2026-11-23T19:00:00Z"),
        );
        assert_eq!(
            s.last_change(at("2026-11-23T18:00:00Z")),
            Some(at("2026-11-23T08:00:00Z"))
        );
        let whole_week = hours("Mon-Sun 00:00-24:00 UTC");
        assert_at(&whole_week, "2026-11-23T09:00:00Z", Phase::Awake, None);
        assert_eq!(whole_week.last_change(at("2026-11-23T09:00:00Z")), None);
    }

    #[test]
    fn absolute_ranges_add_awake_time() {
        let s =
            hours("Mon-Fri 08:00-18:00 UTC, 2026-12-24T00:00:00+01:00-2026-12-27T00:00:00+01:00");
        // Thursday 24 December at 03:00 UTC is inside the range
        assert_at(
            &s,
            "2026-12-24T03:00:00Z",
            Phase::Awake,
            Some("2026-12-26T23:00:00Z"),
        );
        // After the range (Saturday night) the weekly pattern resumes on Monday.
        assert_at(
            &s,
            "2026-12-26T23:00:00Z",
            Phase::Asleep,
            Some("2026-12-28T08:00:00Z"),
        );
        assert_eq!(
            s.last_change(at("2026-12-27T12:00:00Z")),
            Some(at("2026-12-26T23:00:00Z"))
        );
        let only = hours("2030-01-01T00:00:00Z-2030-01-02T00:00:00Z");
        assert_at(
            &only,
            "2026-11-22T00:00:00Z",
            Phase::Asleep,
            Some("2030-01-01T00:00:00Z"),
        );
        assert_at(&only, "2030-01-03T00:00:00Z", Phase::Asleep, None);
        assert_eq!(
            only.last_change(at("2030-01-03T00:00:00Z")),
            Some(at("2030-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn always_and_never_never_change() {
        assert_at(&hours("always"), "2026-11-22T00:00:00Z", Phase::Awake, None);
        assert_at(&hours("Never"), "2026-11-22T00:00:00Z", Phase::Asleep, None);
    }

    #[test]
    fn berlin_spring_forward_gap_starts_at_the_first_valid_instant() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let s = hours("Sun-Sun 02:30-05:00 Europe/Berlin");
        assert_at(
            &s,
            "2026-03-29T00:30:00Z",
            Phase::Asleep,
            Some("2026-03-29T01:00:00Z"),
        );
        assert_at(
            &s,
            "2026-03-29T01:00:00Z",
            Phase::Awake,
            Some("2026-03-29T03:00:00Z"),
        );
        let c = cron("0 5 * * *", "30 2 * * *", "Europe/Berlin");
        assert_at(
            &c,
            "2026-03-29T00:30:00Z",
            Phase::Asleep,
            Some("2026-03-29T01:00:00Z"),
        );
    }

    #[test]
    fn berlin_fall_back_fold_fires_once() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let s = hours("Sun-Sun 02:30-04:00 Europe/Berlin");
        assert_at(
            &s,
            "2026-10-25T00:00:00Z",
            Phase::Asleep,
            Some("2026-10-25T00:30:00Z"),
        );
        // The second 02:30 (01:30 UTC) is already inside the window.
        assert_at(
            &s,
            "2026-10-25T01:30:00Z",
            Phase::Awake,
            Some("2026-10-25T03:00:00Z"),
        );
        let c = cron("30 2 * * *", "0 4 * * *", "Europe/Berlin");
        assert_at(
            &c,
            "2026-10-25T00:00:00Z",
            Phase::Awake,
            Some("2026-10-25T00:30:00Z"),
        );
        assert_at(
            &c,
            "2026-10-25T00:30:00Z",
            Phase::Asleep,
            Some("2026-10-25T03:00:00Z"),
        );
        assert_eq!(
            c.last_change(at("2026-10-25T02:00:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn new_york_transitions() {
        // 2026-03-08: 02:00 EST -> 03:00 EDT (07:00 UTC). 2026-11-01: 02:00 EDT -> 01:00 EST (06:00 UTC).
        let s = hours("Mon-Fri 09:00-17:00 America/New_York");
        assert_at(
            &s,
            "2026-03-06T22:30:00Z",
            Phase::Asleep,
            Some("2026-03-09T13:00:00Z"),
        ); // EDT now
        assert_at(
            &s,
            "2026-10-30T22:30:00Z",
            Phase::Asleep,
            Some("2026-11-02T14:00:00Z"),
        ); // EST again
        let c = cron("30 1 * * *", "0 6 * * *", "America/New_York");
        // 01:30 happens twice on 1 November; the sleep fires at the first (05:30 UTC).
        assert_at(
            &c,
            "2026-11-01T05:00:00Z",
            Phase::Awake,
            Some("2026-11-01T05:30:00Z"),
        );
        assert_at(
            &c,
            "2026-11-01T06:30:00Z",
            Phase::Asleep,
            Some("2026-11-01T11:00:00Z"),
        );
        // 02:30 does not exist on 8 March: a sleep then fires at 03:00 EDT (07:00 UTC).
        let gap = cron("30 2 * * *", "0 6 * * *", "America/New_York");
        assert_at(
            &gap,
            "2026-03-08T06:00:00Z",
            Phase::Awake,
            Some("2026-03-08T07:00:00Z"),
        );
    }

    #[test]
    fn zones_east_of_utc_plus_12() {
        // Kiritimati is UTC+14: Monday 08:00 there is Sunday 18:00 UTC.
        let s = hours("Mon-Fri 08:00-17:00 Pacific/Kiritimati");
        assert_at(
            &s,
            "2026-11-22T17:00:00Z",
            Phase::Asleep,
            Some("2026-11-22T18:00:00Z"),
        );
        assert_at(
            &s,
            "2026-11-22T18:00:00Z",
            Phase::Awake,
            Some("2026-11-23T03:00:00Z"),
        );
        let c = cron("0 17 * * 1-5", "0 8 * * 1-5", "Pacific/Tongatapu"); // UTC+13
        assert_at(
            &c,
            "2026-11-22T18:00:00Z",
            Phase::Asleep,
            Some("2026-11-22T19:00:00Z"),
        );
        // Kiritimati (then UTC-10) skipped Saturday 31 December 1994 entirely: a window
        // from Friday 20:00 to 04:00 ends at the first instant of 1 January (UTC+14).
        let skipped = hours("Fri-Fri 20:00-04:00 Pacific/Kiritimati");
        assert_eq!(
            skipped.next_change(at("1994-12-30T05:00:00Z")),
            Some(at("1994-12-31T06:00:00Z"))
        );
        assert_eq!(
            skipped.next_change(at("1994-12-31T06:00:00Z")),
            Some(at("1994-12-31T10:00:00Z"))
        );
        // and a Saturday window that year never opens.
        let saturday = hours("Sat-Sat 09:00-17:00 Pacific/Kiritimati");
        assert_eq!(
            saturday.next_change(at("1994-12-30T12:00:00Z")),
            Some(at("1995-01-06T19:00:00Z"))
        );
    }

    #[test]
    fn cron_pair_reads_like_a_kubernetes_cronjob() {
        let s = cron("0 19 * * 1-5", "0 7 * * 1-5", "Europe/Berlin");
        // Wednesday 12:00 CET: awake, sleeps at 19:00 CET (18:00 UTC)
        assert_at(
            &s,
            "2026-11-25T11:00:00Z",
            Phase::Awake,
            Some("2026-11-25T18:00:00Z"),
        );
        assert_at(
            &s,
            "2026-11-25T18:00:00Z",
            Phase::Asleep,
            Some("2026-11-26T06:00:00Z"),
        );
        // Friday night until Monday 07:00
        assert_at(
            &s,
            "2026-11-28T12:00:00Z",
            Phase::Asleep,
            Some("2026-11-30T06:00:00Z"),
        );
        assert_eq!(
            s.last_change(at("2026-11-28T12:00:00Z")),
            Some(at("2026-11-27T18:00:00Z"))
        );
        // Day of week 7 is Sunday, like 0.
        let sunday = cron("0 0 * * 7", "0 12 * * 0", "UTC");
        assert_at(
            &sunday,
            "2026-11-22T06:00:00Z",
            Phase::Asleep,
            Some("2026-11-22T12:00:00Z"),
        );
        // Day of month and day of week are OR'ed: the 13th, and every Friday.
        let either = cron("0 0 13 * 5", "0 1 * * *", "UTC");
        assert_eq!(either.phase_at(at("2026-11-13T00:30:00Z")), Phase::Asleep); // Friday 13th
        assert_eq!(either.phase_at(at("2026-11-20T00:30:00Z")), Phase::Asleep); // a Friday
        assert_eq!(either.phase_at(at("2026-12-13T00:30:00Z")), Phase::Asleep); // a Sunday the 13th
        assert_eq!(either.phase_at(at("2026-11-19T00:30:00Z")), Phase::Awake);
        // Names and macros
        let named = cron("0 19 * * MON-FRI", "@daily", "UTC");
        assert_eq!(
            named.next_change(at("2026-11-23T12:00:00Z")),
            Some(at("2026-11-23T19:00:00Z"))
        );
    }

    #[test]
    fn cronjob_expressions_that_kubernetes_accepts_parse() {
        for expr in [
            "*/15 9-17 * * MON-FRI",
            "0 0 1,15 * *",
            "0 0 * JAN,jul *",
            "0 12 ? * sun",
            "5 4 * * 0",
            "0 22 * * 1-5",
            "@weekly",
            "@hourly",
        ] {
            assert!(parse_cron(expr).is_ok(), "{expr}");
        }
        // Steps, ranges and names fire where a CronJob would.
        let Schedule::Cron(pair) = cron("*/20 9-10 * * MON-FRI", "0 0 * * *", "UTC") else {
            panic!("a cron pair")
        };
        let mut t = at("2026-11-23T08:59:00Z"); // Monday
        let mut seen = Vec::new();
        for _ in 0..7 {
            t = pair.next_firing(&pair.sleep, t).expect("fires");
            seen.push(t.format("%a %H:%M").to_string());
        }
        assert_eq!(
            seen,
            [
                "Mon 09:00",
                "Mon 09:20",
                "Mon 09:40",
                "Mon 10:00",
                "Mon 10:20",
                "Mon 10:40",
                "Tue 09:00"
            ]
        );
    }

    #[test]
    fn a_wake_at_the_same_instant_as_a_sleep_wins() {
        let s = cron("0 * * * *", "0 0 * * *", "UTC");
        assert_eq!(s.phase_at(at("2026-11-22T00:00:00Z")), Phase::Awake);
        assert_eq!(s.phase_at(at("2026-11-22T00:59:00Z")), Phase::Awake);
        assert_eq!(
            s.next_change(at("2026-11-22T00:00:00Z")),
            Some(at("2026-11-22T01:00:00Z"))
        );
        assert_eq!(s.phase_at(at("2026-11-22T01:00:00Z")), Phase::Asleep);
        assert_eq!(
            s.next_change(at("2026-11-22T05:00:00Z")),
            Some(at("2026-11-23T00:00:00Z"))
        );
        assert_eq!(
            s.last_change(at("2026-11-22T05:00:00Z")),
            Some(at("2026-11-22T01:00:00Z"))
        );
    }

    #[test]
    fn bad_input_gets_a_clear_error() {
        let msg = |r: Result<Schedule, ScheduleError>| r.expect_err("should be rejected").0;
        assert!(msg(Schedule::parse_awake_hours("")).contains("empty"));
        assert!(msg(Schedule::parse_awake_hours("  ")).contains("empty"));
        assert!(msg(Schedule::parse_awake_hours("Mon-Fri 07:00-25:00 UTC")).contains("hour 25"));
        assert!(msg(Schedule::parse_awake_hours("Mon-Fri 25:00-26:00 UTC")).contains("hour 25"));
        assert!(msg(Schedule::parse_awake_hours("Mon-Fri 07:60-08:00 UTC")).contains("minute 60"));
        assert!(
            msg(Schedule::parse_awake_hours(
                "Mon-Fri 07:00-19:00 Europe/Berln"
            ))
            .contains("unknown time zone")
        );
        assert!(
            msg(Schedule::parse_awake_hours("Mon-Fri 07:00-19:00")).contains("missing time zone")
        );
        assert!(
            msg(Schedule::parse_awake_hours("Mon-Fry 07:00-19:00 UTC"))
                .contains("\"Fry\" is not a day")
        );
        assert!(msg(Schedule::parse_awake_hours("Mon-Fri 07:00-07:00 UTC")).contains("same time"));
        assert!(
            msg(Schedule::parse_awake_hours("Mon-Fri 07:00-19:00 UTC,")).contains("empty entry")
        );
        let many = vec!["Mon-Fri 07:00-19:00 UTC"; 51].join(", ");
        assert!(msg(Schedule::parse_awake_hours(&many)).contains("more than the 50 allowed"));
        assert!(
            msg(Schedule::parse_awake_hours(
                "always, Mon-Fri 07:00-19:00 UTC"
            ))
            .contains("whole spec")
        );
        assert!(
            msg(Schedule::parse_awake_hours(
                "2026-12-27T00:00:00+01:00-2026-12-24T00:00:00+01:00"
            ))
            .contains("ends before")
        );
        assert!(
            msg(Schedule::parse_awake_hours(
                "2026-13-24T00:00:00+01:00-2026-12-27T00:00:00+01:00"
            ))
            .contains("not an instant")
        );
        assert!(msg(Schedule::cron("0 19 * *", "0 7 * * *", "UTC")).contains("expected 5 fields"));
        assert!(
            msg(Schedule::cron("0 0 19 * * *", "0 7 * * *", "UTC")).contains("expected 5 fields")
        );
        assert!(msg(Schedule::cron("0 25 * * *", "0 7 * * *", "UTC")).starts_with("sleep: cron"));
        assert!(msg(Schedule::cron("0 19 * * 1-5", "0 7 L * *", "UTC")).starts_with("wake: cron"));
        assert!(msg(Schedule::cron("0 19 * * 5#3", "0 7 * * *", "UTC")).contains("not allowed"));
        assert!(msg(Schedule::cron("@every 1h", "0 7 * * *", "UTC")).contains("@every"));
        assert!(msg(Schedule::cron("0 0 30 2 *", "0 7 * * *", "UTC")).contains("never fires"));
        assert!(
            msg(Schedule::cron("0 19 * * *", "0 7 * * *", "Mars/Olympus"))
                .contains("unknown time zone")
        );
        assert!(msg(Schedule::cron("0 19 * * *", "0 19 * * *", "UTC")).contains("same times"));
        assert!(msg(Schedule::cron("", "0 19 * * *", "UTC")).contains("empty cron"));
    }

    #[test]
    fn kube_downscaler_specs_parse() {
        for spec in [
            "Mon-Fri 07:30-20:30 Europe/Berlin",
            "mon-fri 07:30-20:30 europe/berlin",
            "Mon-Fri 07:30-20:30 Europe/Berlin, Sat-Sat 10:00-14:00 Europe/Berlin",
            "Mon-Sun 00:00-24:00 UTC",
            "2026-12-24T00:00:00+01:00-2026-12-27T00:00:00+01:00",
            "ALWAYS",
        ] {
            assert!(Schedule::parse_awake_hours(spec).is_ok(), "{spec}");
        }
    }

    #[test]
    fn cli_prints_phase_and_next_change() {
        let out = cli(
            "Mon-Fri 07:00-19:00 UTC",
            Some("2026-11-23T12:00:00Z"),
            None,
        )
        .expect("cli");
        assert_eq!(out, "awake\n2026-11-23T19:00:00Z\n");
        let out = cli("never", Some("2026-11-23T12:00:00Z"), None).expect("cli");
        assert_eq!(out, "asleep\nnever\n");
        assert!(cli("Mon-Fri 07:00-19:00 Nowhere/Land", None, None).is_err());
        assert!(cli("always", Some("yesterday"), None).is_err());
    }

    // -- properties over random instants and zones -------------------------

    const ZONES: &[&str] = &[
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Pacific/Kiritimati",
        "Pacific/Tongatapu",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Asia/Kathmandu",
        "America/Santiago",
        "Pacific/Apia",
        "America/St_Johns",
        "Asia/Tehran",
    ];

    fn zone() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(ZONES)
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 1990 to 2060, to the second
        (631_152_000i64..2_871_763_200)
            .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default())
    }

    fn clock() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u32..24, proptest::sample::select(vec![0u32, 15, 30, 45]))
                .prop_map(|(h, m)| format!("{h:02}:{m:02}")),
            // times near the usual DST switches
            proptest::sample::select(vec!["01:30", "02:00", "02:30", "03:00", "00:00", "23:30"])
                .prop_map(String::from),
        ]
    }

    fn window() -> impl Strategy<Value = String> {
        (0usize..7, 0usize..7, clock(), clock(), zone()).prop_filter_map(
            "empty window",
            |(a, b, s, e, z)| {
                (s != e).then(|| format!("{}-{} {s}-{e} {z}", WEEKDAYS[a], WEEKDAYS[b]))
            },
        )
    }

    fn awake_hours() -> impl Strategy<Value = Schedule> {
        let range = (instant(), 1i64..(40 * 86_400)).prop_map(|(s, len)| {
            let e = s + TimeDelta::seconds(len);
            format!("{}-{}", s.to_rfc3339(), e.to_rfc3339())
        });
        (
            proptest::collection::vec(window(), 1..4),
            proptest::collection::vec(range, 0..2),
        )
            .prop_map(|(w, r)| {
                let spec = w.into_iter().chain(r).collect::<Vec<_>>().join(", ");
                Schedule::parse_awake_hours(&spec).expect("generated spec parses")
            })
    }

    fn cron_pair() -> impl Strategy<Value = Schedule> {
        let field = || {
            (
                0u32..24,
                proptest::sample::select(vec!["*", "1-5", "0,6", "6", "7"]),
                proptest::sample::select(vec![0u32, 30]),
            )
        };
        (field(), field(), zone()).prop_filter_map(
            "same pattern",
            |((sh, sd, sm), (wh, wd, wm), z)| {
                Schedule::cron(
                    &format!("{sm} {sh} * * {sd}"),
                    &format!("{wm} {wh} * * {wd}"),
                    z,
                )
                .ok()
            },
        )
    }

    fn any_schedule() -> impl Strategy<Value = Schedule> {
        prop_oneof![awake_hours(), cron_pair()]
    }

    fn before(t: DateTime<Utc>) -> DateTime<Utc> {
        t - TimeDelta::nanoseconds(1)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn the_phase_agrees_with_the_last_change(s in any_schedule(), t in instant()) {
            let now = s.phase_at(t);
            if let Some(c) = s.last_change(t) {
                prop_assert!(c <= t);
                prop_assert_eq!(s.phase_at(c), now, "phase just after the last change {}", c);
                prop_assert_ne!(s.phase_at(before(c)), now, "phase just before the last change {}", c);
            }
        }

        #[test]
        fn the_next_change_changes_the_phase(s in any_schedule(), t in instant()) {
            let now = s.phase_at(t);
            if let Some(n) = s.next_change(t) {
                prop_assert!(n > t);
                prop_assert_ne!(s.phase_at(n), now, "phase at the next change {}", n);
                prop_assert_eq!(s.phase_at(before(n)), now, "phase just before the next change {}", n);
                // And nothing changed in between: the last change seen from just before it is not after t.
                prop_assert!(s.last_change(before(n)).is_none_or(|c| c <= t));
            }
        }

        #[test]
        fn weekly_schedules_change_every_week_unless_always_awake(s in awake_hours(), t in instant()) {
            let n = s.next_change(t);
            prop_assert!(n.is_some() || s.phase_at(t) == Phase::Awake);
        }

        #[test]
        fn awake_hours_parser_never_panics(spec in "\\PC{0,60}") {
            let _ = Schedule::parse_awake_hours(&spec);
        }

        #[test]
        fn awake_hours_parser_never_panics_on_near_misses(
            spec in "[A-Za-z]{3}-[A-Za-z]{3} [0-9]{1,3}:[0-9]{1,3}-[0-9]{2}:[0-9]{2} [A-Za-z/_]{1,20}(, [0-9T:+Z-]{10,60})?"
        ) {
            let _ = Schedule::parse_awake_hours(&spec);
        }

        #[test]
        fn cron_parser_never_panics(expr in "[0-9*/,?LW#A-Za-z@ -]{0,30}") {
            let _ = parse_cron(&expr);
        }
    }
}
