//! RFC 5545 calendar files, read for the days their events cover: the subset
//! holiday calendars use. `VEVENT`s with all-day (`VALUE=DATE`) or timed
//! `DTSTART`, `DTEND` or `DURATION`, `RRULE` (`FREQ` `YEARLY`, `MONTHLY`,
//! `WEEKLY`, `DAILY` with `INTERVAL`, `COUNT`, `UNTIL`, `BYDAY`, `BYMONTH`,
//! `BYMONTHDAY`, `WKST`), `RDATE`, `EXDATE`, `RECURRENCE-ID` overrides,
//! `STATUS:CANCELLED`, and `TZID` parameters naming IANA zones or the Windows
//! zone names Outlook writes ([`super::windows_zones`]).
//!
//! Everything else a calendar may hold (`VTIMEZONE` definitions, `VTODO`,
//! alarms, unknown properties) is skipped. What this reader cannot honour
//! (`BYSETPOS`, `BYWEEKNO`, `FREQ=HOURLY`, an unknown zone) is an error with
//! the line it is on, never a silently wrong holiday.
use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, TimeDelta, Utc, Weekday};
use chrono_tz::Tz;

use super::{parse_zone, resolve, windows_zones};

/// A problem in a calendar file: its line (the first line of a folded content
/// line, counting from 1) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalendarError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for CalendarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What a calendar file contributes: half-open local date spans `[first, end)`
/// in the holidays' zone, and how many events it had (for summaries).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CalendarDays {
    pub spans: Vec<(NaiveDate, NaiveDate)>,
    pub events: usize,
}

/// Read a calendar: every day that one of its events covers, in `zone` (the
/// holidays' time zone), up to `horizon` (exclusive). An all-day event covers
/// its dates; a timed event every day of `zone` that it overlaps (floating
/// times, without `Z` or `TZID`, are read in `zone`).
pub fn read(src: &str, zone: Tz, horizon: NaiveDate) -> Result<CalendarDays, CalendarError> {
    let events = parse_events(src)?;
    let overridden: BTreeSet<(String, Key)> = events
        .iter()
        .filter_map(|e| Some((e.uid.clone(), e.recurrence_id.as_ref()?.key(zone))))
        .collect();
    let mut out = CalendarDays::default();
    for event in &events {
        if event.recurrence_id.is_none() {
            out.events += 1;
        }
        if event.cancelled {
            continue;
        }
        event.days(zone, horizon, &overridden, &mut out.spans)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Content lines

struct ContentLine<'a> {
    line: usize,
    /// The whole logical line.
    text: &'a str,
    name: String,
    params: Vec<(String, String)>,
    value: &'a str,
}

impl ContentLine<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, CalendarError> {
        Err(CalendarError {
            line: self.line,
            message: format!("{}: {}", self.name, message.into()),
        })
    }
}

/// Unfold (a line starting with a space or tab continues the one before) and
/// number the logical lines by their first physical line.
fn unfold(src: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in src.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (raw.strip_prefix([' ', '\t']), out.last_mut()) {
            (Some(rest), Some((_, last))) => last.push_str(rest),
            _ if raw.trim().is_empty() => {}
            _ => out.push((i + 1, raw.to_string())),
        }
    }
    out
}

/// `NAME;PARAM=VALUE;PARAM="quoted;value":VALUE`.
fn content_line(line: usize, text: &str) -> Result<ContentLine<'_>, CalendarError> {
    let bad = |message: &str| CalendarError {
        line,
        message: message.to_string(),
    };
    let name_end = text
        .find([';', ':'])
        .ok_or_else(|| bad("not a content line NAME[;PARAM=VALUE]:VALUE (no colon)"))?;
    let name = text[..name_end].trim().to_ascii_uppercase();
    if name.is_empty() {
        return Err(bad("a content line starts with a property name"));
    }
    let mut params = Vec::new();
    let mut rest = &text[name_end..];
    while let Some(after) = rest.strip_prefix(';') {
        let eq = after
            .find('=')
            .ok_or_else(|| bad("a parameter without `=`"))?;
        let key = after[..eq].trim().to_ascii_uppercase();
        let mut value = String::new();
        let mut tail = &after[eq + 1..];
        loop {
            if let Some(quoted) = tail.strip_prefix('"') {
                let close = quoted
                    .find('"')
                    .ok_or_else(|| bad("a quoted parameter value without its closing quote"))?;
                value.push_str(&quoted[..close]);
                tail = &quoted[close + 1..];
            } else {
                let end = tail.find([';', ':', ',']).unwrap_or(tail.len());
                value.push_str(&tail[..end]);
                tail = &tail[end..];
            }
            match tail.strip_prefix(',') {
                Some(more) => {
                    value.push(',');
                    tail = more;
                }
                None => break,
            }
        }
        params.push((key, value));
        rest = tail;
    }
    let value = rest
        .strip_prefix(':')
        .ok_or_else(|| bad("not a content line NAME[;PARAM=VALUE]:VALUE (no colon)"))?;
    Ok(ContentLine {
        line,
        text,
        name,
        params,
        value: value.trim(),
    })
}

