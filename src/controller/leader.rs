//! Leader election on a `coordination.k8s.io/v1` Lease (`siesta-controller`).
//! Only the leader reconciles; standbys wait, ready to take over when the
//! leader's lease expires. A leader that cannot renew before its lease runs out
//! stops the process, so two replicas never both believe they lead for long.
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::activity::lease::{from_micro, to_micro};
use crate::metrics::{ErrorKind, Metrics};

pub const LEASE_NAME: &str = "siesta-controller";

#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
    /// Where `siesta_leader` and election errors are counted.
    pub metrics: Arc<Metrics>,
}

impl Settings {
    pub fn new(namespace: String, identity: String, metrics: Arc<Metrics>) -> Settings {
        Settings {
            namespace,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(4),
            metrics,
        }
    }
}

/// Try once to take or keep the lease; `known` is the lease as we last wrote
/// it (renewal then costs one request, not two). Ok(Some(lease)) if we hold it.
pub async fn try_acquire(
    api: &Api<Lease>,
    s: &Settings,
    known: Option<Lease>,
) -> kube::Result<Option<Lease>> {
    let now = Utc::now();
    let pp = PostParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let spec = |transitions: i32, acquired| LeaseSpec {
        holder_identity: Some(s.identity.clone()),
        lease_duration_seconds: Some(s.lease_duration.as_secs() as i32),
        acquire_time: Some(acquired),
        renew_time: Some(to_micro(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let current = match known {
        Some(lease) => Some(lease),
        None => api.get_opt(LEASE_NAME).await?,
    };
    let result = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..Default::default()
                },
                spec: Some(spec(0, to_micro(now))),
            };
            api.create(&pp, &lease).await
        }
        Some(mut lease) => {
            let current = lease.spec.clone().unwrap_or_default();
            let ours = current.holder_identity.as_deref() == Some(s.identity.as_str());
            let expires = current.renew_time.as_ref().and_then(from_micro).map(|t| {
                t + chrono::Duration::seconds(i64::from(
                    current.lease_duration_seconds.unwrap_or(15),
                ))
            });
            let free = current.holder_identity.as_deref().unwrap_or("").is_empty()
                || expires.is_none_or(|e| e < now);
            if !ours && !free {
                return Ok(None);
            }
            let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!ours);
            let acquired = if ours {
                current.acquire_time.unwrap_or_else(|| to_micro(now))
            } else {
                to_micro(now)
            };
            lease.spec = Some(spec(transitions, acquired));
            api.replace(LEASE_NAME, &pp, &lease).await
        }
    };
    match result {
        Ok(lease) => Ok(Some(lease)),
        // Someone else wrote first (or our copy is stale): not ours this round.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Wait until this replica leads.
pub async fn acquire(client: &kube::Client, s: &Settings) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &s.namespace);
    let mut logged = false;
    loop {
        match try_acquire(&api, s, None).await {
            Ok(Some(_)) => {
                tracing::info!(identity = %s.identity, namespace = %s.namespace, "became the leader");
                s.metrics.leader.with_label_values(&[] as &[&str]).set(1);
                return;
            }
            Ok(None) if !logged => {
                tracing::info!(identity = %s.identity, "standing by: another replica leads");
                logged = true;
            }
            Ok(None) => {}
            Err(e) => {
                s.metrics.error(ErrorKind::LeaderElection);
                tracing::warn!(error = %e, "leader election");
            }
        }
        tokio::time::sleep(s.renew_every).await;
    }
}

/// Renew until we fail to for a whole lease duration, or lose the lease; then return.
pub async fn hold(client: &kube::Client, s: &Settings) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &s.namespace);
    let mut last_ok = tokio::time::Instant::now();
    let mut known: Option<Lease> = None;
    loop {
        tokio::time::sleep(s.renew_every).await;
        let used_copy = known.is_some();
        match try_acquire(&api, s, known.take()).await {
            Ok(Some(lease)) => {
                last_ok = tokio::time::Instant::now();
                known = Some(lease);
            }
            // Our copy may just be stale: read the lease next time before giving up.
            Ok(None) if used_copy => {}
            Ok(None) => {
                tracing::error!("lost the leader lease to another replica");
                break;
            }
            Err(e) => {
                s.metrics.error(ErrorKind::LeaderElection);
                tracing::warn!(error = %e, "could not renew the leader lease");
                // stop before the lease can expire and another replica takes over
                if last_ok.elapsed() + s.renew_every >= s.lease_duration {
                    tracing::error!("could not renew the leader lease in time");
                    break;
                }
            }
        }
    }
    s.metrics.leader.with_label_values(&[] as &[&str]).set(0);
}

/// Give the lease up (on a clean shutdown), so a standby takes over at once.
pub async fn release(client: &kube::Client, s: &Settings) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &s.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(LEASE_NAME).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(s.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        let pp = PostParams {
            field_manager: Some(crate::FIELD_MANAGER.into()),
            ..Default::default()
        };
        let _ = api.replace(LEASE_NAME, &pp, &lease).await;
    }
}
