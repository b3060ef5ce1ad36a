//! Connection slots that a slowloris client cannot keep: a bounded table of
//! open connections in which a connection that has not yet shown it is worth
//! keeping (no credentials yet, or still reading a request head) is
//! *evictable*. At the limit, a new connection evicts the evictable one that
//! has been so the longest instead of being refused, so a client that sends a
//! head promptly (and, for the audit webhook, its credentials) always gets
//! in, however many slow ones crowd it; only when every slot is held by a
//! connection doing real work is a new one refused.
//!
//! Used by the audit webhook (evictable until authenticated, for good) and the
//! proxy (evictable while reading a request head, again between requests).
//!
//! The audit webhook admits each connection with its peer's address
//! ([`Slots::admit_fairly_from`]): then the connection evicted is the oldest
//! of the peer holding the most evictable ones, so a crowd of reconnect loops
//! from a few addresses evicts its own connections, never the one new
//! connection of the API server before it has read its head. The proxy's
//! peers are a few load balancers, and it admits without addresses (oldest
//! first, no per-peer table).
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::task::AbortHandle;

/// The table: at most `limit` connections, of which at most `max_evictable`
/// evictable ones.
#[derive(Debug)]
pub struct Slots {
    limit: usize,
    max_evictable: usize,
    inner: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Connections counted against `limit` (an evicted one no longer is).
    open: usize,
    /// Evictable connections by the order they became so: oldest first.
    evictable: BTreeMap<u64, Arc<Signal>>,
    /// How many of them each peer holds (connections admitted with one).
    by_peer: HashMap<IpAddr, usize>,
    next: u64,
}

/// How a slot's connection is ended when it is evicted: its task is
/// aborted (no waiter in the task, so an open connection costs only this).
#[derive(Debug, Default)]
struct Signal {
    evicted: AtomicBool,
    task: OnceLock<AbortHandle>,
    /// Its key in `Table::evictable` while it is there, else 0 (keys start at 1).
    key: AtomicU64,
    peer: Option<IpAddr>,
}

/// What [`Slots::admit`] did.
#[derive(Debug)]
pub enum Admit {
    /// A free slot.
    Free(Slot),
    /// A slot freed by evicting the oldest evictable connection.
    Evicted(Slot),
    /// Every slot is held by a connection that is not evictable.
    Full,
}

