//! Holidays against the local cluster. The controller has no test clock, so
//! "today" becomes a holiday through the admin config: its calendar file
//! changes and the namespace sleeps; the holidays go from the config and it
//! wakes.
use std::time::Duration;

use chrono::{Days, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");
const GROUP: &str = "holidays";

fn calendar(first: chrono::NaiveDate, end: chrono::NaiveDate) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:test\r\nDTSTART;VALUE=DATE:{}\r\nDTEND;VALUE=DATE:{}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        first.format("%Y%m%d"),
        end.format("%Y%m%d")
    )
}

const WITH_HOLIDAYS: &str = "\
schedules:
  team:
    awakeHours: always
    holidays:
      calendars: [holidays.ics]
      timezone: UTC
";

#[tokio::test(flavor = "multi_thread")]
async fn a_holiday_made_today_sleeps_the_namespace_and_removing_it_wakes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("siesta.yaml");
    let ics = dir.path().join("holidays.ics");
    let far = chrono::NaiveDate::from_ymd_opt(2099, 1, 1).expect("date");
    std::fs::write(&ics, calendar(far, far + Days::new(1))).expect("write calendar");
    std::fs::write(&config, WITH_HOLIDAYS).expect("write config");
    let controller = Siesta::controller(
        SIESTA,
        GROUP,
        &["--config", config.to_str().expect("utf-8 path")],
    );
    wait_ready(controller.admin).await;
    let c = client().await;
    let ns = namespace(
        &c,
        "holiday",
        GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "off"),
            ("siesta.dev/schedule", "team"),
        ],
    )
    .await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    // Not a holiday yet: nothing happens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));
    assert_eq!(ns_annotation(&c, &ns, "siesta.dev/state").await, None);

    // The calendar now holds yesterday to tomorrow (in UTC, so a run at
    // midnight still is on a holiday): the reload picks the file up.
    let today = Utc::now().date_naive();
    std::fs::write(&ics, calendar(today - Days::new(1), today + Days::new(2)))
        .expect("write calendar");
    state_is(&c, &ns, "asleep", Duration::from_secs(30)).await;
    replicas_become::<Deployment>(&c, &ns, "web", 0).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/reason").await.as_deref(),
        Some("schedule")
    );

    // A malformed calendar is rejected: nothing changes.
    std::fs::write(&ics, "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n").expect("write calendar");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/state").await.as_deref(),
        Some("asleep")
    );
    let metrics = controller.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("siesta_config_reloads_total{result=\"rejected\"}")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );

    // The holidays go from the config: the schedule is awake, and the
    // namespace it put to sleep wakes.
    std::fs::write(&config, "schedules:\n  team: {awakeHours: always}\n").expect("write config");
    state_is(&c, &ns, "awake", Duration::from_secs(30)).await;
    replicas_become::<Deployment>(&c, &ns, "web", 2).await;
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/reason").await.as_deref(),
        Some("schedule")
    );
    remove_namespace(&c, &ns).await;
}
