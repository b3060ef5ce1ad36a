//! Activity: the newest counted request per namespace, from the audit ingest and
//! from the proxy, kept in memory and persisted to the namespace's Activity Lease.
//!
//! The [`Reporter`] coalesces: an awake namespace's Lease is written at most once
//! per flush interval; a sleeping (or waking) namespace's Lease is written at
//! once, exactly once per sleep however many reports arrive together, because
//! that write is the wake request.
pub mod lease;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::annotations::{MAX_DESCRIPTION, truncate};
use crate::metrics::{ErrorKind, Metrics};
use crate::model::{Source, State};
pub use lease::Seen;

/// One counted request.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    pub namespace: String,
    pub at: DateTime<Utc>,
    pub source: Source,
    /// Short and bounded: user and verb, or host. Never a metric label.
    pub detail: String,
}

/// An RFC 1123 label, as Kubernetes namespace names are: activity is only
/// ever counted for a name that can be a namespace.
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-')
}

/// Where a reporter learns whether a namespace sleeps: its recorded state and
/// when that began. The controller and the proxy back it with a Namespace watch.
pub trait NamespaceStates: Send + Sync + 'static {
    fn state(&self, namespace: &str) -> Option<(State, Option<DateTime<Utc>>)>;
}

/// Nobody sleeps: for replay and tests without a cluster.
pub struct AllAwake;

impl NamespaceStates for AllAwake {
    fn state(&self, _namespace: &str) -> Option<(State, Option<DateTime<Utc>>)> {
        None
    }
}

/// A Namespace watch (reflector store) answers from the controller-written
/// `siesta.dev/state` and `siesta.dev/state-since` annotations.
impl NamespaceStates for kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Namespace> {
    fn state(&self, namespace: &str) -> Option<(State, Option<DateTime<Utc>>)> {
        let ns = self.get(&kube::runtime::reflector::ObjectRef::new(namespace))?;
        let recorded = crate::annotations::Recorded::parse(ns.metadata.annotations.as_ref()?);
        Some((recorded.state, recorded.since))
    }
}

#[derive(Default)]
struct Entry {
    seen: Seen,
    /// Newer than what the Lease holds.
    dirty: bool,
    /// The sleep (by its start) for which a wake write has been made or is under way.
    wake_requested_for: Option<Option<DateTime<Utc>>>,
}

/// Why a [`Sink`] write did not land.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The namespace does not exist: the activity is dropped, not retried.
    #[error("the namespace does not exist")]
    NoNamespace,
    /// Anything else; retried at the next flush.
    #[error("{0}")]
    Failed(String),
}

/// Writes activity somewhere durable; the Lease in a cluster.
pub trait Sink: Send + Sync + 'static {
    fn write(
        &self,
        namespace: String,
        seen: Seen,
    ) -> futures::future::BoxFuture<'static, Result<(), WriteError>>;
}

/// The Activity Lease sink.
pub struct LeaseSink(pub kube::Client);

impl Sink for LeaseSink {
    fn write(
        &self,
        namespace: String,
        seen: Seen,
    ) -> futures::future::BoxFuture<'static, Result<(), WriteError>> {
        let client = self.0.clone();
        Box::pin(async move {
            lease::record(&client, &namespace, &seen)
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    // Only the create leaves a 404: the namespace is not there.
                    kube::Error::Api(ae) if ae.code == 404 => WriteError::NoNamespace,
                    e => WriteError::Failed(e.to_string()),
                })
        })
    }
}

/// The shared, cloneable activity book of one process.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Mutex<HashMap<String, Entry>>,
    states: Arc<dyn NamespaceStates>,
    sink: Option<Arc<dyn Sink>>,
    /// Namespaces whose sleep may end now: the in-process controller listens.
    wake_tx: Option<mpsc::UnboundedSender<String>>,
    metrics: Arc<Metrics>,
}

impl Reporter {
    pub fn new(
        states: Arc<dyn NamespaceStates>,
        sink: Option<Arc<dyn Sink>>,
        wake_tx: Option<mpsc::UnboundedSender<String>>,
        metrics: Arc<Metrics>,
    ) -> Reporter {
        Reporter {
            inner: Arc::new(Inner {
                entries: Mutex::default(),
                states,
                sink,
                wake_tx,
                metrics,
            }),
        }
    }

