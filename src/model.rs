//! The vocabulary every layer shares: a namespace's state, why it changed,
//! what a user asked for, where activity came from, and how instants are
//! written. Plain data with no dependency on the rest of the crate, so the
//! annotation codec, the schedules, `decide`, the metrics and the shell all
//! speak it without depending on each other.
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

/// A namespace's sleep state as the controller records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Awake,
    Asleep,
    Waking,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Awake => "awake",
            State::Asleep => "asleep",
            State::Waking => "waking",
        }
    }
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "awake" => Some(State::Awake),
            "asleep" => Some(State::Asleep),
            "waking" => Some(State::Waking),
            _ => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a namespace sleeps or woke (`siesta.dev/reason`, metric labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    Idle,
    Schedule,
    Manual,
    Api,
    Http,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Idle,
        Reason::Schedule,
        Reason::Manual,
        Reason::Api,
        Reason::Http,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Idle => "idle",
            Reason::Schedule => "schedule",
            Reason::Manual => "manual",
            Reason::Api => "api",
            Reason::Http => "http",
        }
    }
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `siesta.dev/action`: a one-shot command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Sleep,
    Wake,
}

impl Action {
    pub fn parse(s: &str) -> Result<Action, String> {
        match s.trim() {
            "sleep" => Ok(Action::Sleep),
            "wake" => Ok(Action::Wake),
            other => Err(format!("{other:?} is not sleep or wake")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Sleep => "sleep",
            Action::Wake => "wake",
        }
    }
}

/// Where activity was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Api,
    Http,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Http => "http",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instant as RFC 3339, the way users write `keep-awake-until` and `--at`.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 instant such as 2026-12-01T18:00:00Z: {e}"))
}

pub fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// RFC 3339 to the microsecond: for instants compared with activity, which
/// is kept to the microsecond (a sleep and a request in the same second
/// must stay in their order).
pub fn format_precise(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}
