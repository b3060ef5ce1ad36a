//! Holidays: calendars (RRULE edge cases against RFC 5545's own examples and,
//! on generated rules, against the `rrule` crate), time zones and Windows
//! names, DST days, leap days, and holidays laid over weekly schedules.
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::ical::{CalendarDays, CalendarError, read};
use super::tests::{assert_at, at};
use super::*;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("test date")
}

/// A calendar of these lines (events, or anything inside VCALENDAR).
fn calendar(body: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n")
}

fn event(lines: &str) -> String {
    calendar(&format!(
        "BEGIN:VEVENT\r\nUID:test\r\n{lines}END:VEVENT\r\n"
    ))
}

fn read_in(src: &str, zone: Tz) -> Result<CalendarDays, CalendarError> {
    read(src, zone, HORIZON)
}

/// Every holiday date, one by one, up to `until`.
fn dates(src: &str, zone: Tz, until: &str) -> Vec<String> {
    let days = read_in(src, zone).unwrap_or_else(|e| panic!("{e}\n{src}"));
    let holidays = Holidays::new(zone, HolidayMode::Asleep, days.spans);
    holidays
        .spans()
        .iter()
        .flat_map(|(a, b)| a.iter_days().take_while(move |d| d < b))
        .take_while(|d| *d <= day(until))
        .map(|d| d.to_string())
        .collect()
}

fn error(src: &str) -> CalendarError {
    match read_in(src, chrono_tz::UTC) {
        Ok(d) => panic!("accepted: {d:?}\n{src}"),
        Err(e) => e,
    }
}

const BERLIN: Tz = chrono_tz::Europe::Berlin;

#[test]
fn all_day_events_cover_their_dates_and_dtend_is_exclusive() {
    let src = calendar(
        "BEGIN:VEVENT\r\nUID:a\r\nDTSTART;VALUE=DATE:20261224\r\nSUMMARY:Heiligabend\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:b\r\nDTSTART;VALUE=DATE:20261228\r\nDTEND;VALUE=DATE:20270101\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:c\r\nDTSTART;VALUE=DATE:20270106\r\nDURATION:P2D\r\nEND:VEVENT\r\n",
    );
    assert_eq!(
        dates(&src, BERLIN, "2027-12-31"),
        [
            "2026-12-24",
            "2026-12-28",
            "2026-12-29",
            "2026-12-30",
            "2026-12-31",
            "2027-01-06",
            "2027-01-07"
        ]
    );
    assert_eq!(read_in(&src, BERLIN).map(|d| d.events), Ok(3));
}

#[test]
fn rfc_5545_examples_of_weekly_rules_with_wkst() {
    // RFC 5545 3.8.5.3: the week start changes which days an INTERVAL=2 rule hits.
    let rule = |wkst: &str| {
        event(&format!(
            "DTSTART;TZID=America/New_York:19970805T090000\r\nRRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST={wkst}\r\n"
        ))
    };
    let ny = chrono_tz::America::New_York;
    assert_eq!(
        dates(&rule("MO"), ny, "1997-12-31"),
        ["1997-08-05", "1997-08-10", "1997-08-19", "1997-08-24"]
    );
    assert_eq!(
        dates(&rule("SU"), ny, "1997-12-31"),
        ["1997-08-05", "1997-08-17", "1997-08-19", "1997-08-31"]
    );
}

#[test]
fn yearly_rules_for_public_holidays() {
    // US Thanksgiving (4th Thursday of November) and Memorial Day (last Monday of May).
    let src = calendar(
        "BEGIN:VEVENT\r\nUID:t\r\nDTSTART;VALUE=DATE:20251127\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=4TH\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:m\r\nDTSTART;VALUE=DATE:20250526\r\nRRULE:FREQ=YEARLY;BYMONTH=5;BYDAY=-1MO;UNTIL=20270601\r\nEND:VEVENT\r\n",
    );
    assert_eq!(
        dates(&src, chrono_tz::UTC, "2028-12-31"),
        [
            "2025-05-26",
            "2025-11-27",
            "2026-05-25",
            "2026-11-26",
            "2027-05-31",
            "2027-11-25",
            "2028-11-23"
        ]
    );
}

