//! What the audit webhook lets clients hold before their requests are done:
//! open connections per client address, and the bytes of every request body
//! in flight (being read, queued or being parsed). Each is taken by a guard and
//! given back when the guard drops, so a connection or body that ends in any
//! way (answered, refused, cut off, dropped) returns what it held.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Open connections by client address, at most `limit` each (0: no limit).
pub(crate) struct Peers {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of one address; dropping it closes the count.
pub(crate) struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    pub(crate) fn new(limit: usize) -> Arc<Peers> {
        Arc::new(Peers {
            limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` when that address
    /// has `limit` open already. Only addresses with open connections are kept.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if self.limit != 0 && *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The bytes of all request bodies held at once, across connections. Cheap
/// to clone; every clone is the same budget.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    inner: Arc<Budget>,
}

#[derive(Debug)]
struct Budget {
    limit: usize,
    held: AtomicUsize,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> BodyBudget {
        BodyBudget {
            inner: Arc::new(Budget {
                limit,
                held: AtomicUsize::new(0),
            }),
        }
    }

    /// The most bytes of bodies held at once.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// The bytes of bodies held now.
    pub fn held(&self) -> usize {
        self.inner.held.load(Ordering::Acquire)
    }

    /// What is left now (another body may take it a moment later).
    pub(crate) fn free(&self) -> usize {
        self.limit().saturating_sub(self.held())
    }

    /// An empty hold, to grow as one body is read.
    pub(crate) fn hold(&self) -> Held {
        Held {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

/// The bytes one body holds of the budget; given back when dropped.
pub(crate) struct Held {
    budget: BodyBudget,
    bytes: usize,
}

impl Held {
    /// Take `n` more bytes; `false`, and nothing taken, when the budget
    /// would go past its limit.
    pub(crate) fn grow(&mut self, n: usize) -> bool {
        let budget = &self.budget.inner;
        let taken = budget
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&total| total <= budget.limit)
            })
            .is_ok();
        if taken {
            self.bytes += n;
        }
        taken
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget
            .inner
            .held
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_limit_of_slots_and_each_one_back_when_dropped() {
        let peers = Peers::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = peers.admit(a).unwrap();
        let _second = peers.admit(a).unwrap();
        assert!(peers.admit(a).is_none(), "a third from one address");
        // The same address written as IPv4-mapped IPv6 is the same peer.
        assert!(peers.admit("::ffff:127.0.0.2".parse().unwrap()).is_none());
        assert!(peers.admit(b).is_some(), "another address has its own");
        drop(first);
        assert!(peers.admit(a).is_some());
    }

    #[test]
    fn no_limit_per_address_when_it_is_zero() {
        let peers = Peers::new(0);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let slots: Vec<_> = (0..1000).map(|_| peers.admit(a).unwrap()).collect();
        drop(slots);
        assert!(peers.open.lock().unwrap().is_empty());
    }

    #[test]
    fn bodies_never_hold_more_than_the_budget_together_and_give_it_back() {
        let budget = BodyBudget::new(100);
        let mut a = budget.hold();
        let mut b = budget.hold();
        assert!(a.grow(60));
        assert!(!b.grow(41), "past the limit");
        assert!(b.grow(40));
        assert_eq!((budget.held(), budget.free()), (100, 0));
        assert!(!a.grow(1));
        drop(a);
        assert_eq!(budget.held(), 40);
        assert!(!b.grow(usize::MAX), "no overflow");
        drop(b);
        assert_eq!(budget.held(), 0);
    }
}