    /// Count one request. Cheap: a map update under a short lock, and a spawned
    /// write only when it is a wake request.
    pub fn report(&self, activity: Activity) {
        let Activity {
            namespace,
            at,
            source,
            detail,
        } = activity;
        let at = at.min(Utc::now());
        let mut update = Seen {
            api: None,
            http: None,
            detail: None,
        };
        match source {
            Source::Api => update.api = Some(at),
            Source::Http => update.http = Some(at),
        }
        let state = self.inner.states.state(&namespace);
        let wake_write = {
            let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
            let entry = entries.entry(namespace.clone()).or_default();
            if !entry.seen.merge(&update) {
                return;
            }
            entry.seen.detail = Some(truncate(&format!("{source} {detail}"), MAX_DESCRIPTION));
            entry.dirty = true;
            // Only `asleep` asks for a wake: once the controller marks the namespace
            // `waking` (a transition with a new `state-since`), the wake is under
            // way, and keying on that new instant would make a second wake write
            // for the same sleep. Activity while waking is flushed as usual.
            match state {
                Some((State::Asleep, since))
                    if since.is_none_or(|s| at > s) && entry.wake_requested_for != Some(since) =>
                {
                    entry.wake_requested_for = Some(since);
                    entry.dirty = false;
                    Some(entry.seen.clone())
                }
                _ => None,
            }
        };
        if let Some(seen) = wake_write {
            if let Some(tx) = &self.inner.wake_tx {
                let _ = tx.send(namespace.clone());
            }
            if let Some(sink) = self.inner.sink.clone() {
                let me = self.clone();
                tokio::spawn(async move {
                    match sink.write(namespace.clone(), seen).await {
                        Ok(()) => {}
                        Err(WriteError::NoNamespace) => me.forget(&namespace),
                        Err(e) => {
                            tracing::warn!(%namespace, error = %e, "wake request: activity lease write failed");
                            me.inner.metrics.error(ErrorKind::LeaseWrite);
                            me.forget_wake_request(&namespace);
                        }
                    }
                });
            }
        }
    }

    /// Drop what this process holds for a namespace that does not exist
    /// (activity for any name an API request used, a 404 included): the book
    /// keeps only namespaces that are there.
    fn forget(&self, namespace: &str) {
        tracing::debug!(%namespace, "activity for a namespace that does not exist dropped");
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(namespace);
    }

    fn forget_wake_request(&self, namespace: &str) {
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get_mut(namespace) {
            e.wake_requested_for = None;
            e.dirty = true;
        }
    }

