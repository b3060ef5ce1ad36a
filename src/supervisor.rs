//! Components that run as long as the process does, under one supervisor.
//!
//! Each component is a named future. None of them is meant to end: the first
//! that does (an error, a panic, or a return) is reported with its name, and
//! the process stops the way it stops at SIGTERM, in the caller's fixed order
//! (for the controller: stop leading and release the Lease, flush activity,
//! then drop the rest). Dropping the supervisor aborts every component left.
use std::collections::HashMap;
use std::future::Future;

use tokio::sync::watch;
use tokio::task::{Id, JoinSet};

/// A component that ended, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Ended {
    pub component: &'static str,
    pub why: String,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} stopped: {}", self.component, self.why)
    }
}

#[derive(Default)]
pub struct Supervisor {
    tasks: JoinSet<crate::Result<()>>,
    names: HashMap<Id, &'static str>,
}

impl Supervisor {
    /// Run `component` until it ends or the supervisor is dropped.
    pub fn spawn<F>(&mut self, component: &'static str, future: F)
    where
        F: Future<Output = crate::Result<()>> + Send + 'static,
    {
        let handle = self.tasks.spawn(future);
        self.names.insert(handle.id(), component);
    }

    /// Like [`Supervisor::spawn`], for a component that has no error to return.
    pub fn spawn_forever<F>(&mut self, component: &'static str, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn(component, async move {
            future.await;
            Ok(())
        });
    }

    /// The first component to end. Pending forever while none does (and when
    /// there are none).
    pub async fn ended(&mut self) -> Ended {
        let Some(joined) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let (id, why) = match joined {
            Ok((id, Ok(()))) => (id, "ended unexpectedly".to_string()),
            Ok((id, Err(e))) => (id, e.to_string()),
            Err(e) if e.is_panic() => (e.id(), panic_message(e.into_panic())),
            Err(e) => (e.id(), e.to_string()),
        };
        Ended {
            component: self.names.remove(&id).unwrap_or("a component"),
            why,
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("panicked: {text}")
}

/// One stop signal for every component that must wind down in order.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

/// Sends the [`Stop`] signal.
pub struct StopTrigger(watch::Sender<bool>);

pub fn stop_signal() -> (StopTrigger, Stop) {
    let (tx, rx) = watch::channel(false);
    (StopTrigger(tx), Stop(rx))
}

impl StopTrigger {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Stop {
    /// Resolves once the stop is requested (or its trigger is gone).
    pub async fn requested(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Resolves when the process should stop: SIGTERM, Ctrl-C, or, when
/// `SIESTA_EXIT_WITH_STDIN=1` (tests), when standard input closes, so that a
/// child process never outlives the test that started it.
pub async fn shutdown_signal() {
    let stdin_closed = async {
        if std::env::var("SIESTA_EXIT_WITH_STDIN").as_deref() == Ok("1") {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            })
            .await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = stdin_closed => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_first_component_to_end_is_named_with_its_reason() {
        let mut s = Supervisor::default();
        s.spawn_forever("admin server", std::future::pending());
        s.spawn("audit ingest", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Err(crate::Error::Config("address in use".into()))
        });
        let ended = s.ended().await;
        assert_eq!(ended.component, "audit ingest");
        assert!(ended.why.contains("address in use"), "{ended}");
    }

    #[tokio::test]
    async fn a_panic_and_a_return_are_failures_too() {
        let mut s = Supervisor::default();
        s.spawn_forever("savings ticker", async { panic!("bad arithmetic") });
        let ended = s.ended().await;
        assert_eq!(ended.component, "savings ticker");
        assert_eq!(ended.why, "panicked: bad arithmetic");
        s.spawn_forever("namespace watch", async {});
        assert_eq!(
            s.ended().await,
            Ended {
                component: "namespace watch",
                why: "ended unexpectedly".into()
            }
        );
    }

    #[tokio::test]
    async fn dropping_the_supervisor_aborts_what_is_left() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut s = Supervisor::default();
        s.spawn_forever("holds a sender", async move {
            let _tx = tx;
            std::future::pending::<()>().await
        });
        drop(s);
        assert!(
            rx.await.is_err(),
            "the component was dropped with the supervisor"
        );
    }

    #[tokio::test]
    async fn stop_reaches_every_copy() {
        let (trigger, stop) = stop_signal();
        let waiters: Vec<_> = (0..3)
            .map(|_| tokio::spawn(stop.clone().requested()))
            .collect();
        trigger.stop();
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(1), w)
                .await
                .expect("stopped")
                .expect("joined");
        }
    }
}
