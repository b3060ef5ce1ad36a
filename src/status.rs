//! `siesta status`, `siesta sleep` and `siesta wake`: what users run.
//!
//! `sleep` and `wake` only set `siesta.dev/action`; the controller acts on it
//! and removes it, so the command works the same from a laptop and from CI.
use std::collections::BTreeMap;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::annotations::{self, ACTION, ENABLED, Enabled, Overrides, Recorded, STATE};
use crate::config::AdminConfig;
use crate::decide::{self, Observed};
use crate::model::{Action, State};

/// One row of the status table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub namespace: String,
    pub state: String,
    pub since: String,
    pub reason: String,
    pub last_activity: String,
    pub next_change: String,
    pub savings: String,
    /// GitOps agents managing its workloads (`flux`, `argocd`), or `-`.
    pub gitops: String,
}

/// The annotations `siesta sleep` or `siesta wake [--for D]` writes, or why
/// it refuses: a namespace must have opted in (`siesta.dev/enabled: "true"`)
/// or be managed already (an admin policy opted it in and Siesta acted on it).
/// Sleep also removes `keep-awake-until`, or the controller would wake it
/// again at once; wake with `--for` keeps it awake until then.
pub fn command_patch(
    namespace: &str,
    annotations: &BTreeMap<String, String>,
    action: Action,
    keep_awake_for: Option<std::time::Duration>,
    requested_by: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> Result<serde_json::Value, String> {
    let enabled = annotations.get(ENABLED).map(|v| Enabled::parse(v));
    if enabled == Some(Ok(Enabled::Observe)) {
        return Err(format!(
            "{namespace} is in observe mode ({ENABLED}: observe): Siesta only counts what it would do there and changes nothing; set {ENABLED}=\"true\" to let it sleep and wake"
        ));
    }
    if enabled != Some(Ok(Enabled::Yes)) && !annotations.contains_key(STATE) {
        return Err(format!(
            "{namespace} has not opted in to Siesta: set {ENABLED}=\"true\" on it (or ask an admin for a policy that selects it)"
        ));
    }
    let mut patch = serde_json::Map::new();
    patch.insert(ACTION.into(), json!(action.as_str()));
    patch.insert(
        annotations::REQUESTED_BY.into(),
        requested_by.map_or(serde_json::Value::Null, |u| {
            json!(annotations::truncate(u, annotations::MAX_DESCRIPTION))
        }),
    );
    match (action, keep_awake_for) {
        (Action::Sleep, _) => {
            patch.insert(
                annotations::KEEP_AWAKE_UNTIL.into(),
                serde_json::Value::Null,
            );
        }
        (Action::Wake, Some(d)) => {
            let until = now + chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
            patch.insert(
                annotations::KEEP_AWAKE_UNTIL.into(),
                json!(crate::model::format_instant(until)),
            );
        }
        (Action::Wake, None) => {}
    }
    Ok(serde_json::Value::Object(patch))
}

pub async fn command(
    target: &crate::client::Target,
    namespace: &str,
    action: Action,
    keep_awake_for: Option<std::time::Duration>,
) -> crate::Result<()> {
    let client = crate::client::to(target, &Default::default(), crate::CLI_USER_AGENT).await?;
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = api.get(namespace).await?;
    let ann = ns.metadata.annotations.clone().unwrap_or_default();
    let user = whoami(&client).await;
    let patch = command_patch(
        namespace,
        &ann,
        action,
        keep_awake_for,
        user.as_deref(),
        Utc::now(),
    )
    .map_err(crate::Error::Other)?;
    let pp = PatchParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(
        namespace,
        &pp,
        &Patch::Merge(json!({"metadata": {"annotations": patch}})),
    )
    .await?;
    match patch
        .get(annotations::KEEP_AWAKE_UNTIL)
        .and_then(|v| v.as_str())
    {
        Some(until) => println!("{namespace}: wake requested, kept awake until {until}"),
        None => println!("{namespace}: {} requested", action.as_str()),
    }
    Ok(())
}

/// The user the API server sees this client as (a SelfSubjectReview, which
/// every authenticated user may create); `None` when it cannot say.
async fn whoami(client: &kube::Client) -> Option<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&Default::default(), &SelfSubjectReview::default())
        .await;
    match review {
        Ok(r) => r.status?.user_info?.username,
        Err(e) => {
            tracing::debug!(error = %e, "no SelfSubjectReview; the request names no user");
            None
        }
    }
}