// ---------------------------------------------------------------------------
// Values

/// The zone a date-time is written in.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Zone {
    /// No `Z`, no `TZID`: read in the holidays' zone.
    Floating,
    Utc,
    Named(Tz),
}

/// A `DATE` or `DATE-TIME` value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    Date(NaiveDate),
    Time(NaiveDateTime, Zone),
}

/// What identifies an instance for `EXDATE` and `RECURRENCE-ID`: a date for
/// all-day events, an instant for timed ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Date(NaiveDate),
    Instant(DateTime<Utc>),
}

impl Zone {
    fn instant(self, local: NaiveDateTime, floating: Tz) -> DateTime<Utc> {
        match self {
            Zone::Floating => resolve(floating, local),
            Zone::Utc => local.and_utc(),
            Zone::Named(tz) => resolve(tz, local),
        }
    }
}

impl When {
    fn key(&self, floating: Tz) -> Key {
        match *self {
            When::Date(d) => Key::Date(d),
            When::Time(t, z) => Key::Instant(z.instant(t, floating)),
        }
    }
}

/// A `TZID`: an IANA name, a Windows name, or an IANA name behind a prefix
/// (`/mozilla.org/20050126_1/Europe/Berlin`).
fn zone_of(cl: &ContentLine) -> Result<Zone, CalendarError> {
    let Some(id) = cl.param("TZID") else {
        return Ok(Zone::Floating);
    };
    let id = id.trim();
    if let Some(tz) = windows_zones::iana(id) {
        return Ok(Zone::Named(tz));
    }
    if let Ok(tz) = parse_zone(id) {
        return Ok(Zone::Named(tz));
    }
    let suffixes = id.match_indices('/').map(|(i, _)| &id[i + 1..]);
    if let Some(tz) = suffixes
        .filter(|s| s.contains('/'))
        .find_map(|s| parse_zone(s).ok())
    {
        return Ok(Zone::Named(tz));
    }
    cl.err(format!(
        "unknown TZID {id:?}: use an IANA zone name (Europe/Berlin) or a Windows zone name (W. Europe Standard Time)"
    ))
}

fn date(s: &str) -> Option<NaiveDate> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y%m%d").ok()
}

/// One value: `20261224` or `20261224T090000` (floating, `Z`, or in `zone`).
fn when(cl: &ContentLine, s: &str, zone: Zone) -> Result<When, CalendarError> {
    let s = s.trim();
    let is_date = cl
        .param("VALUE")
        .is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
    if is_date || s.len() == 8 {
        return date(s)
            .map(When::Date)
            .map_or_else(|| cl.err(format!("{s:?} is not a date YYYYMMDD")), Ok);
    }
    let (body, utc) = match s.strip_suffix(['Z', 'z']) {
        Some(b) => (b, true),
        None => (s, false),
    };
    let parsed = body
        .split_once(['T', 't'])
        .filter(|(_, t)| t.len() == 6 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(d, t)| {
            let (h, m, sec) = (&t[..2], &t[2..4], &t[4..]);
            let (h, m, sec) = (h.parse().ok()?, m.parse().ok()?, sec.parse::<u32>().ok()?);
            // A leap second (60) is read as the last second of its minute.
            date(d)?.and_hms_opt(h, m, sec.min(59))
        });
    match parsed {
        Some(t) if utc => Ok(When::Time(t, Zone::Utc)),
        Some(t) => Ok(When::Time(t, zone)),
        None => cl.err(format!(
            "{s:?} is not a date-time YYYYMMDDTHHMMSS (with Z for UTC, or a TZID)"
        )),
    }
}

