//! Savings: while a namespace sleeps, the CPU and memory its pods would request
//! (pod template requests times original replicas) accumulate as core-seconds
//! and byte-seconds, and money at the admin's prices.
//!
//! The totals are a function of what is written on the namespace
//! ([`Saved`], `siesta.dev/saved`: totals up to an instant and the rate since)
//! and of the clock, so every controller process, before and after a restart
//! or a change of leader, computes the same value at the same instant. The
//! counters are published as those totals: a restarted controller continues
//! them where its predecessor left off, and Prometheus sees no reset, so
//! `increase()` neither counts the current sleep twice nor loses it.
use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, SubsecRound as _, Utc};

use crate::annotations::Saved;
use crate::config::Prices;
use crate::metrics::Metrics;
use crate::metrics::namespaced::Account;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// One sleeping namespace: the totals it started from and when its sleep began.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    base: Saved,
    since: DateTime<Utc>,
}

/// The sleeping namespaces this process accounts for.
#[derive(Default)]
pub struct Savings {
    entries: Mutex<HashMap<String, Entry>>,
}

/// Money for core-seconds and byte-seconds at these prices.
pub fn cost(cpu_core_seconds: f64, memory_byte_seconds: f64, prices: &Prices) -> f64 {
    cpu_core_seconds / 3600.0 * prices.cpu_core_hour
        + memory_byte_seconds / 3600.0 / GIB * prices.memory_gib_hour
}

/// The totals at `now` of a sleep that began at `since`, from `base`.
pub fn value(base: &Saved, since: DateTime<Utc>, now: DateTime<Utc>, prices: &Prices) -> Saved {
    let from = base.at.max(since);
    let secs = ((now - from).num_milliseconds().max(0)) as f64 / 1000.0;
    let (cpu, memory) = (base.cpu_rate * secs, base.memory_rate * secs);
    Saved {
        cpu_core_seconds: base.cpu_core_seconds + cpu,
        memory_byte_seconds: base.memory_byte_seconds + memory,
        cost: base.cost + cost(cpu, memory, prices),
        at: now.max(base.at),
        ..*base
    }
}

impl Savings {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A namespace sleeps since `since`, and its last sleep pass found these
    /// requests (`rate`: cores, bytes). `recorded` is what the namespace
    /// carries. Returns the checkpoint to write on the namespace when the rate
    /// is not the recorded one (a new sleep, or workloads that changed while
    /// asleep), so that the totals stay the same function of the annotation.
    pub fn start(
        &self,
        namespace: &str,
        since: DateTime<Utc>,
        rate: (f64, f64),
        recorded: Option<Saved>,
        now: DateTime<Utc>,
        prices: &Prices,
    ) -> Option<Saved> {
        // Whole seconds, as `siesta.dev/saved` writes instants: what is kept
        // here is exactly what a successor reads back.
        let (since, now) = (whole_seconds(since), whole_seconds(now));
        let mut entries = self.lock();
        // This process's account, else the namespace's record, else nothing yet.
        let base = entries
            .get(namespace)
            .map(|e| e.base)
            .or(recorded)
            .unwrap_or_else(|| Saved::zero(since));
        // A new rate starts from the totals earned so far at the old one.
        let base = if (base.cpu_rate, base.memory_rate) == rate {
            base
        } else {
            Saved {
                cpu_rate: rate.0,
                memory_rate: rate.1,
                ..value(&base, since, now, prices)
            }
        };
        entries.insert(namespace.to_string(), Entry { base, since });
        // Compared with the namespace as read, so a checkpoint whose write
        // failed is written again at the next pass.
        (recorded != Some(base)).then_some(base)
    }

    /// The totals at `now`, from this process's account or else from what the
    /// namespace carries (a controller that restarted and wakes it at once).
    pub fn totals(
        &self,
        namespace: &str,
        since: Option<DateTime<Utc>>,
        recorded: Option<Saved>,
        now: DateTime<Utc>,
        prices: &Prices,
    ) -> Option<Saved> {
        let (base, since) = match self.lock().get(namespace) {
            Some(e) => (e.base, e.since),
            None => (recorded?, since?),
        };
        Some(value(&base, since, now, prices))
    }

    /// Stop accounting for a namespace (it woke, or is gone).
    pub fn stop(&self, namespace: &str) {
        self.lock().remove(namespace);
    }

    /// Every sleeping namespace's totals at `now`.
    pub fn tick(&self, now: DateTime<Utc>, prices: &Prices) -> Vec<(String, Saved)> {
        self.lock()
            .iter()
            .map(|(ns, e)| (ns.clone(), value(&e.base, e.since, now, prices)))
            .collect()
    }