    /// The metrics this reporter (and what is built on it) counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The newest activity this process saw for a namespace.
    pub fn seen(&self, namespace: &str) -> Option<Seen> {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace)
            .map(|e| e.seen.clone())
    }

    /// Fold in what a Lease says (from a watch), so this process knows what
    /// other reporters saw.
    pub fn observe_lease(&self, namespace: &str, seen: &Seen) {
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(namespace.to_string()).or_default();
        entry.seen.merge(seen);
    }

    /// Write every namespace whose activity is newer than its Lease. Returns
    /// how many writes failed (they are retried at the next flush).
    pub async fn flush(&self) -> usize {
        let Some(sink) = self.inner.sink.clone() else {
            return 0;
        };
        let dirty: Vec<(String, Seen)> = {
            let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries
                .iter_mut()
                .filter(|(_, e)| e.dirty)
                .map(|(ns, e)| {
                    e.dirty = false;
                    (ns.clone(), e.seen.clone())
                })
                .collect()
        };
        let mut failed = 0;
        for (namespace, seen) in dirty {
            let e = match sink.write(namespace.clone(), seen).await {
                Ok(()) => continue,
                Err(WriteError::NoNamespace) => {
                    self.forget(&namespace);
                    continue;
                }
                Err(e) => e,
            };
            tracing::warn!(%namespace, error = %e, "activity lease write failed");
            self.inner.metrics.error(ErrorKind::LeaseWrite);
            failed += 1;
            if let Some(entry) = self
                .inner
                .entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&namespace)
            {
                entry.dirty = true;
            }
        }
        failed
    }

    /// Flush every `interval` until the process ends.
    pub async fn run_flusher(self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.flush().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Sleeping(DateTime<Utc>);
    impl NamespaceStates for Sleeping {
        fn state(&self, _ns: &str) -> Option<(State, Option<DateTime<Utc>>)> {
            Some((State::Asleep, Some(self.0)))
        }
    }

    #[derive(Default)]
    struct CountingSink(AtomicUsize, Mutex<Vec<(String, Seen)>>);
    impl Sink for Arc<CountingSink> {
        fn write(
            &self,
            ns: String,
            seen: Seen,
        ) -> futures::future::BoxFuture<'static, Result<(), WriteError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.lock().unwrap().push((ns, seen));
            Box::pin(async { Ok(()) })
        }
    }

    fn http(ns: &str, at: DateTime<Utc>) -> Activity {
        Activity {
            namespace: ns.into(),
            at,
            source: Source::Http,
            detail: "app.example.test".into(),
        }
    }

    /// A reporter where nobody sleeps, writing into `sink`.
    fn awake_into(sink: impl Sink) -> Reporter {
        Reporter::new(
            Arc::new(AllAwake),
            Some(Arc::new(sink)),
            None,
            Arc::default(),
        )
    }

    #[tokio::test]
    async fn awake_activity_is_coalesced_until_flush() {
        let sink = Arc::new(CountingSink::default());
        let r = awake_into(sink.clone());
        let t0 = Utc::now() - chrono::Duration::seconds(10);
        for i in 0..100 {
            r.report(http("team-a", t0 + chrono::Duration::milliseconds(i)));
        }
        assert_eq!(sink.0.load(Ordering::SeqCst), 0);
        assert_eq!(r.flush().await, 0);
        assert_eq!(sink.0.load(Ordering::SeqCst), 1);
        let written = sink.1.lock().unwrap()[0].1.http;
        assert_eq!(written, Some(t0 + chrono::Duration::milliseconds(99)));
        r.flush().await;
        assert_eq!(
            sink.0.load(Ordering::SeqCst),
            1,
            "nothing new, nothing written"
        );
    }

    /// A sink for a cluster where only `team-a` exists.
    struct OnlyTeamA(AtomicUsize);
    impl Sink for Arc<OnlyTeamA> {
        fn write(
            &self,
            ns: String,
            _seen: Seen,
        ) -> futures::future::BoxFuture<'static, Result<(), WriteError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match ns.as_str() {
                    "team-a" => Ok(()),
                    "flaky" => Err(WriteError::Failed("timeout".into())),
                    _ => Err(WriteError::NoNamespace),
                }
            })
        }
    }

    #[tokio::test]
    async fn activity_for_a_namespace_that_does_not_exist_is_dropped_not_retried() {
        let sink = Arc::new(OnlyTeamA(AtomicUsize::new(0)));
        let r = awake_into(sink.clone());
        let t0 = Utc::now() - chrono::Duration::seconds(10);
        for ns in ["team-a", "no-such-ns", "flaky"] {
            r.report(http(ns, t0));
        }
        assert_eq!(r.flush().await, 1, "only the flaky write failed");
        assert!(r.seen("team-a").is_some());
        assert_eq!(r.seen("no-such-ns"), None, "dropped from the book");
        assert!(r.seen("flaky").is_some(), "kept to retry");
        let writes = sink.0.load(Ordering::SeqCst);
        assert_eq!(r.flush().await, 1);
        assert_eq!(
            sink.0.load(Ordering::SeqCst),
            writes + 1,
            "the next flush retries the flaky one alone"
        );
    }

    #[tokio::test]
    async fn many_requests_to_a_sleeping_namespace_make_exactly_one_wake_write() {
        let sink = Arc::new(CountingSink::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let slept = Utc::now() - chrono::Duration::minutes(5);
        let r = Reporter::new(
            Arc::new(Sleeping(slept)),
            Some(Arc::new(sink.clone())),
            Some(tx),
            Arc::default(),
        );
        for i in 0..1000 {
            r.report(http(
                "team-a",
                slept + chrono::Duration::milliseconds(10 + i),
            ));
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(sink.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.recv().await.as_deref(), Some("team-a"));
        assert!(rx.try_recv().is_err());
    }

    struct Switchable(Mutex<(State, DateTime<Utc>)>);
    impl NamespaceStates for Arc<Switchable> {
        fn state(&self, _ns: &str) -> Option<(State, Option<DateTime<Utc>>)> {
            let (state, since) = *self.0.lock().unwrap();
            Some((state, Some(since)))
        }
    }

    #[tokio::test]
    async fn requests_while_the_namespace_is_waking_make_no_second_wake_write() {
        let sink = Arc::new(CountingSink::default());
        let slept = Utc::now() - chrono::Duration::minutes(5);
        let states = Arc::new(Switchable(Mutex::new((State::Asleep, slept))));
        let r = Reporter::new(
            Arc::new(states.clone()),
            Some(Arc::new(sink.clone())),
            None,
            Arc::default(),
        );
        r.report(http("team-a", Utc::now()));
        *states.0.lock().unwrap() = (State::Waking, Utc::now());
        tokio::time::sleep(Duration::from_millis(2)).await;
        for _ in 0..10 {
            r.report(http("team-a", Utc::now()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(sink.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn activity_older_than_the_sleep_is_no_wake_request() {
        let sink = Arc::new(CountingSink::default());
        let slept = Utc::now() - chrono::Duration::minutes(5);
        let r = Reporter::new(
            Arc::new(Sleeping(slept)),
            Some(Arc::new(sink.clone())),
            None,
            Arc::default(),
        );
        r.report(http("team-a", slept - chrono::Duration::seconds(1)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(sink.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn activity_time_is_never_in_the_future() {
        let r = Reporter::new(Arc::new(AllAwake), None, None, Arc::default());
        r.report(http("team-a", Utc::now() + chrono::Duration::hours(1)));
        assert!(r.seen("team-a").unwrap().http.unwrap() <= Utc::now());
    }
}
