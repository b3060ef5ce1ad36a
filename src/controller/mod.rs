//! The controller: watches namespaces, their Activity Leases and workloads,
//! runs [`crate::decide`] for each opted-in namespace, and asks
//! [`crate::scaler`] to sleep or wake it. Only the leader writes.

pub mod events;
pub mod leader;
pub mod reconcile;
pub mod savings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio_stream_shim::UnboundedReceiverStream;

use crate::activity::{self, LeaseSink, NamespaceStates, Reporter};
use crate::annotations::State;
use crate::config::AdminConfig;

type NamespaceEvents = mpsc::UnboundedSender<Result<Namespace, watcher::Error>>;
type Senders = (NamespaceEvents, mpsc::UnboundedSender<ObjectRef<Namespace>>);

/// Forwards namespace changes and triggers to the controller only while this
/// replica leads; each term as leader gets fresh channels.
#[derive(Clone, Default)]
struct Triggers(Arc<Mutex<Option<Senders>>>);

type Receivers = (
    mpsc::UnboundedReceiver<Result<Namespace, watcher::Error>>,
    mpsc::UnboundedReceiver<ObjectRef<Namespace>>,
);

impl Triggers {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        Option<(NamespaceEvents, mpsc::UnboundedSender<ObjectRef<Namespace>>)>,
    > {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn send(&self, namespace: &str) {
        if let Some((_, tx)) = self.lock().as_ref() {
            let _ = tx.send(ObjectRef::new(namespace));
        }
    }
    fn changed(&self, ns: Result<Namespace, watcher::Error>) {
        if let Some((tx, _)) = self.lock().as_ref() {
            let _ = tx.send(ns);
        }
    }
    fn lead(&self) -> Receivers {
        let (ns_tx, ns_rx) = mpsc::unbounded_channel();
        let (tx, rx) = mpsc::unbounded_channel();
        *self.lock() = Some((ns_tx, tx));
        (ns_rx, rx)
    }
    fn stand_by(&self) {
        *self.lock() = None;
    }
}

/// Items per page of a watch's (re)list. Small pages keep the response
/// buffers small (a page of 500 workloads' metadata is about 2 MB of JSON);
/// the extra requests happen only at start and after a lost watch.
const LIST_PAGE: u32 = 100;

/// Keep of a Namespace only what reconciles read: name, uid, resourceVersion,
/// labels (admin policies select by them) and `siesta.dev/` annotations. With
/// 10,000 namespaces cached, every field dropped here counts; others'
/// annotations (say a last-applied-configuration) can be large.
fn slim(ns: &mut Namespace) {
    ns.spec = None;
    ns.status = None;
    let meta = &mut ns.metadata;
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.finalizers = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| k.starts_with(crate::annotations::PREFIX));
    }
}

/// Watch one workload kind's metadata (no spec, no status: cheap) and poke
/// its namespace while that namespace sleeps or wakes, so new workloads go to
/// sleep too and waking namespaces notice readiness.
fn watch_workloads<K>(
    client: &kube::Client,
    states: reflector::Store<Namespace>,
    triggers: Triggers,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client.clone());
    tokio::spawn(async move {
        // The generation last seen of each workload in a sleeping namespace:
        // an asleep namespace needs a look only when a workload's spec
        // changed (someone scaled it) or a workload is new, not for each
        // status update the cluster's controllers make while pods go away.
        let mut generations: HashMap<(String, String), i64> = HashMap::new();
        // Paginated lists (no `any_semantic`): 10,000 workloads arrive a
        // page at a time instead of in one response held in memory at once.
        watcher(api, watcher::Config::default().page_size(LIST_PAGE))
            .default_backoff()
            .for_each(|event| {
                let (meta, deleted) = match event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (o, false),
                    Ok(watcher::Event::Delete(o)) => (o, true),
                    _ => return std::future::ready(()),
                };
                let m = meta.metadata;
                // Owned workloads (a Deployment's ReplicaSets) are never
                // Siesta's to change or wait for.
                if m.owner_references.as_ref().is_some_and(|o| !o.is_empty()) {
                    return std::future::ready(());
                }
                let (Some(ns), Some(name)) = (m.namespace, m.name) else {
                    return std::future::ready(());
                };
                let key = (ns, name);
                let state = NamespaceStates::state(&states, &key.0).map(|(s, _)| s);
                let poke = match state {
                    Some(State::Waking) => true,
                    Some(State::Asleep) if deleted => false,
                    Some(State::Asleep) => {
                        let generation = m.generation.unwrap_or_default();
                        generations.insert(key.clone(), generation) != Some(generation)
                    }
                    _ => false,
                };
                if deleted || !matches!(state, Some(State::Asleep)) {
                    generations.remove(&key);
                }
                if poke {
                    triggers.send(&key.0);
                }
                std::future::ready(())
            })
            .await;
    });
}