#[test]
fn a_yearly_leap_day_happens_only_in_leap_years() {
    let src = event("DTSTART;VALUE=DATE:20240229\r\nRRULE:FREQ=YEARLY;COUNT=3\r\n");
    assert_eq!(
        dates(&src, BERLIN, "2040-12-31"),
        ["2024-02-29", "2028-02-29", "2032-02-29"]
    );
    // BYMONTHDAY=-1 in February: the 28th, or the 29th in a leap year.
    let src = event(
        "DTSTART;VALUE=DATE:20270228\r\nRRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=-1;COUNT=3\r\n",
    );
    assert_eq!(
        dates(&src, BERLIN, "2040-12-31"),
        ["2027-02-28", "2028-02-29", "2029-02-28"]
    );
}

#[test]
fn monthly_rules_skip_months_without_the_day() {
    let src = event("DTSTART;VALUE=DATE:20260131\r\nRRULE:FREQ=MONTHLY;COUNT=4\r\n");
    assert_eq!(
        dates(&src, BERLIN, "2027-12-31"),
        ["2026-01-31", "2026-03-31", "2026-05-31", "2026-07-31"]
    );
    // Friday the 13th, in 2026.
    let src = event(
        "DTSTART;VALUE=DATE:20260213\r\nRRULE:FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13;UNTIL=20261231\r\n",
    );
    assert_eq!(
        dates(&src, BERLIN, "2027-12-31"),
        ["2026-02-13", "2026-03-13", "2026-11-13"]
    );
}

#[test]
fn exdate_removes_an_instance_that_count_still_counts() {
    let src = event(
        "DTSTART;VALUE=DATE:20261221\r\nRRULE:FREQ=DAILY;COUNT=5\r\nEXDATE;VALUE=DATE:20261223,20261224\r\n",
    );
    assert_eq!(
        dates(&src, BERLIN, "2027-12-31"),
        ["2026-12-21", "2026-12-22", "2026-12-25"]
    );
    // Timed: EXDATE names the instant, in any zone.
    let src = event(
        "DTSTART;TZID=Europe/Berlin:20261221T100000\r\nRRULE:FREQ=DAILY;INTERVAL=2;COUNT=3\r\nEXDATE:20261223T090000Z\r\n",
    );
    assert_eq!(
        dates(&src, BERLIN, "2027-12-31"),
        ["2026-12-21", "2026-12-25"]
    );
}

#[test]
fn until_is_inclusive_and_rdate_adds_days() {
    let src = event(
        "DTSTART:20261201T120000Z\r\nRRULE:FREQ=WEEKLY;UNTIL=20261215T120000Z\r\nRDATE:20261231T120000Z\r\n",
    );
    assert_eq!(
        dates(&src, chrono_tz::UTC, "2027-12-31"),
        ["2026-12-01", "2026-12-08", "2026-12-15", "2026-12-31"]
    );
}

#[test]
fn timed_events_cover_the_days_they_overlap_in_the_holidays_zone() {
    // 22:00-23:00 in New York is 04:00-05:00 the next day in Berlin.
    let ny = event(
        "DTSTART;TZID=America/New_York:20261224T220000\r\nDTEND;TZID=America/New_York:20261224T230000\r\n",
    );
    assert_eq!(dates(&ny, BERLIN, "2027-12-31"), ["2026-12-25"]);
    assert_eq!(
        dates(&ny, chrono_tz::America::New_York, "2027-12-31"),
        ["2026-12-24"]
    );
    // The same with the Windows name Outlook writes.
    let outlook = ny.replace("America/New_York", "Eastern Standard Time");
    assert_eq!(dates(&outlook, BERLIN, "2027-12-31"), ["2026-12-25"]);
    // Over midnight: both days; ending at midnight: one day.
    let night = event("DTSTART:20261224T200000\r\nDTEND:20261225T020000\r\n");
    assert_eq!(
        dates(&night, BERLIN, "2027-12-31"),
        ["2026-12-24", "2026-12-25"]
    );
    let outlook_all_day = event(
        "DTSTART;TZID=W. Europe Standard Time:20261224T000000\r\nDTEND;TZID=W. Europe Standard Time:20261225T000000\r\n",
    );
    assert_eq!(
        dates(&outlook_all_day, BERLIN, "2027-12-31"),
        ["2026-12-24"]
    );
    // A quoted TZID, and a vendor prefix before an IANA name.
    let quoted =
        event("DTSTART;TZID=\"/mozilla.org/20050126_1/Europe/Berlin\":20261224T100000\r\n");
    assert_eq!(dates(&quoted, BERLIN, "2027-12-31"), ["2026-12-24"]);
}

