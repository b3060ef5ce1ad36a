//! Schedules: when a namespace should be awake. Two forms, both pure functions of
//! the instant asked about:
//!
//! - weekly awake hours in kube-downscaler's syntax (`Mon-Fri 07:30-20:30 Europe/Berlin`,
//!   comma-separated, absolute ranges, `always`, `never`);
//! - a cron pair (`sleep`, `wake`, `timezone`) read as Kubernetes CronJobs read cron.
//!
//! NOTE: this is the interface the rest of the crate uses; the full parser lands
//! with the schedules issue. Until then only `always` and `never` parse.
use std::fmt;

use chrono::{DateTime, Utc};

/// Whether a schedule wants the namespace awake or asleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Awake,
    Asleep,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Always,
    Never,
}

impl Schedule {
    /// Parse the `siesta.dev/awake-hours` syntax.
    pub fn parse_awake_hours(spec: &str) -> Result<Schedule, ScheduleError> {
        match spec.trim() {
            "always" => Ok(Schedule::Always),
            "never" => Ok(Schedule::Never),
            "" => Err(ScheduleError("empty awake-hours spec".into())),
            other => Err(ScheduleError(format!(
                "awake-hours {other:?}: not supported yet"
            ))),
        }
    }

    /// The phase at `now`.
    pub fn phase_at(&self, _now: DateTime<Utc>) -> Phase {
        match self {
            Schedule::Always => Phase::Awake,
            Schedule::Never => Phase::Asleep,
        }
    }

    /// The most recent instant at or before `now` at which the phase changed
    /// (looking back a bounded time); `None` if it has not changed in that time.
    pub fn last_change(&self, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }

    /// The first instant after `now` at which the phase changes, if any.
    pub fn next_change(&self, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }
}