pub async fn run(target: &crate::client::Target, only: Option<&str>) -> crate::Result<()> {
    let client = crate::client::to(target, &Default::default(), crate::CLI_USER_AGENT).await?;
    let api: Api<Namespace> = Api::all(client.clone());
    let namespaces = match only {
        Some(n) => vec![api.get(n).await?],
        None => api.list(&ListParams::default()).await?.items,
    };
    let config = AdminConfig::default();
    let now = Utc::now();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for ns in namespaces {
        let empty = BTreeMap::new();
        let ann = ns.metadata.annotations.as_ref().unwrap_or(&empty);
        if only.is_none() && !ann.keys().any(|k| k.starts_with(annotations::PREFIX)) {
            continue;
        }
        let name = ns.name_any();
        let recorded = Recorded::parse(ann);
        let lease = Api::<Lease>::namespaced(client.clone(), &name)
            .get_opt(crate::activity::lease::NAME)
            .await
            .ok()
            .flatten()
            .map(|l| crate::activity::lease::read(&l))
            .unwrap_or_default();
        let (own, errors) = Overrides::parse(ann);
        let next_change = match config.resolve(ns.labels(), &own) {
            (policy, None) if errors.is_empty() => {
                let observed = Observed {
                    state: recorded.state,
                    since: recorded.since,
                    reason: recorded.reason,
                    action: own.action,
                    last_api: lease.api,
                    last_http: lease.http,
                    first_seen: recorded.since.unwrap_or(now),
                };
                decide::decide(&policy, &observed, now)
                    .next_check
                    .map(crate::model::format_instant)
                    .unwrap_or_else(|| "-".into())
            }
            _ => "invalid annotations".into(),
        };
        let potential = recorded.observed_state.map(|observed| {
            let since = (observed == State::Asleep)
                .then_some(recorded.observed_since)
                .flatten();
            let saved = recorded.observed_saved.map(|s| {
                crate::controller::savings::value(&s, since.unwrap_or(s.at), now, &config.prices)
            });
            (observed, saved)
        });
        let report = crate::workloads::inspect(&client, &name).await?;
        if !report.undone_by_argo_cd.is_empty() {
            notes.push(format!(
                "{name}: {} scaled back up by Argo CD while asleep: Argo CD's self-heal undoes sleep; to let it sleep, {}",
                report.undone_by_argo_cd.join(", "),
                crate::gitops::ARGO_CD_FIX
            ));
        }
        let savings = if let Some((_, saved)) = potential {
            let saved = saved.unwrap_or_else(|| crate::annotations::Saved::zero(now));
            format!(
                "would have saved {:.4} {} ({:.2} core-hours)",
                saved.cost,
                config.prices.currency,
                saved.cpu_core_seconds / 3600.0
            )
        } else if recorded.state == State::Asleep {
            let hours = recorded
                .since
                .map(|s| (now - s).num_seconds().max(0) as f64 / 3600.0)
                .unwrap_or(0.0);
            let prices = &config.prices;
            let money = hours
                * (report.cpu_cores * prices.cpu_core_hour
                    + report.memory_bytes / (1024.0 * 1024.0 * 1024.0) * prices.memory_gib_hour);
            format!(
                "{money:.4} {} ({:.2} cores, {:.2} GiB)",
                prices.currency,
                report.cpu_cores,
                report.memory_bytes / 1073741824.0
            )
        } else {
            "-".into()
        };
        rows.push(Row {
            namespace: name,
            state: match potential {
                Some((observed, _)) => format!("observe ({})", observed.as_str()),
                None if recorded.abandoned_since.is_some() => format!(
                    "{} (abandoned)",
                    ann.get(STATE).map_or("asleep", String::as_str)
                ),
                None => ann.get(STATE).cloned().unwrap_or_else(|| "awake".into()),
            },
            since: potential
                .map_or(recorded.since, |_| recorded.observed_since)
                .map(crate::model::format_instant)
                .unwrap_or_else(|| "-".into()),
            reason: potential
                .map_or(recorded.reason, |_| recorded.observed_reason)
                .map(|r| r.as_str().to_string())
                .unwrap_or_else(|| "-".into()),
            last_activity: recorded.last_activity.clone().unwrap_or_else(|| {
                lease
                    .newest()
                    .map(crate::model::format_instant)
                    .unwrap_or_else(|| "-".into())
            }),
            next_change,
            savings,
            gitops: if report.agents.is_empty() {
                "-".into()
            } else {
                report.agents.iter().copied().collect::<Vec<_>>().join(",")
            },
        });
    }
    print!("{}", render(&rows));
    for note in notes {
        println!("\n{note}");
    }
    Ok(())
}