pub async fn run(args: Args) -> crate::Result<()> {
    let client = crate::kube_client().await?;
    let (config_rx, reload) = crate::config::watch(args.config.clone()).await?;
    tokio::spawn(reload);
    let config: Arc<AdminConfig> = config_rx.borrow().clone();
    let ready = crate::admin::Readiness::default();
    let admin = crate::admin::bind(args.admin_listen).await?;
    // A standby says so (0) rather than having no `siesta_leader` series.
    crate::metrics::get()
        .leader
        .with_label_values(&[] as &[&str])
        .set(0);
    tokio::spawn(crate::admin::serve(admin, ready.clone()));

    // Namespaces: one watch, always running, so standbys know which
    // namespaces sleep (for audit wake requests) and can take over at once.
    let (states, writer) = reflector::store::<Namespace>();
    let triggers = Triggers::default();
    {
        let triggers = triggers.clone();
        let selector = args.namespace_selector.clone();
        let api: Api<Namespace> = Api::all(client.clone());
        tokio::spawn(async move {
            let mut cfg = watcher::Config::default().page_size(LIST_PAGE);
            if let Some(sel) = &selector {
                cfg = cfg.labels(sel);
            }
            watcher(api, cfg)
                .default_backoff()
                .modify(slim)
                .reflect(writer)
                .applied_objects()
                .for_each(|ns| {
                    triggers.changed(ns);
                    std::future::ready(())
                })
                .await;
        });
    }

    // Activity: in-process reports (audit) and every reporter's Lease.
    let (wake_tx, mut wake_rx) = mpsc::unbounded_channel::<String>();
    let reporter = Reporter::new(
        Arc::new(states.clone()),
        Some(Arc::new(LeaseSink(client.clone()))),
        Some(wake_tx),
    );
    tokio::spawn(reporter.clone().run_flusher(config.defaults.flush_interval));
    {
        let triggers = triggers.clone();
        tokio::spawn(async move {
            while let Some(ns) = wake_rx.recv().await {
                triggers.send(&ns);
            }
        });
    }
    {
        let reporter = reporter.clone();
        let triggers = triggers.clone();
        let states = states.clone();
        let api: Api<Lease> = Api::all(client.clone());
        let selector = format!(
            "{}={}",
            activity::lease::MANAGED_BY.0,
            activity::lease::MANAGED_BY.1
        );
        tokio::spawn(async move {
            watcher(
                api,
                watcher::Config::default()
                    .labels(&selector)
                    .page_size(LIST_PAGE),
            )
            .default_backoff()
            .applied_objects()
            .for_each(|lease| {
                if let Ok(lease) = lease
                    && lease.name_any() == activity::lease::NAME
                    && let Some(ns) = lease.namespace()
                {
                    reporter.observe_lease(&ns, &activity::lease::read(&lease));
                    if matches!(
                        NamespaceStates::state(&states, &ns),
                        Some((State::Asleep, _))
                    ) {
                        triggers.send(&ns);
                    }
                }
                std::future::ready(())
            })
            .await;
        });
    }
    watch_workloads::<Deployment>(&client, states.clone(), triggers.clone());
    watch_workloads::<StatefulSet>(&client, states.clone(), triggers.clone());
    watch_workloads::<ReplicaSet>(&client, states.clone(), triggers.clone());
    watch_workloads::<CronJob>(&client, states.clone(), triggers.clone());

    // Audit ingest runs on every replica (the webhook Service reaches any of
    // them); its wake requests go through the Activity Lease to the leader.
    {
        let args = args.clone();
        let reporter = reporter.clone();
        let config_rx = config_rx.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::audit::run(&args, reporter, config_rx).await {
                tracing::error!(error = %e, "audit ingest stopped");
                std::process::exit(1);
            }
        });
    }
    let _ = states.wait_until_ready().await;
    ready.set(true);

    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let mut settings =
        leader::Settings::new(args.leader_election_namespace.clone(), identity.clone());
    settings.lease_duration = args.leader_lease_duration;
    settings.renew_every =
        (args.leader_lease_duration / 4).max(std::time::Duration::from_millis(500));
    let shutdown = futures::FutureExt::shared(Box::pin(crate::shutdown_signal()));
    let events = events::Publisher::new(client.clone(), identity);
    let ctx = Arc::new(reconcile::Context {
        client: client.clone(),
        config: config_rx.clone(),
        reporter,
        namespaces: states.clone(),
        events,
        first_seen: Default::default(),
        reported: Default::default(),
        savings: Default::default(),
    });
    {
        let ctx = ctx.clone();
        let config_rx = config_rx.clone();
        let states = states.clone();
        let every = args.savings_interval.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let now = chrono::Utc::now();
                // A namespace deleted (or no longer selected) stops saving and
                // leaves no series behind.
                let m = crate::metrics::get();
                for ns in m.namespaces() {
                    if states.get(&ObjectRef::new(&ns)).is_none() {
                        ctx.savings.stop(&ns, now);
                        m.forget_namespace(&ns);
                    }
                }
                let prices = config_rx.borrow().prices.clone();
                savings::publish(&ctx.savings.tick(now), &prices);
            }
        });
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Stop {
        LostLease,
        Shutdown,
    }
    // Terms as leader. A replica that loses the lease (say the API server was
    // unreachable for longer than the lease) stops writing at once and stands
    // by again, ready to lead when the lease is free.
    loop {
        tokio::select! {
            _ = leader::acquire(&client, &settings) => {}
            _ = shutdown.clone() => return Ok(()),
        }
        let (ns_rx, trigger_rx) = triggers.lead();
        // Everything known so far gets one reconcile, alongside changes,
        // timers and triggers. Paced by finished reconciles: fed at once,
        // 10,000 namespaces would sit in kube-runtime's scheduler together,
        // whose tables keep that size (about 7 MiB) for the life of the process.
        let pace = Arc::new(tokio::sync::Semaphore::new(
            2 * usize::from(args.concurrency.max(1)),
        ));
        let initial = futures::stream::iter(states.state()).then({
            let pace = pace.clone();
            move |ns| {
                let pace = pace.clone();
                async move {
                    if let Ok(permit) = pace.acquire().await {
                        permit.forget();
                    }
                    Ok((*ns).clone())
                }
            }
        });
        let ns_stream = futures::stream::select(initial, UnboundedReceiverStream::new(ns_rx));
        let stop = {
            let client = client.clone();
            let settings = settings.clone();
            let shutdown = shutdown.clone();
            futures::FutureExt::shared(Box::pin(async move {
                tokio::select! {
                    _ = leader::hold(&client, &settings) => Stop::LostLease,
                    _ = shutdown => Stop::Shutdown,
                }
            }))
        };
        // A reloaded admin config may change any namespace's policy.
        let reloads = futures::stream::unfold(config_rx.clone(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        });
        let term = Controller::for_stream(ns_stream, states.clone())
            .reconcile_on(UnboundedReceiverStream::new(trigger_rx))
            .reconcile_all_on(reloads)
            .with_config(ControllerConfig::default().concurrency(args.concurrency))
            .graceful_shutdown_on(futures::FutureExt::map(stop.clone(), |_| ()))
            .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
            .for_each(|_| {
                pace.add_permits(1);
                std::future::ready(())
            });
        // On shutdown, passes in flight finish (graceful). A lost lease drops
        // them at once: another replica leads now, and every write is whole
        // (a record travels in the patch that changes the count), so a pass
        // cut short leaves nothing half done for the new leader to find.
        let lost = {
            let stop = stop.clone();
            async move {
                if stop.await == Stop::LostLease {
                    return;
                }
                std::future::pending::<()>().await
            }
        };
        tokio::select! {
            _ = term => {}
            _ = lost => tracing::warn!("lost the leader lease: passes in flight dropped"),
        }
        triggers.stand_by();
        if stop.await == Stop::Shutdown {
            leader::release(&client, &settings).await;
            tracing::info!("stopped; leader lease released");
            return Ok(());
        }
        tracing::warn!("lost the leader lease; standing by");
    }
}

