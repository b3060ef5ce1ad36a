//! The controller: watches namespaces, their Activity Leases and workloads,
//! runs [`crate::decide`] for each opted-in namespace, and asks
//! [`crate::scaler`] to sleep or wake it. Only the leader writes.

pub mod events;
pub mod gateway;
pub mod leader;
pub mod reconcile;
pub mod redirect;
pub mod savings;
#[cfg(test)]
mod scripted;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
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
use crate::config::AdminConfig;
use crate::metrics::Metrics;
use crate::metrics::namespaced::Account;
use crate::model::State;
use crate::supervisor::Supervisor;

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
/// How long the last activity write may hold a shutdown.
const FINAL_FLUSH: Duration = Duration::from_secs(10);

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
async fn watch_workloads<K>(
    client: kube::Client,
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
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    {
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
    }
}

/// `siesta controller`: every component under one [`Supervisor`] until
/// SIGTERM or the first component that stops; then, in this order: not ready
/// (the audit Service stops sending), stop leading (passes in flight finish)
/// and release the leader Lease, flush activity not yet written, stop the
/// rest. A component that stopped makes the process exit with an error naming it.
pub async fn run(settings: Settings) -> crate::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let client = crate::client::new(&metrics).await?;
    let (config_rx, reload) =
        crate::reload::watch(settings.config.clone(), metrics.clone()).await?;
    let config: Arc<AdminConfig> = config_rx.borrow().clone();
    let mut tasks = Supervisor::default();
    tasks.spawn_forever("admin config reload", reload);
    let ready = crate::admin::Readiness::default();
    let admin = crate::admin::bind(settings.admin_listen).await?;
    // A standby says so (0) rather than having no `siesta_leader` series.
    metrics.leader.with_label_values(&[] as &[&str]).set(0);
    tasks.spawn_forever(
        "admin server",
        crate::admin::serve(admin, ready.clone(), metrics.clone()),
    );

    // Namespaces: one watch, always running, so standbys know which
    // namespaces sleep (for audit wake requests) and can take over at once.
    let (states, writer) = reflector::store::<Namespace>();
    let triggers = Triggers::default();
    tasks.spawn_forever(
        "namespace watch",
        watch_namespaces(
            client.clone(),
            settings.namespace_selector.clone(),
            writer,
            triggers.clone(),
        ),
    );

    // Activity: in-process reports (audit) and every reporter's Lease.
    let (wake_tx, wake_rx) = mpsc::unbounded_channel::<String>();
    let reporter = Reporter::new(
        Arc::new(states.clone()),
        Some(Arc::new(LeaseSink(client.clone()))),
        Some(wake_tx),
        metrics.clone(),
    );
    tasks.spawn_forever(
        "activity flusher",
        reporter.clone().run_flusher(config.defaults.flush_interval),
    );
    tasks.spawn_forever("wake forwarder", forward_wakes(wake_rx, triggers.clone()));
    tasks.spawn_forever(
        "activity lease watch",
        watch_leases(
            client.clone(),
            reporter.clone(),
            states.clone(),
            triggers.clone(),
        ),
    );
    tasks.spawn_forever(
        "deployment watch",
        watch_workloads::<Deployment>(client.clone(), states.clone(), triggers.clone()),
    );
    tasks.spawn_forever(
        "statefulset watch",
        watch_workloads::<StatefulSet>(client.clone(), states.clone(), triggers.clone()),
    );
    tasks.spawn_forever(
        "replicaset watch",
        watch_workloads::<ReplicaSet>(client.clone(), states.clone(), triggers.clone()),
    );
    tasks.spawn_forever(
        "cronjob watch",
        watch_workloads::<CronJob>(client.clone(), states.clone(), triggers.clone()),
    );

    // Audit ingest runs on every replica (the webhook Service reaches any of
    // them); its wake requests go through the Activity Lease to the leader.
    {
        let (audit, reporter, config_rx) =
            (settings.audit.clone(), reporter.clone(), config_rx.clone());
        tasks.spawn("audit ingest", async move {
            crate::audit::run(&audit, reporter, config_rx).await
        });
    }

    let identity = settings.identity.clone().unwrap_or_else(default_identity);
    let mut election = leader::Settings::new(
        settings.leader_election_namespace.clone(),
        identity.clone(),
        metrics.clone(),
    );
    election.lease_duration = settings.leader_lease_duration;
    election.renew_every = (settings.leader_lease_duration / 4).max(Duration::from_millis(500));
    let events = events::Publisher::new(client.clone(), identity);
    let mut ctx =
        reconcile::Context::new(client.clone(), config_rx.clone(), reporter.clone(), events);
    ctx.own_namespaces = own_namespaces(&settings);
    let ctx = Arc::new(ctx);
    tasks.spawn_forever(
        "savings ticker",
        tick_savings(
            ctx.clone(),
            states.clone(),
            settings.savings_interval.max(Duration::from_millis(100)),
        ),
    );

    let redirects = redirect::start(&client, settings.redirect.clone(), metrics.clone());

    let gateway = gateway::start(&client, &mut tasks, metrics.clone());

    let (stop_trigger, stop) = crate::supervisor::stop_signal();
    let leading = lead(
        client.clone(),
        election,
        states.clone(),
        triggers,
        ctx,
        Term {
            concurrency: settings.concurrency,
            redirects,
            gateway,
        },
        stop,
    );
    tokio::pin!(leading);
    let synced = async {
        let _ = states.wait_until_ready().await;
        ready.set(true);
        std::future::pending::<()>().await
    };
    let ended = tokio::select! {
        ended = tasks.ended() => Some(ended),
        () = crate::supervisor::shutdown_signal() => None,
        () = synced => None,
        () = &mut leading => None,
    };
    if let Some(ended) = &ended {
        tracing::error!(component = ended.component, reason = %ended.why, "a component stopped; shutting down");
    } else {
        tracing::info!("shutting down");
    }
    ready.set(false);
    stop_trigger.stop();
    leading.await;
    // The last activity is written if the API server answers in time; an
    // unreachable one does not hold the shutdown past the grace.
    if tokio::time::timeout(FINAL_FLUSH, reporter.flush())
        .await
        .is_err()
    {
        tracing::warn!(
            "activity not written at shutdown: the API server did not answer in {FINAL_FLUSH:?}"
        );
    }
    drop(tasks);
    match ended {
        Some(ended) => Err(crate::Error::Other(ended.to_string())),
        None => Ok(()),
    }
}