/// A plain, aligned table.
pub fn render(rows: &[Row]) -> String {
    let header = [
        "NAMESPACE",
        "STATE",
        "SINCE",
        "REASON",
        "LAST ACTIVITY",
        "NEXT CHANGE",
        "SAVINGS",
        "GITOPS",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.namespace.clone(),
                r.state.clone(),
                r.since.clone(),
                r.reason.clone(),
                r.last_activity.clone(),
                r.next_change.clone(),
                r.savings.clone(),
                r.gitops.clone(),
            ]
        })
        .collect();
    table(&header, &cells)
}

/// A plain table: columns padded to their widest cell, two spaces apart, no
/// trailing blanks (as kubectl prints).
pub fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut width = header.map(str::len);
    for row in rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: Vec<&str>| -> String {
        let mut s = cols
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_aligned() {
        let row = Row {
            namespace: "team-a".into(),
            state: "asleep".into(),
            since: "2026-11-22T10:00:00Z".into(),
            reason: "idle".into(),
            last_activity: "2026-11-22T09:30:00Z api alice get pods".into(),
            next_change: "-".into(),
            savings: "0.0316 USD".into(),
            gitops: "flux".into(),
        };
        let t = render(&[row]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("STATE"), lines[1].find("asleep"));
        assert_eq!(lines[0].find("SAVINGS"), lines[1].find("0.0316"));
    }

    #[test]
    fn sleep_and_wake_refuse_a_namespace_that_did_not_opt_in() {
        let now = Utc::now();
        let none = BTreeMap::new();
        let err = command_patch("team-a", &none, Action::Wake, None, None, now).unwrap_err();
        assert!(err.contains("has not opted in"), "{err}");
        let observed: BTreeMap<String, String> =
            [(ENABLED.to_string(), "observe".to_string())].into();
        let err = command_patch("team-a", &observed, Action::Wake, None, None, now).unwrap_err();
        assert!(err.contains("observe mode"), "{err}");
        let off: BTreeMap<String, String> = [(ENABLED.to_string(), "false".to_string())].into();
        assert!(command_patch("team-a", &off, Action::Sleep, None, None, now).is_err());
        // managed through an admin policy: accepted
        let managed: BTreeMap<String, String> = [(STATE.to_string(), "awake".to_string())].into();
        assert!(command_patch("team-a", &managed, Action::Sleep, None, None, now).is_ok());
    }

    #[test]
    fn wake_for_keeps_it_awake_until_then_and_sleep_clears_that() {
        let now = crate::model::parse_instant("2026-12-02T12:00:00Z").unwrap();
        let on: BTreeMap<String, String> = [(ENABLED.to_string(), "true".to_string())].into();
        let two_hours = Some(std::time::Duration::from_secs(7200));
        let p = command_patch("team-a", &on, Action::Wake, two_hours, None, now).unwrap();
        assert_eq!(p[ACTION], "wake");
        assert_eq!(p[annotations::KEEP_AWAKE_UNTIL], "2026-12-02T14:00:00Z");
        let p = command_patch("team-a", &on, Action::Wake, None, None, now).unwrap();
        assert!(p.get(annotations::KEEP_AWAKE_UNTIL).is_none());
        let p = command_patch("team-a", &on, Action::Sleep, None, Some("alice"), now).unwrap();
        assert_eq!(p[ACTION], "sleep");
        assert_eq!(p[annotations::REQUESTED_BY], "alice");
        assert!(
            p[annotations::KEEP_AWAKE_UNTIL].is_null(),
            "sleep removes keep-awake-until"
        );
    }
}
