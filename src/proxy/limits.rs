//! Bounds on held requests: per namespace and in all, and for held requests
//! with a body, the bytes they may make the proxy and the kernel buffer in
//! all ([`HELD_BODY_RESERVE`] each). A slot is a guard that frees itself
//! (and the `siesta_proxy_held_requests` gauge) when dropped.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use crate::config::HELD_BODY_RESERVE;
use crate::metrics::Metrics;

#[derive(Debug)]
pub struct HoldLimits {
    max_per_namespace: usize,
    max_total: usize,
    max_body_bytes: usize,
    held: Mutex<Counts>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    body_bytes: usize,
    by_namespace: HashMap<Arc<str>, usize>,
}

/// One held request's place in the queue.
#[derive(Debug)]
pub struct HeldSlot {
    limits: Arc<HoldLimits>,
    namespace: Arc<str>,
    body_bytes: usize,
}

impl HoldLimits {
    pub fn new(
        max_per_namespace: usize,
        max_total: usize,
        max_body_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<HoldLimits> {
        Arc::new(HoldLimits {
            max_per_namespace,
            max_total,
            max_body_bytes,
            held: Mutex::default(),
            metrics,
        })
    }

    /// A slot, or `None` when a limit is reached (the caller answers 503).
    /// `body`: the request has a body, which reserves its share of the budget.
    pub fn try_hold(self: &Arc<Self>, namespace: &Arc<str>, body: bool) -> Option<HeldSlot> {
        let mut c = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.by_namespace.get(namespace).copied().unwrap_or(0);
        let body_bytes = if body { HELD_BODY_RESERVE } else { 0 };
        if c.total >= self.max_total
            || n >= self.max_per_namespace
            || c.body_bytes + body_bytes > self.max_body_bytes
        {
            return None;
        }
        c.total += 1;
        c.body_bytes += body_bytes;
        c.by_namespace.insert(namespace.clone(), n + 1);
        self.metrics
            .proxy_held
            .with_label_values(&[namespace])
            .set((n + 1) as i64);
        Some(HeldSlot {
            limits: self.clone(),
            namespace: namespace.clone(),
            body_bytes,
        })
    }

    pub fn held(&self, namespace: &str) -> usize {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_namespace
            .get(namespace)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for HeldSlot {
    fn drop(&mut self) {
        let mut c = self.limits.held.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        c.body_bytes = c.body_bytes.saturating_sub(self.body_bytes);
        let left = match c.by_namespace.get_mut(&self.namespace) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left == 0 {
            c.by_namespace.remove(&self.namespace);
        }
        self.limits
            .metrics
            .proxy_held
            .with_label_values(&[&self.namespace])
            .set(left as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_per_namespace_and_in_all() {
        let l = HoldLimits::new(2, 3, usize::MAX, Arc::default());
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("limits-a"), Arc::from("limits-b"));
        let a1 = l.try_hold(&a, false).unwrap();
        let _a2 = l.try_hold(&a, false).unwrap();
        assert!(l.try_hold(&a, false).is_none(), "per namespace");
        let _b1 = l.try_hold(&b, false).unwrap();
        assert!(l.try_hold(&b, false).is_none(), "in all");
        drop(a1);
        assert_eq!(l.held("limits-a"), 1);
        assert!(l.try_hold(&b, false).is_some());
    }

    #[test]
    fn held_bodies_share_one_byte_budget() {
        let l = HoldLimits::new(10, 10, 2 * HELD_BODY_RESERVE, Arc::default());
        let ns: Arc<str> = Arc::from("limits-body");
        let first = l.try_hold(&ns, true).unwrap();
        let _second = l.try_hold(&ns, true).unwrap();
        assert!(l.try_hold(&ns, true).is_none(), "the budget is spent");
        assert!(
            l.try_hold(&ns, false).is_some(),
            "a request without a body still waits"
        );
        drop(first);
        assert!(
            l.try_hold(&ns, true).is_some(),
            "a freed slot gives its bytes back"
        );
    }
}
