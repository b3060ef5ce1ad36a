//! The Activity Lease of DESIGN.md: one `coordination.k8s.io/v1` Lease named
//! `siesta-activity` per opted-in namespace. `spec.renewTime` is the newest
//! activity any reporter saw and never moves back; per-source instants and a
//! short description ride along as annotations, so the controller can apply
//! `wake-on` and explain a wake.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use crate::annotations::LAST_ACTIVITY;
use crate::model::{format_instant, parse_instant};

pub const NAME: &str = "siesta-activity";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "siesta");
/// Newest API activity (RFC 3339 with microseconds).
pub const LAST_API: &str = "siesta.dev/last-api";
/// Newest HTTP activity (RFC 3339 with microseconds).
pub const LAST_HTTP: &str = "siesta.dev/last-http";

/// What one Activity Lease says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    pub api: Option<DateTime<Utc>>,
    pub http: Option<DateTime<Utc>>,
    pub detail: Option<String>,
}

impl Seen {
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.api.max(self.http)
    }

    /// Merge `other` in, keeping the newest of each source; true if anything moved.
    pub fn merge(&mut self, other: &Seen) -> bool {
        let mut moved = false;
        if other.api > self.api {
            self.api = other.api;
            moved = true;
        }
        if other.http > self.http {
            self.http = other.http;
            moved = true;
        }
        if moved && other.detail.is_some() {
            self.detail = other.detail.clone();
        }
        moved
    }
}

pub fn to_micro(t: DateTime<Utc>) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros()).unwrap_or_default(),
    )
}

pub fn from_micro(t: &MicroTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(t.0.as_microsecond())
}

/// Read a Lease's activity.
pub fn read(lease: &Lease) -> Seen {
    let ann = lease.metadata.annotations.as_ref();
    let get = |k: &str| {
        ann.and_then(|a| a.get(k))
            .and_then(|v| parse_instant(v).ok())
    };
    let mut seen = Seen {
        api: get(LAST_API),
        http: get(LAST_HTTP),
        detail: None,
    };
    // A lease written by another tool has only renewTime: count it as API activity.
    if seen.newest().is_none() {
        seen.api = lease
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .and_then(from_micro);
    }
    // The annotation is "<instant> <detail>"; keep the detail.
    seen.detail = ann
        .and_then(|a| a.get(LAST_ACTIVITY))
        .map(|v| match v.split_once(' ') {
            Some((t, d)) if parse_instant(t).is_ok() => d.to_string(),
            _ => v.clone(),
        });
    seen
}

fn render(namespace: &str, seen: &Seen, base: Option<Lease>) -> Lease {
    let mut lease = base.unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(MANAGED_BY.0.into(), MANAGED_BY.1.into())])),
            ..Default::default()
        },
        spec: Some(LeaseSpec::default()),
    });
    let ann = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if let Some(t) = seen.api {
        ann.insert(LAST_API.into(), crate::model::format_precise(t));
    }
    if let Some(t) = seen.http {
        ann.insert(LAST_HTTP.into(), crate::model::format_precise(t));
    }
    if let (Some(d), Some(t)) = (&seen.detail, seen.newest()) {
        ann.insert(LAST_ACTIVITY.into(), format!("{} {d}", format_instant(t)));
    }
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.renew_time = seen.newest().map(to_micro);
    lease
}

/// Write `seen` into the namespace's Activity Lease unless it already holds
/// something as new: create it if missing, replace it guarded by its
/// resourceVersion otherwise, and retry on a conflict or a Lease deleted in
/// between. Returns what the Lease holds afterwards; a 404 is left only by
/// the create, when the namespace does not exist.
pub async fn record(client: &kube::Client, namespace: &str, seen: &Seen) -> kube::Result<Seen> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let pp = PostParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (result, replacing) = match api.get_opt(NAME).await? {
            None => (
                api.create(&pp, &render(namespace, seen, None))
                    .await
                    .map(|_| seen.clone()),
                false,
            ),
            Some(current) => {
                let mut merged = read(&current);
                if !merged.merge(seen) {
                    return Ok(merged);
                }
                (
                    api.replace(NAME, &pp, &render(namespace, &merged, Some(current)))
                        .await
                        .map(|_| merged),
                    true,
                )
            }
        };
        match result {
            Err(kube::Error::Api(e))
                if (e.code == 409 || (e.code == 404 && replacing)) && attempt < 5 =>
            {
                continue;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn merge_never_moves_back() {
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 1, 1, 11, 0, 0).unwrap();
        let mut a = Seen {
            api: Some(t2),
            http: None,
            detail: Some("new".into()),
        };
        assert!(!a.merge(&Seen {
            api: Some(t1),
            http: None,
            detail: Some("old".into())
        }));
        assert_eq!(a.api, Some(t2));
        assert_eq!(a.detail.as_deref(), Some("new"));
        assert!(a.merge(&Seen {
            api: None,
            http: Some(t1),
            detail: Some("http".into())
        }));
        assert_eq!((a.api, a.http), (Some(t2), Some(t1)));
    }

    #[test]
    fn render_then_read_round_trips_to_the_microsecond() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap()
            + chrono::Duration::microseconds(123_456);
        let seen = Seen {
            api: Some(t),
            http: None,
            detail: Some("api alice get pods".into()),
        };
        let lease = render("team-a", &seen, None);
        assert_eq!(lease.metadata.name.as_deref(), Some(NAME));
        assert_eq!(
            lease
                .spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .and_then(from_micro),
            Some(t)
        );
        let back = read(&lease);
        assert_eq!((back.api, back.http), (Some(t), None));
        assert_eq!(back.detail.as_deref(), Some("api alice get pods"));
    }
}
