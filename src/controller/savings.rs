//! Savings: while a namespace sleeps, the CPU and memory its pods would request
//! (pod template requests times original replicas) accumulate as core-seconds and
//! byte-seconds, and money at the admin's prices. Accounting starts at the
//! recorded sleep start (`siesta.dev/state-since`), so a restarted controller
//! counts the whole current sleep rather than starting from zero.
use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::config::Prices;
use crate::scaler::Report;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    cpu_cores: f64,
    memory_bytes: f64,
    accounted_to: DateTime<Utc>,
}

#[derive(Default)]
pub struct Savings {
    entries: Mutex<HashMap<String, Entry>>,
}

/// One namespace's increments since the last accounting.
#[derive(Clone, Debug, PartialEq)]
pub struct Increment {
    pub namespace: String,
    pub cpu_core_seconds: f64,
    pub memory_byte_seconds: f64,
}

impl Savings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A namespace sleeps since `since` with these requests (re-reported after
    /// every sleep pass; the accounting start is kept).
    pub fn start(&self, namespace: &str, since: DateTime<Utc>, report: &Report) {
        let mut entries = self.lock();
        let e = entries.entry(namespace.to_string()).or_insert(Entry {
            cpu_cores: 0.0,
            memory_bytes: 0.0,
            accounted_to: since,
        });
        e.cpu_cores = report.cpu_cores;
        e.memory_bytes = report.memory_bytes;
    }

    /// Account up to `now` and stop counting this namespace.
    pub fn stop(&self, namespace: &str, now: DateTime<Utc>) -> Option<Increment> {
        let e = self.lock().remove(namespace)?;
        Some(increment(namespace, e, now))
    }

    /// Account every sleeping namespace up to `now`.
    pub fn tick(&self, now: DateTime<Utc>) -> Vec<Increment> {
        let mut entries = self.lock();
        entries
            .iter_mut()
            .map(|(ns, e)| {
                let inc = increment(ns, *e, now);
                e.accounted_to = e.accounted_to.max(now);
                inc
            })
            .collect()
    }

    /// What a namespace's current sleep is worth per hour: (cores, bytes).
    pub fn rate(&self, namespace: &str) -> Option<(f64, f64)> {
        self.lock()
            .get(namespace)
            .map(|e| (e.cpu_cores, e.memory_bytes))
    }
}

fn increment(namespace: &str, e: Entry, now: DateTime<Utc>) -> Increment {
    let secs = ((now - e.accounted_to).num_milliseconds().max(0)) as f64 / 1000.0;
    Increment {
        namespace: namespace.to_string(),
        cpu_core_seconds: e.cpu_cores * secs,
        memory_byte_seconds: e.memory_bytes * secs,
    }
}

/// Money for an increment at these prices.
pub fn cost(inc: &Increment, prices: &Prices) -> f64 {
    inc.cpu_core_seconds / 3600.0 * prices.cpu_core_hour
        + inc.memory_byte_seconds / 3600.0 / GIB * prices.memory_gib_hour
}

/// Add increments to the counters.
pub fn publish(incs: &[Increment], prices: &Prices) {
    let m = crate::metrics::get();
    for inc in incs {
        m.namespace.saved(
            &inc.namespace,
            inc.cpu_core_seconds,
            inc.memory_byte_seconds,
            cost(inc, prices),
            &prices.currency,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn savings_accumulate_from_the_recorded_sleep_start() {
        let s = Savings::default();
        let since = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let report = Report {
            cpu_cores: 2.0,
            memory_bytes: GIB,
            ..Default::default()
        };
        s.start("team-a", since, &report);
        let incs = s.tick(since + chrono::Duration::hours(1));
        assert_eq!(incs[0].cpu_core_seconds, 7200.0);
        assert_eq!(incs[0].memory_byte_seconds, GIB * 3600.0);
        let money = cost(&incs[0], &Prices::default());
        assert!(
            (money - (2.0 * 0.031611 + 0.004237)).abs() < 1e-9,
            "{money}"
        );
        // a later tick only adds the new time; stop accounts the rest
        let incs = s.tick(since + chrono::Duration::hours(2));
        assert_eq!(incs[0].cpu_core_seconds, 7200.0);
        let last = s
            .stop("team-a", since + chrono::Duration::minutes(150))
            .unwrap();
        assert_eq!(last.cpu_core_seconds, 3600.0);
        assert!(s.tick(since + chrono::Duration::hours(5)).is_empty());
    }
}