#[test]
fn recurring_timed_events_keep_their_wall_clock_across_dst() {
    // 02:30 does not exist in Berlin on 2026-03-29: that instance still happens
    // (at 03:00 CEST), on its own day.
    let src = event(
        "DTSTART;TZID=Europe/Berlin:20260327T023000\r\nDURATION:PT1H\r\nRRULE:FREQ=DAILY;COUNT=4\r\n",
    );
    assert_eq!(
        dates(&src, BERLIN, "2027-12-31"),
        ["2026-03-27", "2026-03-28", "2026-03-29", "2026-03-30"]
    );
    // 23:30 UTC is the next day in Berlin in winter and in summer alike.
    let src = event("DTSTART:20260328T233000Z\r\nRRULE:FREQ=DAILY;COUNT=2\r\n");
    assert_eq!(
        dates(&src, BERLIN, "2027-12-31"),
        ["2026-03-29", "2026-03-30"]
    );
}

#[test]
fn overrides_and_cancelled_events() {
    let src = calendar(
        "BEGIN:VEVENT\r\nUID:party\r\nDTSTART;VALUE=DATE:20261218\r\nRRULE:FREQ=YEARLY;COUNT=3\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:party\r\nRECURRENCE-ID;VALUE=DATE:20271218\r\nDTSTART;VALUE=DATE:20271217\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:party\r\nRECURRENCE-ID;VALUE=DATE:20281218\r\nDTSTART;VALUE=DATE:20281218\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n\
         BEGIN:VEVENT\r\nUID:off\r\nDTSTART;VALUE=DATE:20261201\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n\
         BEGIN:VTIMEZONE\r\nTZID:Custom\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n",
    );
    assert_eq!(
        dates(&src, BERLIN, "2030-12-31"),
        ["2026-12-18", "2027-12-17"]
    );
}

#[test]
fn folded_lines_and_alarms() {
    let src = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224\nRRULE:FREQ=YEARLY;\n COUNT=2\nBEGIN:VALARM\nTRIGGER:-PT15M\nDTSTART:bogus\nEND:VALARM\nEND:VEVENT\nEND:VCALENDAR\n";
    assert_eq!(
        dates(src, BERLIN, "2030-12-31"),
        ["2026-12-24", "2027-12-24"]
    );
}