async fn watch_namespaces(
    client: kube::Client,
    selector: Option<String>,
    writer: reflector::store::Writer<Namespace>,
    triggers: Triggers,
) {
    let mut cfg = watcher::Config::default().page_size(LIST_PAGE);
    if let Some(sel) = &selector {
        cfg = cfg.labels(sel);
    }
    watcher(Api::<Namespace>::all(client), cfg)
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .applied_objects()
        .for_each(|ns| {
            triggers.changed(ns);
            std::future::ready(())
        })
        .await;
}

async fn forward_wakes(mut wake_rx: mpsc::UnboundedReceiver<String>, triggers: Triggers) {
    while let Some(ns) = wake_rx.recv().await {
        triggers.send(&ns);
    }
}

/// Every reporter's Activity Lease: the newest activity, and for a sleeping
/// namespace the wake request.
async fn watch_leases(
    client: kube::Client,
    reporter: Reporter,
    states: reflector::Store<Namespace>,
    triggers: Triggers,
) {
    let api: Api<Lease> = Api::all(client);
    let selector = format!(
        "{}={}",
        activity::lease::MANAGED_BY.0,
        activity::lease::MANAGED_BY.1
    );
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
            // Asleep, or asleep in observe mode (a would-be wake to count).
            let observed_asleep = || {
                states.get(&ObjectRef::new(&ns)).is_some_and(|n| {
                    n.annotations().get(crate::annotations::OBSERVED_STATE)
                        == Some(&State::Asleep.as_str().to_string())
                })
            };
            if matches!(
                NamespaceStates::state(&states, &ns),
                Some((State::Asleep, _))
            ) || observed_asleep()
            {
                triggers.send(&ns);
            }
        }
        std::future::ready(())
    })
    .await;
}

/// Advance the savings counters of sleeping namespaces; a namespace deleted
/// (or no longer selected) stops saving and leaves no series behind.
async fn tick_savings(
    ctx: Arc<reconcile::Context>,
    states: reflector::Store<Namespace>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let m = &ctx.metrics;
        for ns in m.namespaces() {
            if states.get(&ObjectRef::new(&ns)).is_none() {
                ctx.savings.stop(&ns);
                ctx.potential.stop(&ns);
                m.forget_namespace(&ns);
            }
        }
        let prices = ctx.config.borrow().prices.clone();
        let now = chrono::Utc::now();
        for (ns, totals) in ctx.savings.tick(now, &prices) {
            savings::publish(m, Account::Saved, &ns, &totals, &prices);
        }
        for (ns, totals) in ctx.potential.tick(now, &prices) {
            savings::publish(m, Account::Potential, &ns, &totals, &prices);
        }
    }
}