/// A comma list of values (`EXDATE`, `RDATE`).
fn whens(cl: &ContentLine) -> Result<Vec<When>, CalendarError> {
    let zone = zone_of(cl)?;
    if cl
        .param("VALUE")
        .is_some_and(|v| v.eq_ignore_ascii_case("PERIOD"))
    {
        return cl.err("VALUE=PERIOD is not supported: list the start of each instance");
    }
    cl.value.split(',').map(|s| when(cl, s, zone)).collect()
}

/// An RFC 5545 `DURATION`: `P1D`, `PT1H30M`, `P1W`, `-P1D`.
fn duration(cl: &ContentLine) -> Result<TimeDelta, CalendarError> {
    let s = cl.value.trim().to_ascii_uppercase();
    let bad = || cl.err(format!("{s:?} is not a duration such as P1D or PT2H"));
    let (negative, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(&s)),
    };
    let Some(rest) = rest.strip_prefix('P') else {
        return bad();
    };
    let mut total = TimeDelta::zero();
    let mut number = String::new();
    let mut in_time = false;
    let mut any = false;
    for c in rest.chars() {
        match c {
            '0'..='9' => number.push(c),
            'T' if !in_time && number.is_empty() => in_time = true,
            'W' | 'D' | 'H' | 'M' | 'S' => {
                let Ok(n) = number.parse::<i64>() else {
                    return bad();
                };
                let unit = match (c, in_time) {
                    ('W', false) => TimeDelta::weeks(1),
                    ('D', false) => TimeDelta::days(1),
                    ('H', true) => TimeDelta::hours(1),
                    ('M', true) => TimeDelta::minutes(1),
                    ('S', true) => TimeDelta::seconds(1),
                    _ => return bad(),
                };
                let Some(add) = n
                    .checked_mul(unit.num_seconds())
                    .filter(|s| *s < 10 * 366 * 86_400)
                else {
                    return cl.err(format!("{s:?} is longer than ten years"));
                };
                total += TimeDelta::seconds(add);
                number.clear();
                any = true;
            }
            _ => return bad(),
        }
    }
    if !any || !number.is_empty() {
        return bad();
    }
    Ok(if negative { -total } else { total })
}

// ---------------------------------------------------------------------------
// Recurrence rules

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Freq {
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// The parts of an `RRULE` this reader honours.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Rule {
    pub(super) freq: Freq,
    pub(super) interval: u32,
    pub(super) count: Option<u32>,
    until: Option<When>,
    /// `(n, weekday)`: `n` 0 for every such weekday, else the n-th (negative:
    /// from the end) of the month, or of the year for `YEARLY` without `BYMONTH`.
    pub(super) by_day: Vec<(i32, Weekday)>,
    pub(super) by_month: Vec<u32>,
    pub(super) by_month_day: Vec<i32>,
    pub(super) week_start: Weekday,
}

const SUPPORTED: &str = "Siesta reads FREQ=YEARLY, MONTHLY, WEEKLY or DAILY with INTERVAL, COUNT, UNTIL, BYDAY, BYMONTH, BYMONTHDAY and WKST";

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_uppercase().as_str() {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    })
}