fn default_identity() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("siesta-{}", std::process::id()))
}

mod tokio_stream_shim {
    //! An mpsc receiver as a `Stream` (what tokio-stream's wrapper does).
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::sync::mpsc::UnboundedReceiver;

    pub struct UnboundedReceiverStream<T>(UnboundedReceiver<T>);

    impl<T> UnboundedReceiverStream<T> {
        pub fn new(rx: UnboundedReceiver<T>) -> Self {
            Self(rx)
        }
    }

    impl<T> futures::Stream for UnboundedReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

use std::path::PathBuf;

/// `siesta controller` settings; each flag is also `SIESTA_<NAME>`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Admin config file (YAML); reloaded when it changes. Optional.
    #[arg(long, env = "SIESTA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SIESTA_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    /// Listen address of the audit webhook (POST /audit, POST /audit/lines).
    #[arg(long, env = "SIESTA_AUDIT_LISTEN", default_value = "127.0.0.1:8443")]
    pub audit_listen: SocketAddr,
    /// Follow this audit log file (JSON lines) like `tail -F`.
    #[arg(long, env = "SIESTA_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Where the audit log follower keeps its position (device, inode, offset),
    /// so a restart neither re-counts nor misses lines.
    #[arg(long, env = "SIESTA_AUDIT_LOG_STATE")]
    pub audit_log_state: Option<PathBuf>,
    /// TLS certificate (PEM) for the audit listener; required off loopback.
    #[arg(long, env = "SIESTA_AUDIT_TLS_CERT")]
    pub audit_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the audit listener.
    #[arg(long, env = "SIESTA_AUDIT_TLS_KEY")]
    pub audit_tls_key: Option<PathBuf>,
    /// CA bundle (PEM): audit clients must present a certificate it signed.
    #[arg(long, env = "SIESTA_AUDIT_CLIENT_CA")]
    pub audit_client_ca: Option<PathBuf>,
    /// File holding the bearer token audit clients must send.
    #[arg(long, env = "SIESTA_AUDIT_TOKEN_FILE")]
    pub audit_token_file: Option<PathBuf>,
    /// Largest accepted audit request body, in bytes.
    #[arg(long, env = "SIESTA_AUDIT_MAX_BODY", default_value_t = crate::audit::webhook::MAX_BODY)]
    pub audit_max_body: usize,
    /// Audit connections one client address may have open at once; past it a
    /// new one is closed unread. 0: no limit per address.
    #[arg(long, env = "SIESTA_AUDIT_MAX_CONNECTIONS_PER_PEER", default_value_t = crate::audit::webhook::MAX_CONNECTIONS_PER_PEER)]
    pub audit_max_connections_per_peer: usize,
    /// Bytes of audit request bodies held at once (being read, queued or
    /// parsed); past it a request gets 429 with Retry-After. Never less than
    /// --audit-max-body.
    #[arg(long, env = "SIESTA_AUDIT_MAX_BODIES_BYTES", default_value_t = crate::audit::webhook::MAX_BODIES_BYTES)]
    pub audit_max_bodies_bytes: usize,
    /// A kept-alive audit connection that has not sent its next whole request
    /// head by then is disconnected (a new connection has less for its first).
    #[arg(long, env = "SIESTA_AUDIT_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub audit_header_timeout: std::time::Duration,
    /// An audit request body not received whole by then gets 408.
    #[arg(long, env = "SIESTA_AUDIT_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub audit_body_timeout: std::time::Duration,
    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        env = "SIESTA_LEADER_ELECTION_NAMESPACE",
        default_value = "siesta-system"
    )]
    pub leader_election_namespace: String,
    /// This replica's identity in the leader Lease (default: the host name).
    #[arg(long, env = "SIESTA_IDENTITY")]
    pub identity: Option<String>,
    /// How long a leader Lease lasts without renewal; a standby takes over after it.
    #[arg(long, env = "SIESTA_LEADER_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_lease_duration: std::time::Duration,
    /// Only manage namespaces whose labels match this selector (default: all).
    #[arg(long, env = "SIESTA_NAMESPACE_SELECTOR")]
    pub namespace_selector: Option<String>,
    /// How often the savings counters advance for sleeping namespaces (they
    /// are computed from the recorded sleep start, so this only sets their
    /// resolution). Default 10s.
    #[arg(long, env = "SIESTA_SAVINGS_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub savings_interval: std::time::Duration,
    /// Reconciles at once (each is a handful of API requests).
    #[arg(long, env = "SIESTA_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_namespace_keeps_what_reconciles_read_and_nothing_else() {
        let mut ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "team-a", "uid": "u1", "resourceVersion": "7",
                "labels": {"team": "a"},
                "annotations": {
                    "siesta.dev/enabled": "true",
                    "kubectl.kubernetes.io/last-applied-configuration": "{...}"
                },
                "managedFields": [{"manager": "kubectl"}],
                "finalizers": ["x"]
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        }))
        .unwrap();
        slim(&mut ns);
        let m = &ns.metadata;
        assert_eq!(
            (
                m.name.as_deref(),
                m.uid.as_deref(),
                m.resource_version.as_deref()
            ),
            (Some("team-a"), Some("u1"), Some("7"))
        );
        assert_eq!(m.labels.as_ref().unwrap()["team"], "a");
        let annotations = m.annotations.as_ref().unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations["siesta.dev/enabled"], "true");
        assert!(m.managed_fields.is_none() && m.finalizers.is_none());
        assert!(ns.spec.is_none() && ns.status.is_none());
    }
}