#[test]
fn malformed_calendars_are_located_errors() {
    let cases = [
        (
            event("DTSTART:20261224T100000\r\nRRULE:FREQ=HOURLY\r\n"),
            7,
            "FREQ=HOURLY: not supported",
        ),
        (
            event("DTSTART:20261224T100000\r\nRRULE:FREQ=MONTHLY;BYSETPOS=-1;BYDAY=FR\r\n"),
            7,
            "BYSETPOS is not supported",
        ),
        (
            event("DTSTART;TZID=Mars/Olympus:20261224T100000\r\n"),
            6,
            "unknown TZID \"Mars/Olympus\"",
        ),
        (
            event("DTSTART;VALUE=DATE:2026-12-24\r\n"),
            6,
            "is not a date YYYYMMDD",
        ),
        (
            event("DTSTART:20261224T250000\r\n"),
            6,
            "is not a date-time",
        ),
        (event("SUMMARY:no start\r\n"), 4, "an event needs DTSTART"),
        (
            event("DTSTART;VALUE=DATE:20261224\r\nRRULE:FREQ=WEEKLY;BYDAY=1MO\r\n"),
            7,
            "numbered BYDAY",
        ),
        (
            event("DTSTART;VALUE=DATE:20261224\r\nRRULE:COUNT=2\r\n"),
            7,
            "needs FREQ",
        ),
        (
            event("DTSTART;VALUE=DATE:20261224\r\nDURATION:1D\r\n"),
            7,
            "not a duration",
        ),
        (
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261224\r\nEND:VCALENDAR\r\n"
                .to_string(),
            4,
            "END:VCALENDAR closes BEGIN:VEVENT of line 2",
        ),
        (
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261224\r\n".to_string(),
            3,
            "no END:VEVENT",
        ),
        (
            "holidays: 2026-12-24\n".to_string(),
            1,
            "starts with BEGIN:VCALENDAR",
        ),
        (String::new(), 1, "empty"),
        (
            event("DTSTART;VALUE=DATE:20261224\r\nthis is not a property\r\n"),
            7,
            "no colon",
        ),
    ];
    for (src, line, says) in cases {
        let e = error(&src);
        assert_eq!(e.line, line, "{e} in\n{src}");
        assert!(e.message.contains(says), "{e:?} should say {says:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn reading_never_panics(src in "(BEGIN:VCALENDAR\n)?(BEGIN:VEVENT\n)?([A-Z;=:0-9T,/-]{0,40}\n){0,6}(END:VEVENT\n)?") {
        let _ = read_in(&src, BERLIN);
    }
}

// ---------------------------------------------------------------------------
// Against the rrule crate

fn weekday_name(i: usize) -> &'static str {
    ["MO", "TU", "WE", "TH", "FR", "SA", "SU"][i]
}