fn rule(cl: &ContentLine, start_zone: Zone) -> Result<Rule, CalendarError> {
    let mut freq = None;
    let mut rule = Rule {
        freq: Freq::Daily,
        interval: 1,
        count: None,
        until: None,
        by_day: Vec::new(),
        by_month: Vec::new(),
        by_month_day: Vec::new(),
        week_start: Weekday::Mon,
    };
    for part in cl.value.split(';').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return cl.err(format!("{part:?} is not KEY=VALUE"));
        };
        let key = key.trim().to_ascii_uppercase();
        let bad = |what: &str| cl.err(format!("{key}={value}: {what}"));
        match key.as_str() {
            "FREQ" => {
                freq = Some(match value.trim().to_ascii_uppercase().as_str() {
                    "DAILY" => Freq::Daily,
                    "WEEKLY" => Freq::Weekly,
                    "MONTHLY" => Freq::Monthly,
                    "YEARLY" => Freq::Yearly,
                    _ => return bad(&format!("not supported; {SUPPORTED}")),
                })
            }
            "INTERVAL" => match value.trim().parse::<u32>() {
                Ok(n @ 1..=10_000) => rule.interval = n,
                _ => return bad("expected a whole number from 1 to 10000"),
            },
            "COUNT" => match value.trim().parse::<u32>() {
                Ok(n @ 1..) => rule.count = Some(n),
                _ => return bad("expected a whole number of at least 1"),
            },
            "UNTIL" => rule.until = Some(when(cl, value, start_zone)?),
            "WKST" => match weekday(value.trim()) {
                Some(d) => rule.week_start = d,
                None => return bad("expected a day MO, TU, WE, TH, FR, SA or SU"),
            },
            "BYMONTH" => {
                for v in value.split(',').map(str::trim) {
                    match v.parse::<u32>() {
                        Ok(m @ 1..=12) => rule.by_month.push(m),
                        _ => return bad(&format!("{v:?} is not a month 1-12")),
                    }
                }
            }
            "BYMONTHDAY" => {
                for v in value.split(',').map(str::trim) {
                    match v.parse::<i32>() {
                        Ok(d @ (-31..=-1 | 1..=31)) => rule.by_month_day.push(d),
                        _ => {
                            return bad(&format!(
                                "{v:?} is not a day of the month 1-31 or -31 to -1"
                            ));
                        }
                    }
                }
            }
            "BYDAY" => {
                for v in value.split(',').map(str::trim) {
                    let split = v.len().saturating_sub(2);
                    let (n, day) = v.split_at(split);
                    let n = match n {
                        "" => Some(0),
                        n => n
                            .parse::<i32>()
                            .ok()
                            .filter(|n| (1..=53).contains(&n.abs())),
                    };
                    match (n, weekday(day)) {
                        (Some(n), Some(d)) => rule.by_day.push((n, d)),
                        _ => return bad(&format!("{v:?} is not a day such as MO, 1MO or -1FR")),
                    }
                }
            }
            "BYSETPOS" | "BYWEEKNO" | "BYYEARDAY" | "BYHOUR" | "BYMINUTE" | "BYSECOND" => {
                return cl.err(format!("{key} is not supported; {SUPPORTED}"));
            }
            _ => return bad(&format!("unknown rule part {key}")),
        }
    }
    let Some(f) = freq else {
        return cl.err("a rule needs FREQ");
    };
    rule.freq = f;
    if matches!(f, Freq::Daily | Freq::Weekly) && rule.by_day.iter().any(|(n, _)| *n != 0) {
        return cl.err("a numbered BYDAY (1MO, -1FR) needs FREQ=MONTHLY or YEARLY");
    }
    if f == Freq::Weekly && !rule.by_month_day.is_empty() {
        return cl.err("BYMONTHDAY does not go with FREQ=WEEKLY (RFC 5545)");
    }
    Ok(rule)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let first = NaiveDate::from_ymd_opt(year, month, 1);
    let next = first.and_then(|f| f.checked_add_months(Months::new(1)));
    match (first, next) {
        (Some(f), Some(n)) => (n - f).num_days() as u32,
        _ => 31,
    }
}

impl Rule {
    /// Whether `day` is one of the rule's days, `start` being `DTSTART`'s date.
    fn matches(&self, day: NaiveDate, start: NaiveDate) -> bool {
        if !self.by_month.is_empty() && !self.by_month.contains(&day.month()) {
            return false;
        }
        if !self.by_month_day.is_empty() {
            let dim = days_in_month(day.year(), day.month()) as i32;
            let d = day.day() as i32;
            if !self
                .by_month_day
                .iter()
                .any(|&md| md == d || (md < 0 && dim + md + 1 == d))
            {
                return false;
            }
        }
        if !self.by_day.is_empty()
            && !self
                .by_day
                .iter()
                .any(|&(n, wd)| wd == day.weekday() && (n == 0 || self.nth(day, n)))
        {
            return false;
        }
        // Without BY parts, the rule repeats DTSTART's day, weekday or date.
        match self.freq {
            Freq::Daily => true,
            Freq::Weekly => !self.by_day.is_empty() || day.weekday() == start.weekday(),
            Freq::Monthly => {
                !self.by_day.is_empty() || !self.by_month_day.is_empty() || day.day() == start.day()
            }
            Freq::Yearly => {
                !self.by_day.is_empty()
                    || !self.by_month_day.is_empty()
                    || (day.day() == start.day()
                        && (!self.by_month.is_empty() || day.month() == start.month()))
            }
        }
    }

