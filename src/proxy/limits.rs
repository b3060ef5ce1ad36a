//! Bounds on held requests: per namespace and in all. A slot is a guard that
//! frees itself (and the `siesta_proxy_held_requests` gauge) when dropped.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct HoldLimits {
    max_per_namespace: usize,
    max_total: usize,
    held: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_namespace: HashMap<Arc<str>, usize>,
}

/// One held request's place in the queue.
#[derive(Debug)]
pub struct HeldSlot {
    limits: Arc<HoldLimits>,
    namespace: Arc<str>,
}

impl HoldLimits {
    pub fn new(max_per_namespace: usize, max_total: usize) -> Arc<HoldLimits> {
        Arc::new(HoldLimits {
            max_per_namespace,
            max_total,
            held: Mutex::default(),
        })
    }

    /// A slot, or `None` when a limit is reached (the caller answers 503).
    pub fn try_hold(self: &Arc<Self>, namespace: &Arc<str>) -> Option<HeldSlot> {
        let mut c = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.by_namespace.get(namespace).copied().unwrap_or(0);
        if c.total >= self.max_total || n >= self.max_per_namespace {
            return None;
        }
        c.total += 1;
        c.by_namespace.insert(namespace.clone(), n + 1);
        crate::metrics::get()
            .proxy_held
            .with_label_values(&[namespace])
            .set((n + 1) as i64);
        Some(HeldSlot {
            limits: self.clone(),
            namespace: namespace.clone(),
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
        crate::metrics::get()
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
        let l = HoldLimits::new(2, 3);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("limits-a"), Arc::from("limits-b"));
        let a1 = l.try_hold(&a).unwrap();
        let _a2 = l.try_hold(&a).unwrap();
        assert!(l.try_hold(&a).is_none(), "per namespace");
        let _b1 = l.try_hold(&b).unwrap();
        assert!(l.try_hold(&b).is_none(), "in all");
        drop(a1);
        assert_eq!(l.held("limits-a"), 1);
        assert!(l.try_hold(&b).is_some());
    }
}
