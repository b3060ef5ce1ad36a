//! `siesta schedule` and `siesta check-config` through the binary: no cluster.
use std::process::{Command, Output};

use siesta_test_kit::root;

fn siesta(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_siesta"))
        .args(args)
        .output()
        .expect("run siesta")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn schedule_prints_the_phase_then_the_next_change() {
    let o = siesta(&[
        "schedule",
        "Mon-Fri 07:30-20:30 Europe/Berlin",
        "--at",
        "2026-11-27T12:00:00+01:00",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "awake\n2026-11-27T19:30:00Z\n");
    let o = siesta(&[
        "schedule",
        "Mon-Fri 07:30-20:30 Europe/Berlin",
        "--at",
        "2026-11-27T21:00:00+01:00",
    ]);
    assert_eq!(stdout(&o), "asleep\n2026-11-30T06:30:00Z\n");
    let o = siesta(&["schedule", "always", "--at", "2026-11-27T21:00:00Z"]);
    assert_eq!(stdout(&o), "awake\nnever\n");
}

#[test]
fn schedule_reads_a_named_schedule_from_a_config() {
    let config = root().join("config/siesta.yaml");
    let config = config.to_str().expect("utf-8 path");
    // nightly: asleep from 19:00 to 07:00 Berlin time on weekdays
    let o = siesta(&[
        "schedule",
        "nightly",
        "--config",
        config,
        "--at",
        "2026-11-25T20:00:00+01:00",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "asleep\n2026-11-26T06:00:00Z\n");
    let o = siesta(&["schedule", "no-such-schedule", "--config", config]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no schedule named \"no-such-schedule\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn schedule_rejects_bad_specs_clearly() {
    for (spec, says) in [
        ("", "empty awake-hours spec"),
        ("Mon-Fri 07:00-25:00 UTC", "hour 25 is out of range"),
        (
            "Mon-Fri 07:00-19:00 Mars/Olympus",
            "unknown time zone \"Mars/Olympus\"",
        ),
    ] {
        let o = siesta(&["schedule", spec, "--at", "2026-11-27T12:00:00Z"]);
        assert_eq!(o.status.code(), Some(1), "{spec}");
        assert!(stdout(&o).is_empty());
        assert!(stderr(&o).contains(says), "{spec}: {}", stderr(&o));
    }
    let o = siesta(&["schedule", "always", "--at", "tomorrow"]);
    assert!(
        stderr(&o).contains("not an RFC 3339 instant"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_config_accepts_the_shipped_configs() {
    for file in [
        "config/siesta.yaml",
        "config/examples/minimal.yaml",
        "config/examples/office-hours.yaml",
        "config/examples/holidays.yaml",
    ] {
        let o = siesta(&[
            "check-config",
            root().join(file).to_str().expect("utf-8 path"),
        ]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        assert!(stdout(&o).contains(": ok"), "{}", stdout(&o));
    }
}

#[test]
fn check_config_lists_every_error_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "schedules:\n  nightly: {sleep: '0 19 * *', wake: '0 7 * * 1-5', timezone: Europe/Berln}\npolicies:\n  - name: dev\n    namespaceSelector: {}\n    schedule: office\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let o = siesta(&["check-config", path]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "{path}: schedules.nightly.sleep: cron \"0 19 * *\": expected 5 fields"
        )),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{path}: schedules.nightly.timezone: unknown time zone"
        )),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "{path}: policies[0].schedule: no schedule named \"office\""
        )),
        "{err}"
    );
    assert!(lines.iter().all(|l| l.contains("(line ")), "{err}");
}

#[test]
fn schedule_and_check_config_show_holidays() {
    let config = root().join("config/examples/holidays.yaml");
    let config = config.to_str().expect("utf-8 path");
    // Thursday 24 December is a holiday; Friday 25 and Saturday 26 come from
    // the calendar; Monday 28 to Thursday 31 from the config; Friday 1
    // January from the calendar again.
    let o = siesta(&[
        "schedule",
        "office-hours",
        "--config",
        config,
        "--at",
        "2026-12-24T10:00:00+01:00",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "asleep\n2027-01-04T06:00:00Z\nholiday: asleep all day (Europe/Berlin)\nnext holidays (asleep, Europe/Berlin): 2026-12-24..2026-12-26, 2026-12-28..2027-01-01, 2027-03-08, 2027-05-01, 2027-10-03\n"
    );
    let o = siesta(&["check-config", config]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("  holidays of office-hours: asleep on "),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("  holidays of on-call: awake on "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn check_config_locates_an_error_in_a_calendar_by_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.ics"),
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20261224\nRRULE:FREQ=YEARLY;BYSETPOS=1\nEND:VEVENT\nEND:VCALENDAR\n",
    )
    .expect("write");
    let file = dir.path().join("siesta.yaml");
    std::fs::write(
        &file,
        "schedules:\n  team:\n    awakeHours: always\n    holidays: {calendars: [bad.ics], timezone: UTC}\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf-8 path");
    let o = siesta(&["check-config", path]);
    assert_eq!(o.status.code(), Some(1));
    let calendar = dir.path().join("bad.ics");
    assert_eq!(
        stderr(&o),
        format!(
            "{path}: schedules.team.holidays.calendars[0]: {}:4: RRULE: BYSETPOS is not supported; Siesta reads FREQ=YEARLY, MONTHLY, WEEKLY or DAILY with INTERVAL, COUNT, UNTIL, BYDAY, BYMONTH, BYMONTHDAY and WKST (line 4, column 28)\n",
            calendar.display()
        )
    );
}