    /// Whether `day` is the n-th of its weekday in its month (its year for
    /// `YEARLY` without `BYMONTH`); negative counts from the end.
    fn nth(&self, day: NaiveDate, n: i32) -> bool {
        let in_year = self.freq == Freq::Yearly && self.by_month.is_empty();
        let (index, len) = if in_year {
            let len = if day.leap_year() { 366 } else { 365 };
            (day.ordinal() as i32, len)
        } else {
            (
                day.day() as i32,
                days_in_month(day.year(), day.month()) as i32,
            )
        };
        if n > 0 {
            (index - 1) / 7 + 1 == n
        } else {
            (len - index) / 7 + 1 == -n
        }
    }

    /// The days of the `k`-th period after the one holding `start`, in order,
    /// or `None` past the calendar's end.
    fn period(&self, start: NaiveDate, k: u64) -> Option<Vec<NaiveDate>> {
        let step = k.checked_mul(u64::from(self.interval))?;
        let (first, end) = match self.freq {
            Freq::Daily => {
                let d = start.checked_add_days(Days::new(step))?;
                (d, d.succ_opt()?)
            }
            Freq::Weekly => {
                let back = (start.weekday().num_days_from_monday() + 7
                    - self.week_start.num_days_from_monday())
                    % 7;
                let week = start.checked_sub_days(Days::new(back.into()))?;
                let d = week.checked_add_days(Days::new(step.checked_mul(7)?))?;
                (d, d.checked_add_days(Days::new(7))?)
            }
            Freq::Monthly => {
                let d = start
                    .with_day(1)?
                    .checked_add_months(Months::new(u32::try_from(step).ok()?))?;
                (d, d.checked_add_months(Months::new(1))?)
            }
            Freq::Yearly => {
                let year = start.year().checked_add(i32::try_from(step).ok()?)?;
                let d = NaiveDate::from_ymd_opt(year, 1, 1)?;
                (d, NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?)
            }
        };
        Some(first.iter_days().take_while(|d| *d < end).collect())
    }