impl Slots {
    /// `max_evictable` above `limit` reads as `limit`; 0 reads as 1.
    pub fn new(limit: usize, max_evictable: usize) -> Arc<Slots> {
        Arc::new(Slots {
            limit,
            max_evictable: max_evictable.clamp(1, limit.max(1)),
            inner: Mutex::default(),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection, evictable from the start.
    pub fn admit(self: &Arc<Self>) -> Admit {
        self.admit_as(None)
    }

    fn admit_as(self: &Arc<Self>, peer: Option<IpAddr>) -> Admit {
        let mut t = self.table();
        let evicted = if t.open < self.limit && t.evictable.len() < self.max_evictable {
            false
        } else if let Some(victim) = t.victim() {
            t.keep(&victim);
            victim.evicted.store(true, Ordering::Release);
            if let Some(task) = victim.task.get() {
                task.abort();
            }
            t.open -= 1;
            true
        } else {
            return Admit::Full;
        };
        t.open += 1;
        let signal = Arc::new(Signal {
            peer,
            ..Signal::default()
        });
        t.make_evictable(&signal);
        let slot = Slot(SlotRef {
            slots: self.clone(),
            signal,
        });
        if evicted {
            Admit::Evicted(slot)
        } else {
            Admit::Free(slot)
        }
    }

    /// [`Slots::admit`], but when that would evict, first let every task of
    /// this runtime that is ready run, and the I/O driver be polled: a
    /// connection accepted a moment ago whose head has come then keeps its
    /// slot before the choice is made, so an accept loop that takes many
    /// connections in one go does not evict connections it has not let read.
    pub async fn admit_fairly(self: &Arc<Self>) -> Admit {
        self.yield_if_full().await;
        self.admit()
    }

    /// [`Slots::admit_fairly`] for a connection from `peer`, which evicts
    /// the oldest connection of the peer holding the most evictable ones.
    pub async fn admit_fairly_from(self: &Arc<Self>, peer: IpAddr) -> Admit {
        self.yield_if_full().await;
        self.admit_as(Some(peer.to_canonical()))
    }

    async fn yield_if_full(&self) {
        let full = {
            let t = self.table();
            t.open >= self.limit || t.evictable.len() >= self.max_evictable
        };
        if full {
            tokio::task::yield_now().await;
        }
    }

    /// Connections counted now, and how many of them are evictable.
    pub fn counts(&self) -> (usize, usize) {
        let t = self.table();
        (t.open, t.evictable.len())
    }
}

impl Table {
    fn make_evictable(&mut self, signal: &Arc<Signal>) {
        self.next += 1;
        signal.key.store(self.next, Ordering::Relaxed);
        self.evictable.insert(self.next, signal.clone());
        if let Some(peer) = signal.peer {
            *self.by_peer.entry(peer).or_default() += 1;
        }
    }

    fn keep(&mut self, signal: &Signal) {
        let key = signal.key.swap(0, Ordering::Relaxed);
        if key != 0 {
            self.evictable.remove(&key);
            if let Some(peer) = signal.peer
                && let Some(n) = self.by_peer.get_mut(&peer)
            {
                *n -= 1;
                if *n == 0 {
                    self.by_peer.remove(&peer);
                }
            }
        }
    }

    /// The evictable connection to evict: the oldest, or with peers, the
    /// oldest of the peer holding the most (the audit webhook's at most 192:
    /// one pass over them).
    fn victim(&self) -> Option<Arc<Signal>> {
        let most = self.by_peer.values().copied().max();
        self.evictable
            .values()
            .find(|s| match (most, s.peer) {
                (Some(most), Some(peer)) => self.by_peer.get(&peer) == Some(&most),
                _ => true,
            })
            .cloned()
    }
}

/// One connection's place; dropping it gives the place back.
#[derive(Debug)]
pub struct Slot(SlotRef);

impl Slot {
    /// The connection is doing real work (authenticated, or serving a
    /// request): it cannot be evicted until [`Slot::evictable`].
    pub fn keep(&self) {
        self.0.keep();
    }

    /// The connection waits for a client that may never come (a keep-alive
    /// connection between requests): it is the newest evictable one.
    pub fn evictable(&self) {
        self.0.evictable();
    }

    /// Another handle on this place, for what outlives a borrow of the slot
    /// (the task serving the connection, once spawned; the requests of a
    /// connection): it can keep the place or make it evictable, and abort
    /// the task at eviction, but only the [`Slot`] gives the place back.
    pub fn on_evict(&self) -> SlotRef {
        self.0.clone()
    }
}

/// See [`Slot::on_evict`].
#[derive(Clone, Debug)]
pub struct SlotRef {
    slots: Arc<Slots>,
    signal: Arc<Signal>,
}

impl SlotRef {
    /// See [`Slot::keep`].
    pub fn keep(&self) {
        if self.signal.key.load(Ordering::Relaxed) != 0 {
            self.slots.table().keep(&self.signal);
        }
    }

    /// See [`Slot::evictable`].
    pub fn evictable(&self) {
        let mut t = self.slots.table();
        if !self.signal.evicted.load(Ordering::Acquire) {
            t.keep(&self.signal);
            t.make_evictable(&self.signal);
        }
    }

    /// Abort `task` if the slot is evicted (at once, if it already was).
    pub fn abort(self, task: AbortHandle) {
        let _t = self.slots.table();
        let task = self.signal.task.get_or_init(|| task);
        if self.signal.evicted.load(Ordering::Acquire) {
            task.abort();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.0.slots.table();
        if !self.0.signal.evicted.load(Ordering::Acquire) {
            t.keep(&self.0.signal);
            t.open -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(a: Admit) -> Slot {
        match a {
            Admit::Free(s) | Admit::Evicted(s) => s,
            Admit::Full => panic!("full"),
        }
    }

    fn is_evicted(s: &Slot) -> bool {
        s.0.signal.evicted.load(Ordering::Acquire)
    }

    #[test]
    fn at_the_limit_a_new_connection_evicts_the_oldest_evictable_one() {
        let slots = Slots::new(3, 3);
        let a = slot(slots.admit());
        let b = slot(slots.admit());
        let c = slot(slots.admit());
        a.keep();
        let d = slots.admit();
        assert!(matches!(d, Admit::Evicted(_)), "{d:?}");
        assert!(!is_evicted(&a), "a kept connection stays");
        assert!(
            is_evicted(&b) && !is_evicted(&c),
            "the oldest evictable goes"
        );
        assert_eq!(slots.counts(), (3, 2));
        drop(b);
        assert_eq!(
            slots.counts(),
            (3, 2),
            "an evicted slot is not counted twice"
        );
    }

    #[test]
    fn with_peers_the_oldest_of_the_peer_holding_most_is_evicted() {
        let slots = Slots::new(5, 5);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let from = |ip: &str| slot(rt.block_on(slots.admit_fairly_from(ip.parse().unwrap())));
        let legit = from("127.0.0.1");
        let crowd: Vec<_> = (0..4).map(|_| from("127.0.0.2")).collect();
        // The crowd reconnects: each new connection evicts one of its own,
        // oldest first, never the lone connection of another address.
        let mut again = Vec::new();
        for (i, old) in crowd.iter().enumerate() {
            again.push(from("127.0.0.2"));
            assert!(is_evicted(old), "{i}");
            assert!(!is_evicted(&legit), "{i}");
        }
        // A second address: each new one evicts from whichever holds more,
        // the older connection on a tie (2 and 2: the first address's).
        let other: Vec<_> = (0..4).map(|_| from("127.0.0.3")).collect();
        let gone = |v: &[Slot]| v.iter().map(is_evicted).collect::<Vec<_>>();
        assert_eq!(gone(&again), [true, true, true, false]);
        assert_eq!(gone(&other), [true, false, false, false]);
        assert!(!is_evicted(&legit));
        // Alone among peers holding one each, the oldest goes.
        let slots = Slots::new(2, 2);
        let from = |ip: &str| slot(rt.block_on(slots.admit_fairly_from(ip.parse().unwrap())));
        let (a, b) = (from("127.0.0.1"), from("127.0.0.2"));
        let _c = from("127.0.0.3");
        assert!(is_evicted(&a) && !is_evicted(&b));
        assert_eq!(slots.counts(), (2, 2));
        b.keep();
        assert_eq!(
            slots.table().by_peer.len(),
            1,
            "a kept connection leaves the count"
        );
    }

    #[test]
    fn becoming_evictable_again_makes_a_connection_the_newest() {
        let slots = Slots::new(2, 2);
        let a = slot(slots.admit());
        let b = slot(slots.admit());
        a.keep();
        a.evictable();
        let _c = slot(slots.admit());
        assert!(is_evicted(&b) && !is_evicted(&a));
    }

    #[test]
    fn evictable_connections_have_only_their_share_and_kept_ones_fill_the_rest() {
        let slots = Slots::new(4, 2);
        let a = slot(slots.admit());
        let b = slot(slots.admit());
        // The share is full: the next one evicts although slots are free.
        let c = slot(slots.admit());
        assert!(is_evicted(&a));
        assert_eq!(slots.counts(), (2, 2));
        b.keep();
        c.keep();
        let kept: Vec<_> = (0..2).map(|_| slot(slots.admit())).collect();
        for k in &kept {
            k.keep();
        }
        assert!(matches!(slots.admit(), Admit::Full), "every slot kept");
        drop(kept);
        assert!(matches!(slots.admit(), Admit::Free(_)));
        assert_eq!(slots.counts(), (2, 0), "every slot given back");
    }

    #[tokio::test]
    async fn an_evicted_connections_task_is_aborted_whenever_it_was_named() {
        let slots = Slots::new(1, 1);
        let a = Arc::new(slot(slots.admit()));
        let task = tokio::spawn({
            let a = a.clone();
            async move {
                let _a = a;
                std::future::pending::<()>().await
            }
        });
        a.on_evict().abort(task.abort_handle());
        drop(a);
        let b = slot(slots.admit());
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(
            slots.counts(),
            (1, 1),
            "the aborted task's slot is not counted"
        );
        // Evicted before its task is named: aborted as soon as it is.
        let _c = slot(slots.admit());
        let late = tokio::spawn(std::future::pending::<()>());
        b.on_evict().abort(late.abort_handle());
        assert!(late.await.unwrap_err().is_cancelled());
    }
}