/// Terms as leader until `stop`. A replica that loses the lease (say the API
/// server was unreachable for longer than the lease) stops writing at once
/// and stands by again, ready to lead when the lease is free. At `stop`,
/// passes in flight finish and the lease is released.
async fn lead(
    client: kube::Client,
    election: leader::Settings,
    states: reflector::Store<Namespace>,
    triggers: Triggers,
    ctx: Arc<reconcile::Context>,
    term_with: Term,
    stop: crate::supervisor::Stop,
) {
    let concurrency = term_with.concurrency;
    #[derive(Clone, Copy, PartialEq)]
    enum End {
        LostLease,
        Stop,
    }
    let stopped = futures::FutureExt::shared(Box::pin(stop.requested()));
    // A stop before the first list (the API server unreachable) ends it too.
    tokio::select! {
        _ = states.wait_until_ready() => {}
        _ = stopped.clone() => return,
    }
    loop {
        tokio::select! {
            _ = leader::acquire(&client, &election) => {}
            _ = stopped.clone() => return,
        }
        let (ns_rx, trigger_rx) = triggers.lead();
        // Redirect passes for this term only; aborted at its end.
        let redirecting = term_with.redirects.clone().map(|r| {
            let hold_timeout = ctx.config.borrow().proxy.hold_timeout;
            tokio::spawn(r.run(states.clone(), hold_timeout))
        });
        let gateway_statuses = tokio::spawn(term_with.gateway.clone().run());
        // Everything known so far gets one reconcile, alongside changes,
        // timers and triggers. Paced by finished reconciles: fed at once,
        // 10,000 namespaces would sit in kube-runtime's scheduler together,
        // whose tables keep that size (about 7 MiB) for the life of the process.
        let pace = Arc::new(tokio::sync::Semaphore::new(
            2 * usize::from(concurrency.max(1)),
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
        let end = {
            let (client, election, stopped) = (client.clone(), election.clone(), stopped.clone());
            futures::FutureExt::shared(Box::pin(async move {
                tokio::select! {
                    _ = leader::hold(&client, &election) => End::LostLease,
                    _ = stopped => End::Stop,
                }
            }))
        };
        // A reloaded admin config may change any namespace's policy.
        let reloads = futures::stream::unfold(ctx.config.clone(), |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        });
        let term = Controller::for_stream(ns_stream, states.clone())
            .reconcile_on(UnboundedReceiverStream::new(trigger_rx))
            .reconcile_all_on(reloads)
            .with_config(ControllerConfig::default().concurrency(concurrency))
            .graceful_shutdown_on(futures::FutureExt::map(end.clone(), |_| ()))
            .run(reconcile::reconcile, reconcile::error_policy, ctx.clone())
            .for_each(|_| {
                pace.add_permits(1);
                std::future::ready(())
            });
        // At stop, passes in flight finish (graceful). A lost lease drops
        // them at once: another replica leads now, and every write is whole
        // (a record travels in the patch that changes the count), so a pass
        // cut short leaves nothing half done for the new leader to find.
        let lost = {
            let end = end.clone();
            async move {
                if end.await == End::LostLease {
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
        if let Some(task) = redirecting {
            task.abort();
        }
        gateway_statuses.abort();
        if end.await == End::Stop {
            leader::release(&client, &election).await;
            tracing::info!("stopped leading; leader lease released");
            return;
        }
        tracing::warn!("lost the leader lease; standing by");
    }
}

/// What each term as leader runs besides reconciles.
struct Term {
    concurrency: u16,
    redirects: Option<redirect::Redirects>,
    gateway: gateway::Statuses,
}

/// The namespaces this controller runs in and uses, never deleted: its
/// leader election namespace, its proxy Service's, and the one its
/// ServiceAccount token names (in a cluster).
fn own_namespaces(settings: &Settings) -> Vec<String> {
    let mut own = vec![settings.leader_election_namespace.clone()];
    own.extend(
        settings
            .redirect
            .proxy_service
            .iter()
            .map(|(ns, _)| ns.clone()),
    );
    let token_namespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
    if let Ok(ns) = std::fs::read_to_string(token_namespace) {
        own.push(ns.trim().to_string());
    }
    own.retain(|n| !n.is_empty());
    own
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

/// What `siesta controller` runs with. The binary fills it from its flags
/// (`src/bin/siesta/args.rs`); tests and embedders start from [`Default`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Admin config file (YAML); reloaded when it changes. Optional.
    pub config: Option<PathBuf>,
    /// Listen address for /metrics, /healthz and /readyz.
    pub admin_listen: SocketAddr,
    /// The audit ingest (webhook and log follower), on every replica.
    pub audit: crate::audit::Settings,
    /// Namespace of the leader-election Lease.
    pub leader_election_namespace: String,
    /// This replica's identity in the leader Lease (default: the host name).
    pub identity: Option<String>,
    /// How long a leader Lease lasts without renewal; a standby takes over after it.
    pub leader_lease_duration: Duration,
    /// Only manage namespaces whose labels match this selector (default: all).
    pub namespace_selector: Option<String>,
    /// How often the savings counters advance for sleeping namespaces.
    pub savings_interval: Duration,
    /// Reconciles at once (each is a handful of API requests).
    pub concurrency: u16,
    /// Redirects of sleeping Services to the proxy.
    pub redirect: redirect::Settings,
}

/// The controller's admin listener unless told.
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8081,
));

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            config: None,
            admin_listen: ADMIN_LISTEN,
            audit: Default::default(),
            leader_election_namespace: "siesta-system".into(),
            identity: None,
            leader_lease_duration: Duration::from_secs(15),
            namespace_selector: None,
            savings_interval: Duration::from_secs(10),
            concurrency: 32,
            redirect: redirect::Settings::default(),
        }
    }
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