    /// The dates of the rule's occurrences from `start` (the first, as RFC 5545
    /// says `DTSTART` is) up to `horizon` (exclusive), in order, each handed to
    /// `keep` (which says whether it is still within `UNTIL`); at most `COUNT`.
    pub(super) fn dates(
        &self,
        start: NaiveDate,
        horizon: NaiveDate,
        keep: impl Fn(NaiveDate) -> bool,
    ) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        let limit = self.count.map_or(usize::MAX, |c| c as usize);
        if start >= horizon || !keep(start) {
            return out;
        }
        out.push(start);
        for k in 0.. {
            if out.len() >= limit {
                break;
            }
            let Some(days) = self.period(start, k) else {
                break;
            };
            if days.first().is_none_or(|d| *d >= horizon) {
                break;
            }
            for day in days {
                if day <= start || !self.matches(day, start) {
                    continue;
                }
                if day >= horizon || !keep(day) {
                    return out;
                }
                out.push(day);
                if out.len() >= limit {
                    return out;
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Events

struct Event {
    line: usize,
    uid: String,
    start: When,
    end: Option<When>,
    duration: Option<TimeDelta>,
    rules: Vec<(usize, Rule)>,
    rdates: Vec<When>,
    exdates: Vec<When>,
    recurrence_id: Option<When>,
    cancelled: bool,
}

fn parse_events(src: &str) -> Result<Vec<Event>, CalendarError> {
    let lines = unfold(src);
    let last_line = lines.last().map_or(1, |(n, _)| *n);
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut events = Vec::new();
    let mut current: Option<Draft> = None;
    for (n, text) in &lines {
        let cl = content_line(*n, text)?;
        match cl.name.as_str() {
            "BEGIN" => {
                let what = cl.value.to_ascii_uppercase();
                if stack.is_empty() && what != "VCALENDAR" {
                    return cl.err("a calendar starts with BEGIN:VCALENDAR");
                }
                if what == "VEVENT" && stack.len() == 1 {
                    current = Some(Draft::new(*n));
                }
                stack.push((what, *n));
            }
            "END" => {
                let what = cl.value.to_ascii_uppercase();
                match stack.pop() {
                    Some((open, _)) if open == what => {}
                    Some((open, at)) => {
                        return cl.err(format!("END:{what} closes BEGIN:{open} of line {at}"));
                    }
                    None => return cl.err(format!("END:{what} without a BEGIN")),
                }
                if what == "VEVENT"
                    && stack.len() == 1
                    && let Some(draft) = current.take()
                {
                    events.push(draft.finish()?);
                }
                if stack.is_empty() && what == "VCALENDAR" {
                    // Whatever follows the calendar is not part of it.
                    return Ok(events);
                }
            }
            _ if stack.is_empty() => return cl.err("a calendar starts with BEGIN:VCALENDAR"),
            // The event's own properties, not those of an alarm inside it.
            _ if stack.len() == 2 => {
                if let Some(draft) = current.as_mut() {
                    draft.property(&cl)?;
                }
            }
            _ => {}
        }
    }
    match stack.last() {
        Some((open, at)) => Err(CalendarError {
            line: last_line,
            message: format!("the calendar ends inside BEGIN:{open} of line {at} (no END:{open})"),
        }),
        None => Err(CalendarError {
            line: 1,
            message: "empty: a calendar starts with BEGIN:VCALENDAR".into(),
        }),
    }
}

/// An event while its properties are read; the `RRULE` lines wait for `DTSTART`.
struct Draft {
    line: usize,
    uid: String,
    start: Option<When>,
    end: Option<When>,
    duration: Option<TimeDelta>,
    /// Each `RRULE` line: its number and text.
    rules: Vec<(usize, String)>,
    rdates: Vec<When>,
    exdates: Vec<When>,
    recurrence_id: Option<When>,
    cancelled: bool,
}

impl Draft {
    fn new(line: usize) -> Draft {
        Draft {
            line,
            uid: String::new(),
            start: None,
            end: None,
            duration: None,
            rules: Vec::new(),
            rdates: Vec::new(),
            exdates: Vec::new(),
            recurrence_id: None,
            cancelled: false,
        }
    }

    fn property(&mut self, cl: &ContentLine) -> Result<(), CalendarError> {
        let one = |cl: &ContentLine| -> Result<When, CalendarError> {
            let zone = zone_of(cl)?;
            when(cl, cl.value, zone)
        };
        match cl.name.as_str() {
            "UID" => self.uid = cl.value.to_string(),
            "DTSTART" => self.start = Some(one(cl)?),
            "DTEND" => self.end = Some(one(cl)?),
            "DURATION" => self.duration = Some(duration(cl)?),
            "RECURRENCE-ID" => self.recurrence_id = Some(one(cl)?),
            "RRULE" => self.rules.push((cl.line, cl.text.to_string())),
            "RDATE" => self.rdates.extend(whens(cl)?),
            "EXDATE" => self.exdates.extend(whens(cl)?),
            "EXRULE" => {
                return cl.err("EXRULE is not supported (RFC 5545 removed it): list EXDATEs");
            }
            "STATUS" => self.cancelled = cl.value.eq_ignore_ascii_case("CANCELLED"),
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<Event, CalendarError> {
        let Some(start) = self.start else {
            return Err(CalendarError {
                line: self.line,
                message: "VEVENT: an event needs DTSTART".into(),
            });
        };
        let start_zone = match start {
            When::Time(_, z) => z,
            When::Date(_) => Zone::Floating,
        };
        let mut rules = Vec::new();
        for (line, text) in &self.rules {
            let cl = content_line(*line, text)?;
            rules.push((*line, rule(&cl, start_zone)?));
        }
        Ok(Event {
            line: self.line,
            uid: self.uid,
            start,
            end: self.end,
            duration: self.duration,
            rules,
            rdates: self.rdates,
            exdates: self.exdates,
            recurrence_id: self.recurrence_id,
            cancelled: self.cancelled,
        })
    }
}

impl Event {
    /// Every day the event covers, in `zone`, before `horizon`.
    fn days(
        &self,
        zone: Tz,
        horizon: NaiveDate,
        overridden: &BTreeSet<(String, Key)>,
        out: &mut Vec<(NaiveDate, NaiveDate)>,
    ) -> Result<(), CalendarError> {
        let bad = |message: String| CalendarError {
            line: self.line,
            message: format!("VEVENT: {message}"),
        };
        let (start_date, start_time) = match self.start {
            When::Date(d) => (d, None),
            When::Time(t, z) => (t.date(), Some((t.time(), z))),
        };
        // Occurrence start dates: DTSTART, the rules' dates, RDATEs.
        let mut starts: BTreeSet<When> = BTreeSet::new();
        let at = |d: NaiveDate| match start_time {
            None => When::Date(d),
            Some((time, z)) => When::Time(d.and_time(time), z),
        };
        starts.insert(self.start);
        for (_, rule) in &self.rules {
            let within = |d: NaiveDate| match (rule.until, at(d)) {
                (None, _) => true,
                (Some(When::Date(u)), _) => d <= u,
                (Some(until @ When::Time(..)), When::Date(_)) => d <= until.date(),
                (Some(until @ When::Time(..)), occurrence @ When::Time(..)) => {
                    occurrence.key(zone) <= until.key(zone)
                }
            };
            starts.extend(rule.dates(start_date, horizon, within).into_iter().map(at));
        }
        starts.extend(self.rdates.iter().copied());
        let excluded: BTreeSet<Key> = self.exdates.iter().map(|w| w.key(zone)).collect();
        let excluded_dates: BTreeSet<NaiveDate> = self
            .exdates
            .iter()
            .filter_map(|w| match w {
                When::Date(d) => Some(*d),
                When::Time(..) => None,
            })
            .collect();
        let is_master = self.recurrence_id.is_none();
        for s in starts {
            let key = s.key(zone);
            let excluded = excluded.contains(&key)
                || (matches!(s, When::Time(..)) && excluded_dates.contains(&s.date()))
                || (is_master && overridden.contains(&(self.uid.clone(), key)));
            if excluded {
                continue;
            }
            match s {
                When::Date(d) => {
                    let days = match (self.end, self.duration) {
                        (Some(When::Date(e)), _) => (e - start_date).num_days(),
                        (Some(e @ When::Time(..)), _) => (e.date() - start_date).num_days(),
                        (None, Some(len)) => (len.num_seconds() + 86_399).div_euclid(86_400),
                        (None, None) => 1,
                    };
                    let Some(end) = d.checked_add_days(Days::new(days.max(1) as u64)) else {
                        return Err(bad(format!("{d} plus its length is out of range")));
                    };
                    out.push((d, end));
                }
                When::Time(local, z) => {
                    let length = match (self.end, self.duration, self.start) {
                        (Some(When::Time(e, ez)), _, When::Time(st, sz)) if ez == sz => e - st,
                        (Some(e @ When::Time(..)), _, start) => {
                            match (e.key(zone), start.key(zone)) {
                                (Key::Instant(e), Key::Instant(s)) => e - s,
                                _ => TimeDelta::zero(),
                            }
                        }
                        (Some(When::Date(e)), _, _) => {
                            e.and_time(local.time()) - start_date.and_time(local.time())
                        }
                        (None, Some(len), _) => len,
                        (None, None, _) => TimeDelta::zero(),
                    };
                    let first = z.instant(local, zone);
                    let last = z.instant(local + length.max(TimeDelta::zero()), zone);
                    let day = |t: DateTime<Utc>| t.with_timezone(&zone).date_naive();
                    let last_day = if last > first {
                        day(last - TimeDelta::nanoseconds(1))
                    } else {
                        day(first)
                    };
                    if let Some(end) = last_day.succ_opt() {
                        out.push((day(first), end));
                    }
                }
            }
        }
        Ok(())
    }
}

impl When {
    fn date(&self) -> NaiveDate {
        match self {
            When::Date(d) => *d,
            When::Time(t, _) => t.date(),
        }
    }
}

impl PartialOrd for When {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Eq for When {}

impl Ord for When {
    /// Any total order: a set of occurrence starts only needs to be free of
    /// duplicates.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let rank = |w: &When| match *w {
            When::Date(d) => (0, d.and_time(chrono::NaiveTime::MIN), 0, String::new()),
            When::Time(t, Zone::Floating) => (1, t, 0, String::new()),
            When::Time(t, Zone::Utc) => (1, t, 1, String::new()),
            When::Time(t, Zone::Named(tz)) => (1, t, 2, tz.name().to_string()),
        };
        rank(self).cmp(&rank(other))
    }
}