/// An RRULE in the subset, as text, valid for the rrule crate too.
fn rule_text() -> impl Strategy<Value = String> {
    let freq = proptest::sample::select(vec!["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]);
    (
        freq,
        1u32..4,
        proptest::option::of(1u32..40),
        proptest::collection::btree_set(0usize..7, 0..3),
        proptest::collection::btree_set(1u32..13, 0..3),
        proptest::collection::btree_set(prop_oneof![1i32..32, -3i32..0], 0..3),
        proptest::option::of(prop_oneof![1i32..5, -2i32..0]),
        0usize..7,
    )
        .prop_map(
            |(freq, interval, count, days, months, month_days, nth, wkst)| {
                let mut parts = vec![format!("FREQ={freq}"), format!("INTERVAL={interval}")];
                if let Some(c) = count {
                    parts.push(format!("COUNT={c}"));
                }
                if !days.is_empty() {
                    let ordinal = matches!(freq, "MONTHLY" | "YEARLY")
                        .then_some(nth)
                        .flatten();
                    let list: Vec<String> = days
                        .iter()
                        .map(|d| match ordinal {
                            Some(n) => format!("{n}{}", weekday_name(*d)),
                            None => weekday_name(*d).to_string(),
                        })
                        .collect();
                    parts.push(format!("BYDAY={}", list.join(",")));
                }
                if !months.is_empty() {
                    let list: Vec<String> = months.iter().map(u32::to_string).collect();
                    parts.push(format!("BYMONTH={}", list.join(",")));
                }
                if !month_days.is_empty() && freq != "WEEKLY" {
                    let list: Vec<String> = month_days.iter().map(i32::to_string).collect();
                    parts.push(format!("BYMONTHDAY={}", list.join(",")));
                }
                parts.push(format!("WKST={}", weekday_name(wkst)));
                parts.join(";")
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// RFC 5545 leaves a DTSTART that the rule does not match undefined; both
    /// readers agree from the rule's first date on, so DTSTART is that date.
    #[test]
    fn recurrence_dates_agree_with_the_rrule_crate(rule in rule_text(), start in 0i64..(365 * 8)) {
        let first = Utc.with_ymd_and_hms(2024, 1, 1, 9, 0, 0).single().unwrap_or_default()
            + chrono::TimeDelta::days(start);
        let set = |dtstart: DateTime<Utc>| -> Option<rrule::RRuleSet> {
            format!("DTSTART:{}\nRRULE:{rule}", dtstart.format("%Y%m%dT%H%M%SZ")).parse().ok()
        };
        let Some(probe) = set(first) else {
            return Err(TestCaseError::reject("the rrule crate refuses it"));
        };
        let Some(synced) = probe.all(1).dates.first().map(|d| d.with_timezone(&Utc)) else {
            return Err(TestCaseError::reject("no occurrence"));
        };
        // COUNT counts from the first date: let both start there.
        let Some(theirs) = set(synced) else {
            return Err(TestCaseError::reject("the rrule crate refuses it"));
        };
        let theirs = theirs.all(2_000);
        let their_dates: Vec<NaiveDate> = theirs.dates.iter().map(|d| d.date_naive()).collect();
        let src = event(&format!("DTSTART:{}\r\nRRULE:{rule}\r\n", synced.format("%Y%m%dT%H%M%SZ")));
        let ours = read_in(&src, chrono_tz::UTC).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut our_dates: Vec<NaiveDate> = ours
            .spans
            .iter()
            .flat_map(|(a, b)| a.iter_days().take_while(move |d| d < b))
            .collect();
        our_dates.sort();
        our_dates.dedup();
        if theirs.limited || their_dates.len() == 2_000 {
            let last = their_dates.last().copied().unwrap_or(NaiveDate::MIN);
            our_dates.retain(|d| *d <= last);
        } else {
            our_dates.retain(|d| *d < HORIZON);
        }
        let their_dates: Vec<NaiveDate> = their_dates.into_iter().filter(|d| *d < HORIZON).collect();
        prop_assert_eq!(our_dates, their_dates, "{}", rule);
    }
}

// ---------------------------------------------------------------------------
// Holidays over a schedule

fn office_hours(spans: &[(&str, &str)], mode: HolidayMode) -> Schedule {
    let base = Schedule::parse_awake_hours("Mon-Fri 07:00-19:00 Europe/Berlin").expect("spec");
    let spans = spans
        .iter()
        .map(|(a, b)| parse_dates(&format!("{a}..{b}")).expect("test dates"));
    Schedule::Holidays(Box::new(WithHolidays {
        base,
        holidays: Holidays::new(BERLIN, mode, spans),
    }))
}

#[test]
fn a_holiday_sleeps_the_whole_working_day() {
    // Thursday 2026-12-24 is a holiday; Friday the 25th is not.
    let s = office_hours(&[("2026-12-24", "2026-12-24")], HolidayMode::Asleep);
    assert_at(
        &s,
        "2026-12-23T11:00:00Z",
        Phase::Awake,
        Some("2026-12-23T18:00:00Z"),
    );
    assert_at(
        &s,
        "2026-12-23T18:00:00Z",
        Phase::Asleep,
        Some("2026-12-25T06:00:00Z"),
    );
    assert_at(
        &s,
        "2026-12-24T10:00:00Z",
        Phase::Asleep,
        Some("2026-12-25T06:00:00Z"),
    );
    assert_eq!(
        s.last_change(at("2026-12-24T10:00:00Z")),
        Some(at("2026-12-23T18:00:00Z"))
    );
    assert_eq!(
        s.last_change(at("2026-12-25T07:00:00Z")),
        Some(at("2026-12-25T06:00:00Z"))
    );
    // A holiday starting mid-window ends the window at local midnight.
    let s = office_hours(&[("2026-12-28", "2026-12-31")], HolidayMode::Asleep);
    let overnight = Schedule::Holidays(Box::new(WithHolidays {
        base: Schedule::Always,
        holidays: Holidays::new(
            BERLIN,
            HolidayMode::Asleep,
            parse_dates("2026-12-28..2026-12-31"),
        ),
    }));
    assert_at(
        &overnight,
        "2026-12-27T12:00:00Z",
        Phase::Awake,
        Some("2026-12-27T23:00:00Z"),
    );
    assert_at(
        &overnight,
        "2026-12-29T12:00:00Z",
        Phase::Asleep,
        Some("2026-12-31T23:00:00Z"),
    );
    // Friday 2027-01-01 is a working day for this schedule.
    assert_at(
        &s,
        "2026-12-30T12:00:00Z",
        Phase::Asleep,
        Some("2027-01-01T06:00:00Z"),
    );
}

#[test]
fn an_awake_holiday_keeps_the_whole_day_awake() {
    // Saturday 2026-12-26 awake all day in Berlin.
    let s = office_hours(&[("2026-12-26", "2026-12-26")], HolidayMode::Awake);
    assert_at(
        &s,
        "2026-12-25T18:30:00Z",
        Phase::Asleep,
        Some("2026-12-25T23:00:00Z"),
    );
    assert_at(
        &s,
        "2026-12-26T12:00:00Z",
        Phase::Awake,
        Some("2026-12-26T23:00:00Z"),
    );
    assert_at(
        &s,
        "2026-12-26T23:00:00Z",
        Phase::Asleep,
        Some("2026-12-28T06:00:00Z"),
    );
}

#[test]
fn holidays_on_dst_days_last_as_long_as_the_day() {
    let always = |first: &str| {
        Schedule::Holidays(Box::new(WithHolidays {
            base: Schedule::Always,
            holidays: Holidays::new(BERLIN, HolidayMode::Asleep, parse_dates(first)),
        }))
    };
    // Spring forward: 23 hours.
    let s = always("2026-03-29");
    assert_at(
        &s,
        "2026-03-28T22:59:59Z",
        Phase::Awake,
        Some("2026-03-28T23:00:00Z"),
    );
    assert_at(
        &s,
        "2026-03-29T21:59:59Z",
        Phase::Asleep,
        Some("2026-03-29T22:00:00Z"),
    );
    // Fall back: 25 hours.
    let s = always("2026-10-25");
    assert_at(
        &s,
        "2026-10-24T22:00:00Z",
        Phase::Asleep,
        Some("2026-10-25T23:00:00Z"),
    );
    assert_eq!(
        s.last_change(at("2026-10-25T22:59:59Z")),
        Some(at("2026-10-24T22:00:00Z"))
    );
    // Pacific/Kiritimati skipped 31 December 1994: a holiday that day never begins.
    let kiritimati = Schedule::Holidays(Box::new(WithHolidays {
        base: Schedule::Always,
        holidays: Holidays::new(
            chrono_tz::Pacific::Kiritimati,
            HolidayMode::Asleep,
            parse_dates("1994-12-31"),
        ),
    }));
    assert_eq!(
        kiritimati.phase_at(at("1994-12-31T10:00:00Z")),
        Phase::Awake
    );
    assert_eq!(kiritimati.next_change(at("1994-12-29T00:00:00Z")), None);
}

#[test]
fn dates_and_ranges_parse_or_say_why_not() {
    assert_eq!(
        parse_dates("2026-12-24"),
        Ok((day("2026-12-24"), day("2026-12-25")))
    );
    assert_eq!(
        parse_dates(" 2026-12-28..2026-12-31 "),
        Ok((day("2026-12-28"), day("2027-01-01")))
    );
    for (bad, says) in [
        ("2026-12-32", "not a date YYYY-MM-DD"),
        ("24.12.2026", "not a date YYYY-MM-DD"),
        ("2026-12-31..2026-12-28", "ends before it starts"),
        ("2027-02-29", "not a date"),
        ("2100-01-01", "holidays end before 2100-01-01"),
    ] {
        let e = parse_dates(bad).expect_err(bad);
        assert!(e.0.contains(says), "{bad}: {e}");
    }
    assert_eq!(HolidayMode::parse("Awake"), Ok(HolidayMode::Awake));
    assert!(HolidayMode::parse("off").is_err());
}

#[test]
fn describe_lists_the_next_holidays() {
    let s = office_hours(
        &[("2026-12-24", "2026-12-24"), ("2026-12-28", "2026-12-31")],
        HolidayMode::Asleep,
    );
    assert_eq!(
        s.describe(at("2026-12-24T10:00:00Z")),
        "asleep\n2026-12-25T06:00:00Z\nholiday: asleep all day (Europe/Berlin)\nnext holidays (asleep, Europe/Berlin): 2026-12-24, 2026-12-28..2026-12-31\n"
    );
    assert!(
        s.to_string()
            .contains("asleep on 5 holiday days (Europe/Berlin)"),
        "{s}"
    );
}
