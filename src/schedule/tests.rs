//! Schedules at chosen instants (Europe/Berlin and America/New_York transitions,
//! overnight and weekend windows, zones east of UTC+12), and properties over
//! random instants and zones.
use super::weekly::WEEKDAYS;
use super::*;
use proptest::prelude::*;

pub(super) fn at(s: &str) -> DateTime<Utc> {
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
pub(super) fn assert_at(s: &Schedule, t: &str, phase: Phase, next: Option<&str>) {
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
    let s = hours("Mon-Fri 08:00-18:00 UTC, 2026-12-24T00:00:00+01:00-2026-12-27T00:00:00+01:00");
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
fn windows_in_zones_with_different_dst_dates_can_stay_awake_for_months() {
    // Together these cover every instant while Berlin is on winter time; the
    // next gap opens when Berlin moves its clocks in spring 1991.
    let s = hours(
        "Fri-Tue 03:00-01:30 America/Santiago, Sun-Sat 01:15-00:00 UTC, Tue-Mon 03:15-02:30 Europe/Berlin",
    );
    let t = at("1990-09-28T01:15:00Z");
    let n = s.next_change(t).expect("changes in spring");
    assert!(
        n > at("1991-03-01T00:00:00Z") && n < at("1991-06-01T00:00:00Z"),
        "{n}"
    );
    assert_ne!(s.phase_at(n), s.phase_at(t));
    assert!(
        s.last_change(n - TimeDelta::seconds(1))
            .is_none_or(|c| c <= t)
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
    assert!(msg(Schedule::parse_awake_hours("Mon-Fri 07:00-19:00")).contains("missing time zone"));
    assert!(
        msg(Schedule::parse_awake_hours("Mon-Fry 07:00-19:00 UTC"))
            .contains("\"Fry\" is not a day")
    );
    assert!(msg(Schedule::parse_awake_hours("Mon-Fri 07:00-19:00 UTC,")).contains("empty entry"));
    let many = vec!["Mon-Fri 07:00-19:00 UTC"; 51].join(", ");
    assert!(msg(Schedule::parse_awake_hours(&many)).contains("more than the 50 allowed"));
    assert!(
        msg(Schedule::parse_awake_hours(
            "always, Mon-Fry 07:00-19:00 UTC"
        ))
        .contains("not a day"),
        "entries next to `always` are checked too"
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
    assert!(msg(Schedule::cron("0 0 19 * * *", "0 7 * * *", "UTC")).contains("expected 5 fields"));
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
fn go_kube_downscaler_spellings_mean_what_they_mean_there() {
    // An absolute span with spaces around the dash.
    let spaced = hours("2024-11-01T22:00:00Z - 2024-11-22T05:00:00Z");
    let tight = hours("2024-11-01T22:00:00Z-2024-11-22T05:00:00Z");
    let t = at("2024-11-10T00:00:00Z");
    assert_eq!(
        (spaced.next_change(t), spaced.last_change(t)),
        (tight.next_change(t), tight.last_change(t))
    );
    assert_at(
        &spaced,
        "2024-11-01T21:59:59Z",
        Phase::Asleep,
        Some("2024-11-01T22:00:00Z"),
    );
    assert_at(
        &spaced,
        "2024-11-22T04:59:59Z",
        Phase::Awake,
        Some("2024-11-22T05:00:00Z"),
    );
    let both =
        hours("Mon-Fri 08:00-18:00 UTC, 2024-12-24T00:00:00+01:00  -  2024-12-27T00:00:00+01:00");
    assert_eq!(both.phase_at(at("2024-12-25T20:00:00Z")), Phase::Awake);
    // A zero-length window is never awake; next to others it adds nothing.
    let zero = hours("Mon-Fri 07:00-07:00 UTC");
    assert_at(&zero, "2026-11-25T07:00:00Z", Phase::Asleep, None);
    let with_zero = hours("Mon-Fri 07:00-07:00 UTC, Sat-Sun 10:00-12:00 UTC");
    assert_eq!(
        with_zero.next_change(at("2026-11-25T00:00:00Z")),
        Some(at("2026-11-28T10:00:00Z"))
    );
    // always/true and never/false, also as list entries: awake wins.
    assert_eq!(hours("true"), Schedule::Always);
    assert_eq!(hours("FALSE"), Schedule::Never);
    assert_eq!(hours("never, always"), Schedule::Always);
    assert_eq!(hours("Mon-Fri 07:00-19:00 UTC, always"), Schedule::Always);
    assert_eq!(hours("never, false"), Schedule::Never);
    let never_and_hours = hours("never, Mon-Fri 07:00-19:00 UTC");
    assert_eq!(
        never_and_hours.phase_at(at("2026-11-25T12:00:00Z")),
        Phase::Awake
    );
}

#[test]
fn describe_prints_phase_and_next_change() {
    let out = hours("Mon-Fri 07:00-19:00 UTC").describe(at("2026-11-23T12:00:00Z"));
    assert_eq!(out, "awake\n2026-11-23T19:00:00Z\n");
    let out = hours("never").describe(at("2026-11-23T12:00:00Z"));
    assert_eq!(out, "asleep\nnever\n");
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
    (631_152_000i64..2_871_763_200).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default())
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
    (0usize..7, 0usize..7, clock(), clock(), zone())
        .prop_filter_map("empty window", |(a, b, s, e, z)| {
            (s != e).then(|| format!("{}-{} {s}-{e} {z}", WEEKDAYS[a], WEEKDAYS[b]))
        })
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
    (field(), field(), zone()).prop_filter_map("same pattern", |((sh, sd, sm), (wh, wd, wm), z)| {
        Schedule::cron(
            &format!("{sm} {sh} * * {sd}"),
            &format!("{wm} {wh} * * {wd}"),
            z,
        )
        .ok()
    })
}

fn any_schedule() -> impl Strategy<Value = Schedule> {
    prop_oneof![awake_hours(), cron_pair()]
}

fn before(t: DateTime<Utc>) -> DateTime<Utc> {
    t - TimeDelta::nanoseconds(1)
}

/// Any schedule with a few holidays within three weeks of `t`.
fn with_holidays_near(t: DateTime<Utc>) -> impl Strategy<Value = Schedule> {
    let base = prop_oneof![
        awake_hours(),
        cron_pair(),
        Just(Schedule::Always),
        Just(Schedule::Never)
    ];
    let span = (-21i64..21, 1u64..6);
    (
        base,
        zone(),
        any::<bool>(),
        proptest::collection::vec(span, 0..5),
    )
        .prop_map(move |(base, zone, awake, spans)| {
            let tz = parse_zone(zone).expect("test zone");
            let day = t.with_timezone(&tz).date_naive();
            let spans = spans.into_iter().filter_map(|(from, len)| {
                let first = day.checked_add_signed(TimeDelta::days(from))?;
                Some((first, first.checked_add_days(chrono::Days::new(len))?))
            });
            let mode = if awake {
                HolidayMode::Awake
            } else {
                HolidayMode::Asleep
            };
            Schedule::Holidays(Box::new(WithHolidays {
                base,
                holidays: Holidays::new(tz, mode, spans),
            }))
        })
}

fn last_change_agrees(s: &Schedule, t: DateTime<Utc>) -> Result<(), TestCaseError> {
    let now = s.phase_at(t);
    if let Some(c) = s.last_change(t) {
        prop_assert!(c <= t);
        prop_assert_eq!(s.phase_at(c), now, "phase just after the last change {}", c);
        prop_assert_ne!(
            s.phase_at(before(c)),
            now,
            "phase just before the last change {}",
            c
        );
    }
    Ok(())
}

fn next_change_changes(s: &Schedule, t: DateTime<Utc>) -> Result<(), TestCaseError> {
    let now = s.phase_at(t);
    if let Some(n) = s.next_change(t) {
        prop_assert!(n > t);
        prop_assert_ne!(s.phase_at(n), now, "phase at the next change {}", n);
        prop_assert_eq!(
            s.phase_at(before(n)),
            now,
            "phase just before the next change {}",
            n
        );
        // And nothing changed in between: the last change seen from just before it is not after t.
        prop_assert!(s.last_change(before(n)).is_none_or(|c| c <= t));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_phase_agrees_with_the_last_change(s in any_schedule(), t in instant()) {
        last_change_agrees(&s, t)?;
    }

    #[test]
    fn the_next_change_changes_the_phase(s in any_schedule(), t in instant()) {
        next_change_changes(&s, t)?;
    }

    #[test]
    fn holidays_hold_all_day_and_changes_stay_consistent(
        (s, t) in instant().prop_flat_map(|t| (with_holidays_near(t), Just(t)))
    ) {
        last_change_agrees(&s, t)?;
        next_change_changes(&s, t)?;
        let Schedule::Holidays(h) = &s else { unreachable!("generated with holidays") };
        let day = t.with_timezone(&h.holidays.tz).date_naive();
        let on_holiday = h.holidays.spans().iter().any(|(a, b)| *a <= day && day < *b);
        // Away from midnight, the local date says whether it is a holiday.
        let local = t.with_timezone(&h.holidays.tz).time();
        if local > chrono::NaiveTime::from_hms_opt(2, 0, 0).unwrap_or_default()
            && local < chrono::NaiveTime::from_hms_opt(22, 0, 0).unwrap_or_default()
        {
            prop_assert_eq!(h.holidays.span_at(t).is_some(), on_holiday);
        }
        if h.holidays.span_at(t).is_some() {
            prop_assert_eq!(s.phase_at(t), h.holidays.mode.phase());
        } else {
            prop_assert_eq!(s.phase_at(t), h.base.phase_at(t));
        }
    }

    #[test]
    fn weekly_schedules_change_every_week_unless_always_awake(s in awake_hours(), t in instant()) {
        let n = s.next_change(t);
        prop_assert!(n.is_some() || s.phase_at(t) == Phase::Awake);
    }

    #[test]
    fn a_schedule_prints_as_the_spec_that_parses_back_to_it(s in awake_hours()) {
        prop_assert_eq!(Schedule::parse_awake_hours(&s.to_string()), Ok(s));
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
