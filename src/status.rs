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

use crate::annotations::{self, ACTION, ENABLED, Overrides, Recorded, STATE};
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
    now: chrono::DateTime<Utc>,
) -> Result<serde_json::Value, String> {
    let enabled = annotations
        .get(ENABLED)
        .is_some_and(|v| annotations::parse_bool(v) == Ok(true));
    if !enabled && !annotations.contains_key(STATE) {
        return Err(format!(
            "{namespace} has not opted in to Siesta: set {ENABLED}=\"true\" on it (or ask an admin for a policy that selects it)"
        ));
    }
    let mut patch = serde_json::Map::new();
    patch.insert(ACTION.into(), json!(action.as_str()));
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
    namespace: &str,
    action: Action,
    keep_awake_for: Option<std::time::Duration>,
) -> crate::Result<()> {
    let client = crate::client::with_agent(&Default::default(), crate::CLI_USER_AGENT).await?;
    let api: Api<Namespace> = Api::all(client);
    let ns = api.get(namespace).await?;
    let ann = ns.metadata.annotations.clone().unwrap_or_default();
    let patch = command_patch(namespace, &ann, action, keep_awake_for, Utc::now())
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

pub async fn run(only: Option<&str>) -> crate::Result<()> {
    let client = crate::client::with_agent(&Default::default(), crate::CLI_USER_AGENT).await?;
    let api: Api<Namespace> = Api::all(client.clone());
    let namespaces = match only {
        Some(n) => vec![api.get(n).await?],
        None => api.list(&ListParams::default()).await?.items,
    };
    let config = AdminConfig::default();
    let now = Utc::now();
    let mut rows = Vec::new();
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
        let savings = if recorded.state == State::Asleep {
            let report = crate::workloads::inspect(&client, &name).await?;
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
            state: ann.get(STATE).cloned().unwrap_or_else(|| "awake".into()),
            since: recorded
                .since
                .map(crate::model::format_instant)
                .unwrap_or_else(|| "-".into()),
            reason: recorded
                .reason
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
        });
    }
    print!("{}", render(&rows));
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
    ];
    let cells: Vec<[String; 7]> = rows
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
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &cells {
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
    for row in &cells {
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
        let err = command_patch("team-a", &none, Action::Wake, None, now).unwrap_err();
        assert!(err.contains("has not opted in"), "{err}");
        let off: BTreeMap<String, String> = [(ENABLED.to_string(), "false".to_string())].into();
        assert!(command_patch("team-a", &off, Action::Sleep, None, now).is_err());
        // managed through an admin policy: accepted
        let managed: BTreeMap<String, String> = [(STATE.to_string(), "awake".to_string())].into();
        assert!(command_patch("team-a", &managed, Action::Sleep, None, now).is_ok());
    }

    #[test]
    fn wake_for_keeps_it_awake_until_then_and_sleep_clears_that() {
        let now = crate::model::parse_instant("2026-12-02T12:00:00Z").unwrap();
        let on: BTreeMap<String, String> = [(ENABLED.to_string(), "true".to_string())].into();
        let two_hours = Some(std::time::Duration::from_secs(7200));
        let p = command_patch("team-a", &on, Action::Wake, two_hours, now).unwrap();
        assert_eq!(p[ACTION], "wake");
        assert_eq!(p[annotations::KEEP_AWAKE_UNTIL], "2026-12-02T14:00:00Z");
        let p = command_patch("team-a", &on, Action::Wake, None, now).unwrap();
        assert!(p.get(annotations::KEEP_AWAKE_UNTIL).is_none());
        let p = command_patch("team-a", &on, Action::Sleep, None, now).unwrap();
        assert_eq!(p[ACTION], "sleep");
        assert!(
            p[annotations::KEEP_AWAKE_UNTIL].is_null(),
            "sleep removes keep-awake-until"
        );
    }
}