    /// What a namespace's current sleep is worth per hour: (cores, bytes).
    pub fn rate(&self, namespace: &str) -> Option<(f64, f64)> {
        self.lock()
            .get(namespace)
            .map(|e| (e.base.cpu_rate, e.base.memory_rate))
    }
}

fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0)
}

/// Publish totals as the savings counters.
pub fn publish(
    metrics: &Metrics,
    account: Account,
    namespace: &str,
    totals: &Saved,
    prices: &Prices,
) {
    metrics.namespace.saved_total(
        account,
        namespace,
        totals.cpu_core_seconds,
        totals.memory_byte_seconds,
        totals.cost,
        &prices.currency,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(h)
    }

    #[test]
    fn savings_accumulate_from_the_sleep_start_at_the_admins_prices() {
        let s = Savings::default();
        let prices = Prices::default();
        let written = s.start("team-a", at(0), (2.0, GIB), None, at(0), &prices);
        assert!(written.is_some(), "a new sleep's rate is written");
        let (_, t) = &s.tick(at(1), &prices)[0];
        assert_eq!(t.cpu_core_seconds, 7200.0);
        assert_eq!(t.memory_byte_seconds, GIB * 3600.0);
        assert!(
            (t.cost - (2.0 * 0.031611 + 0.004237)).abs() < 1e-9,
            "{}",
            t.cost
        );
        // The same rate again (the next sleep pass) writes nothing.
        assert_eq!(
            s.start("team-a", at(0), (2.0, GIB), written, at(1), &prices),
            None
        );
        s.stop("team-a");
        assert!(s.tick(at(5), &prices).is_empty());
    }

    #[test]
    fn a_restarted_controller_computes_the_same_totals_from_the_annotation() {
        let prices = Prices::default();
        let before = Savings::default();
        let written = before
            .start("team-a", at(0), (1.0, 0.0), None, at(0), &prices)
            .expect("checkpoint");
        let old = before.tick(at(3), &prices)[0].1;
        // A new process reads the checkpoint from the namespace.
        let after = Savings::default();
        assert_eq!(
            after.start("team-a", at(0), (1.0, 0.0), Some(written), at(3), &prices),
            None,
            "nothing to write: the annotation already says it"
        );
        let new = after.tick(at(3), &prices)[0].1;
        assert_eq!(new.cpu_core_seconds, old.cpu_core_seconds);
        assert_eq!(new.cpu_core_seconds, 3.0 * 3600.0);
        // And at wake, before any pass, from the annotation alone.
        let fresh = Savings::default();
        let at_wake = fresh
            .totals("team-a", Some(at(0)), Some(written), at(4), &prices)
            .expect("totals");
        assert_eq!(at_wake.cpu_core_seconds, 4.0 * 3600.0);
    }

    #[test]
    fn a_new_rate_mid_sleep_keeps_what_the_old_one_earned() {
        let prices = Prices::default();
        let s = Savings::default();
        let first = s
            .start("team-a", at(0), (1.0, 0.0), None, at(0), &prices)
            .unwrap();
        // Two hours in, a second workload is put to sleep: rate 3.
        let second = s
            .start("team-a", at(0), (3.0, 0.0), Some(first), at(2), &prices)
            .expect("a new rate is written");
        assert_eq!(second.cpu_core_seconds, 2.0 * 3600.0);
        assert_eq!(second.at, at(2));
        let t = s.tick(at(3), &prices)[0].1;
        assert_eq!(t.cpu_core_seconds, (2.0 + 3.0) * 3600.0);
    }

    #[test]
    fn the_next_sleep_continues_from_the_totals_written_at_wake() {
        let prices = Prices::default();
        let s = Savings::default();
        s.start("team-a", at(0), (1.0, 0.0), None, at(0), &prices);
        let woke = s
            .totals("team-a", Some(at(0)), None, at(2), &prices)
            .map(|t| Saved {
                cpu_rate: 0.0,
                memory_rate: 0.0,
                ..t
            })
            .unwrap();
        s.stop("team-a");
        // Awake for 10 hours: nothing accrues. Then asleep again.
        s.start("team-a", at(12), (1.0, 0.0), Some(woke), at(12), &prices)
            .expect("the new sleep's rate is written");
        let t = s.tick(at(13), &prices)[0].1;
        assert_eq!(t.cpu_core_seconds, 3.0 * 3600.0);
    }
}
