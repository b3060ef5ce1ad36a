//! Graceful drain at shutdown: the accept loops stop, open connections are
//! asked to finish (an HTTP/1 connection closes after the answer in flight,
//! HTTP/2 gets GOAWAY), and [`Drainer::drain`] waits for them up to a deadline.
//!
//! Every accept loop and every open connection holds a [`Drain`]; the drain is
//! complete when the last one is dropped.
use std::time::Duration;

use tokio::sync::{mpsc, watch};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    Draining,
    /// Drained, or the deadline passed: the serving threads may stop.
    Done,
}

/// Held by each accept loop and each open connection.
#[derive(Clone)]
pub struct Drain {
    phase: watch::Receiver<Phase>,
    open: mpsc::Sender<()>,
}

/// Starts the drain and waits for it.
pub struct Drainer {
    phase: watch::Sender<Phase>,
    open: mpsc::Receiver<()>,
}

pub fn channel() -> (Drainer, Drain) {
    let (phase_tx, phase) = watch::channel(Phase::Serving);
    let (open_tx, open) = mpsc::channel(1);
    (
        Drainer {
            phase: phase_tx,
            open,
        },
        Drain {
            phase,
            open: open_tx,
        },
    )
}

impl Drain {
    /// Resolves once the drain has begun (or the proxy was dropped).
    pub async fn begun(&mut self) {
        let _ = self.phase.wait_for(|p| *p >= Phase::Draining).await;
    }

    /// Whether the drain has begun (or the proxy was dropped).
    pub fn draining(&self) -> bool {
        *self.phase.borrow() >= Phase::Draining || self.phase.has_changed().is_err()
    }

    /// Stop counting as open; resolves once the drain is over (or the proxy
    /// was dropped), when a serving thread may end its runtime.
    pub async fn close_and_wait(self) {
        let mut phase = self.phase;
        drop(self.open);
        let _ = phase.wait_for(|p| *p == Phase::Done).await;
    }
}

impl Drainer {
    /// Tell every [`Drain`] to finish; wait until all are dropped or
    /// `deadline` passes. True when everything finished in time.
    pub async fn drain(mut self, deadline: Duration) -> bool {
        self.phase.send_replace(Phase::Draining);
        let finished = tokio::time::timeout(deadline, self.open.recv())
            .await
            .is_ok();
        self.phase.send_replace(Phase::Done);
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_drain_waits_for_every_holder_up_to_the_deadline() {
        let (drainer, drain) = channel();
        let mut conn = drain.clone();
        let accept_loop = tokio::spawn(async move {
            let mut d = drain;
            d.begun().await;
            d.close_and_wait().await;
        });
        let connection = tokio::spawn(async move {
            conn.begun().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(conn);
        });
        assert!(drainer.drain(Duration::from_secs(5)).await);
        connection.await.unwrap();
        accept_loop.await.unwrap();

        let (drainer, stuck) = channel();
        assert!(!drainer.drain(Duration::from_millis(20)).await);
        // The deadline passed: a serving thread stops waiting.
        tokio::time::timeout(Duration::from_secs(1), stuck.close_and_wait())
            .await
            .unwrap();
    }
}
