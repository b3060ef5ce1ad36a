//! `siesta report`: per namespace and team, the hours a namespace slept (or,
//! in observe mode, would have slept), the money that saved (or would have)
//! and the wakes it took (or would have caused).
//!
//! Two sources, and the table says which it used:
//! - without `--prometheus`: the totals Siesta records on each namespace
//!   (`siesta.dev/observed`, `siesta.dev/observed-saved`, `siesta.dev/saved`),
//!   from when observing began; not windowed, and an enabled namespace
//!   records its money but not its hours or wakes;
//! - with `--prometheus URL`: the controller's counters over the last
//!   `--since`, as far back as that Prometheus keeps them.
//!
//! After the table, the namespaces marked abandoned (a policy's
//! `abandonAfter`): since when, and when they are to be deleted if a policy's
//! `deleteAfter` announced it.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;

use crate::annotations::{ObservedTotals, Recorded, STATE, Saved};
use crate::config::Prices;
use crate::controller::savings;
use crate::model::State;

/// Observe mode's would-be figures, or an enabled namespace's real ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Enabled,
    Observe,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Enabled => "enabled",
            Mode::Observe => "observe",
        }
    }
}

/// One namespace's line; `None` is a figure the source does not have.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub namespace: String,
    pub team: String,
    pub mode: Mode,
    pub hours_asleep: Option<f64>,
    pub money: Option<f64>,
    pub wakes: Option<f64>,
}

/// The lines from what is recorded on the namespaces at `now`.
pub fn from_namespaces(
    namespaces: &[Namespace],
    team_label: &str,
    prices: &Prices,
    now: DateTime<Utc>,
) -> Vec<Line> {
    let mut lines = Vec::new();
    for ns in namespaces {
        let empty = BTreeMap::new();
        let ann = ns.metadata.annotations.as_ref().unwrap_or(&empty);
        let r = Recorded::parse(ann);
        let team = ns.labels().get(team_label).cloned().unwrap_or_default();
        let value = |saved: Option<Saved>, asleep_since: Option<DateTime<Utc>>| {
            saved.map(|s| savings::value(&s, asleep_since.unwrap_or(s.at), now, prices).cost)
        };
        if let Some(totals) = r.observed {
            let asleep_since = (r.observed_state == Some(State::Asleep))
                .then_some(r.observed_since)
                .flatten();
            lines.push(Line {
                namespace: ns.name_any(),
                team: team.clone(),
                mode: Mode::Observe,
                hours_asleep: Some(totals.asleep_until(asleep_since, now) / 3600.0),
                money: Some(value(r.observed_saved, asleep_since).unwrap_or(0.0)),
                wakes: Some(totals.wakes as f64),
            });
        }
        if ann.contains_key(STATE) {
            let asleep_since = (r.state == State::Asleep).then_some(r.since).flatten();
            lines.push(Line {
                namespace: ns.name_any(),
                team,
                mode: Mode::Enabled,
                hours_asleep: None,
                money: Some(value(r.saved, asleep_since).unwrap_or(0.0)),
                wakes: None,
            });
        }
    }
    lines
}

/// A namespace marked abandoned, as recorded on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Abandoned {
    pub namespace: String,
    pub team: String,
    pub since: DateTime<Utc>,
    /// When it is to be deleted (`siesta.dev/delete-after`), if announced.
    pub deletion: crate::lifecycle::Scheduled,
}

/// The abandoned namespaces among these, by team and name.
pub fn abandoned(namespaces: &[Namespace], team_label: &str) -> Vec<Abandoned> {
    let mut out: Vec<Abandoned> = namespaces
        .iter()
        .filter_map(|ns| {
            let since = ns
                .annotations()
                .get(crate::annotations::ABANDONED_SINCE)
                .and_then(|s| crate::model::parse_instant(s).ok())?;
            Some(Abandoned {
                namespace: ns.name_any(),
                team: ns.labels().get(team_label).cloned().unwrap_or_default(),
                since,
                deletion: crate::lifecycle::Scheduled::parse(
                    ns.labels()
                        .get(crate::annotations::DELETE_AFTER)
                        .map(String::as_str),
                ),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.team, &a.namespace).cmp(&(&b.team, &b.namespace)));
    out
}

/// The abandoned namespaces' table, or nothing when there are none.
pub fn render_abandoned(abandoned: &[Abandoned]) -> String {
    use crate::lifecycle::Scheduled;
    if abandoned.is_empty() {
        return String::new();
    }
    let rows: Vec<[String; 4]> = abandoned
        .iter()
        .map(|a| {
            [
                if a.team.is_empty() {
                    "-".into()
                } else {
                    a.team.clone()
                },
                a.namespace.clone(),
                crate::model::format_instant(a.since),
                match a.deletion {
                    Scheduled::At(at) => crate::model::format_instant(at),
                    Scheduled::None => "-".into(),
                    Scheduled::Unreadable => "unreadable label".into(),
                },
            ]
        })
        .collect();
    format!(
        "\nAbandoned (asleep without counted activity for their policy's abandonAfter):\n{}",
        crate::status::table(
            &["TEAM", "NAMESPACE", "ABANDONED SINCE", "DELETED AT"],
            &rows
        )
    )
}

/// Where observe mode's counting began on these namespaces, the earliest.
pub fn observed_from(namespaces: &[Namespace]) -> Option<DateTime<Utc>> {
    namespaces
        .iter()
        .filter_map(|ns| {
            let ann = ns.metadata.annotations.as_ref()?;
            ObservedTotals::parse(ann.get(crate::annotations::OBSERVED)?).map(|t| t.from)
        })
        .min()
}

/// The PromQL for each figure over `window`, by namespace: (hours, money, wakes).
pub fn queries(mode: Mode, window: Duration) -> [String; 3] {
    let w = crate::duration::format(window);
    let (asleep, cost, wakes) = match mode {
        Mode::Observe => (
            "siesta_observed_asleep",
            "siesta_potential_saved_cost_total",
            "siesta_observed_wakes_total",
        ),
        Mode::Enabled => (
            "siesta_namespace_asleep",
            "siesta_saved_cost_total",
            "siesta_wakes_total",
        ),
    };
    [
        // one-minute steps: each step asleep is a minute asleep
        format!("sum by (namespace) (sum_over_time({asleep}[{w}:1m])) / 60"),
        format!("sum by (namespace) (increase({cost}[{w}]))"),
        format!("sum by (namespace) (increase({wakes}[{w}]))"),
    ]
}

/// Lines from Prometheus's answers to [`queries`] (`namespace → value` each),
/// for the namespaces known to the cluster.
pub fn from_prometheus(
    mode: Mode,
    answers: &[BTreeMap<String, f64>; 3],
    teams: &BTreeMap<String, String>,
) -> Vec<Line> {
    let mut names: Vec<&String> = answers.iter().flat_map(|a| a.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|ns| teams.contains_key(*ns))
        .map(|ns| Line {
            namespace: ns.clone(),
            team: teams[ns].clone(),
            mode,
            hours_asleep: Some(answers[0].get(ns).copied().unwrap_or(0.0)),
            money: Some(answers[1].get(ns).copied().unwrap_or(0.0)),
            wakes: Some(answers[2].get(ns).copied().unwrap_or(0.0).round()),
        })
        .collect()
}

/// The table: a line per namespace, then a subtotal per team (with more than
/// one namespace line), then the source of the figures.
pub fn render(lines: &[Line], currency: &str, source: &str) -> String {
    let mut lines = lines.to_vec();
    lines.sort_by(|a, b| (&a.team, &a.namespace, a.mode).cmp(&(&b.team, &b.namespace, b.mode)));
    let figure = |v: Option<f64>, decimals: usize| {
        v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
    };
    let money_header = format!("MONEY ({currency})");
    let header = [
        "TEAM",
        "NAMESPACE",
        "MODE",
        "HOURS ASLEEP",
        money_header.as_str(),
        "WAKES",
    ];
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let team = lines[i].team.clone();
        let start = i;
        while i < lines.len() && lines[i].team == team {
            let l = &lines[i];
            rows.push([
                if team.is_empty() {
                    "-".into()
                } else {
                    team.clone()
                },
                l.namespace.clone(),
                l.mode.as_str().into(),
                figure(l.hours_asleep, 2),
                figure(l.money, 4),
                figure(l.wakes, 0),
            ]);
            i += 1;
        }
        let group = &lines[start..i];
        for mode in [Mode::Observe, Mode::Enabled] {
            let of: Vec<&Line> = group.iter().filter(|l| l.mode == mode).collect();
            if of.len() > 1 && !team.is_empty() {
                let sum = |f: fn(&Line) -> Option<f64>| -> Option<f64> {
                    of.iter().map(|l| f(l)).sum::<Option<f64>>()
                };
                rows.push([
                    team.clone(),
                    "(team total)".into(),
                    mode.as_str().into(),
                    figure(sum(|l| l.hours_asleep), 2),
                    figure(sum(|l| l.money), 4),
                    figure(sum(|l| l.wakes), 0),
                ]);
            }
        }
    }
    let mut out = crate::status::table(&header, &rows);
    out.push_str(&format!("\n{source}\n"));
    out
}

/// Percent-encode a query parameter value (RFC 3986 unreserved kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An instant-query answer (`{"data":{"result":[{"metric":{"namespace":…},"value":[t,"v"]}]}}`)
/// as `namespace → value`; an error answer is an error with Prometheus's words.
pub fn parse_answer(body: &[u8]) -> Result<BTreeMap<String, f64>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a Prometheus answer: {e}"))?;
    if v["status"] != "success" {
        return Err(format!(
            "Prometheus refused the query: {}",
            v["error"].as_str().unwrap_or("no reason given")
        ));
    }
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array().into_iter().flatten() {
        if let (Some(ns), Some(value)) = (
            r["metric"]["namespace"].as_str(),
            r["value"][1].as_str().and_then(|s| s.parse::<f64>().ok()),
        ) {
            out.insert(ns.to_string(), if value.is_finite() { value } else { 0.0 });
        }
    }
    Ok(out)
}

/// What `siesta report` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    pub since: Duration,
    /// Prometheus's base URL (`http://host:9090`); `None`: the namespaces' records.
    pub prometheus: Option<String>,
    pub team_label: String,
    pub prices: Prices,
}

/// Read the cluster (and Prometheus), print the table.
pub async fn run(target: &crate::client::Target, opts: &Options) -> crate::Result<()> {
    use kube::api::{Api, ListParams};
    let client = crate::client::to(target, &Default::default(), crate::CLI_USER_AGENT).await?;
    let all = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await?
        .items;
    let now = Utc::now();
    let (lines, source) = match &opts.prometheus {
        None => {
            let from = observed_from(&all).map_or_else(|| "-".into(), crate::model::format_instant);
            (
                from_namespaces(&all, &opts.team_label, &opts.prices, now),
                format!(
                    "Figures: the totals recorded on each namespace (siesta.dev/observed, siesta.dev/observed-saved, siesta.dev/saved), observe mode's since it began (earliest {from}), not the last {}; enabled namespaces record money, not hours or wakes. Pass --prometheus URL for the window.",
                    crate::duration::format(opts.since)
                ),
            )
        }
        Some(url) => {
            let teams: BTreeMap<String, String> = all
                .iter()
                .map(|n| {
                    let team = n
                        .labels()
                        .get(&opts.team_label)
                        .cloned()
                        .unwrap_or_default();
                    (n.name_any(), team)
                })
                .collect();
            let mut lines = Vec::new();
            for mode in [Mode::Observe, Mode::Enabled] {
                let [a, b, c] = queries(mode, opts.since);
                let answers = [
                    query(url, &a).await?,
                    query(url, &b).await?,
                    query(url, &c).await?,
                ];
                lines.extend(from_prometheus(mode, &answers, &teams));
            }
            (
                lines,
                format!(
                    "Figures: Siesta's counters in Prometheus at {url} over the last {} (as far back as it keeps them; hours at one-minute resolution; money at the prices in force when it accrued).",
                    crate::duration::format(opts.since)
                ),
            )
        }
    };
    print!("{}", render(&lines, &opts.prices.currency, &source));
    print!("{}", render_abandoned(&abandoned(&all, &opts.team_label)));
    Ok(())
}

/// One instant query against Prometheus's HTTP API.
async fn query(base: &str, expr: &str) -> crate::Result<BTreeMap<String, f64>> {
    use http_body_util::BodyExt as _;
    let url = format!(
        "{}/api/v1/query?query={}",
        base.trim_end_matches('/'),
        encode(expr)
    );
    let uri: http::Uri = url
        .parse()
        .map_err(|e| crate::Error::Other(format!("--prometheus {base}: {e}")))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let fail = |e: String| crate::Error::Other(format!("Prometheus at {base}: {e}"));
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .map_err(|_| fail("no answer in 30 s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(e.to_string()))?
        .to_bytes();
    parse_answer(&body).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        crate::model::parse_instant(s).unwrap()
    }

    fn ns(name: &str, team: &str, annotations: &[(&str, String)]) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some([("team".to_string(), team.to_string())].into());
        n.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
        n
    }

    #[test]
    fn an_observed_namespace_reports_its_would_be_hours_money_and_wakes() {
        let prices = Prices::default();
        let now = t("2026-12-02T12:00:00Z");
        // asleep (would be) since 10:00 at 2 cores, after 1 h of earlier sleeps
        let saved = Saved {
            cpu_rate: 2.0,
            ..Saved::zero(t("2026-12-02T10:00:00Z"))
        };
        let totals = ObservedTotals {
            sleeps: 2,
            wakes: 1,
            asleep_seconds: 3600.0,
            from: t("2026-12-01T00:00:00Z"),
        };
        let n = ns(
            "team-a",
            "payments",
            &[
                (crate::annotations::OBSERVED_STATE, "asleep".into()),
                (
                    crate::annotations::OBSERVED_SINCE,
                    "2026-12-02T10:00:00Z".into(),
                ),
                (crate::annotations::OBSERVED, totals.format()),
                (crate::annotations::OBSERVED_SAVED, saved.format()),
            ],
        );
        let lines = from_namespaces(std::slice::from_ref(&n), "team", &prices, now);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!((l.mode, l.team.as_str()), (Mode::Observe, "payments"));
        assert_eq!(l.hours_asleep, Some(3.0));
        assert_eq!(l.wakes, Some(1.0));
        let want = 2.0 * 2.0 * prices.cpu_core_hour;
        assert!((l.money.unwrap() - want).abs() < 1e-9, "{l:?}");
        assert_eq!(observed_from(&[n]), Some(totals.from));
        let table = render(&lines, "USD", "source");
        assert!(table.contains("payments  team-a"), "{table}");
        assert!(table.lines().nth(1).unwrap().contains("3.00"), "{table}");
    }

    #[test]
    fn abandoned_namespaces_are_listed_with_since_and_the_deletion_when_announced() {
        use crate::annotations::{ABANDONED_SINCE, DELETE_AFTER};
        use crate::lifecycle::Scheduled;
        let mut doomed = ns(
            "preview-1",
            "web",
            &[(ABANDONED_SINCE, "2026-11-01T00:00:00Z".into())],
        );
        doomed
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(DELETE_AFTER.into(), "1797422400".into());
        let marked = ns(
            "preview-0",
            "web",
            &[(ABANDONED_SINCE, "2026-10-01T00:00:00Z".into())],
        );
        let active = ns("team-a", "web", &[(STATE, "awake".into())]);
        let found = abandoned(&[doomed, active, marked], "team");
        assert_eq!(
            found
                .iter()
                .map(|a| (a.namespace.as_str(), a.deletion))
                .collect::<Vec<_>>(),
            [
                ("preview-0", Scheduled::None),
                ("preview-1", Scheduled::At(t("2026-12-16T12:00:00Z")))
            ]
        );
        let table = render_abandoned(&found);
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.contains(name))
                .unwrap_or_else(|| panic!("no {name} in {table}"))
                .to_string()
        };
        assert!(
            table.contains("ABANDONED SINCE") && table.contains("DELETED AT"),
            "{table}"
        );
        assert!(
            row("preview-1").contains("2026-11-01T00:00:00Z")
                && row("preview-1").ends_with("2026-12-16T12:00:00Z"),
            "{table}"
        );
        assert!(row("preview-0").ends_with('-'), "{table}");
        assert_eq!(render_abandoned(&[]), "");
    }

    #[test]
    fn teams_get_a_total_and_figures_a_source_lacks_show_as_a_dash() {
        let line = |ns: &str, money| Line {
            namespace: ns.into(),
            team: "web".into(),
            mode: Mode::Enabled,
            hours_asleep: None,
            money: Some(money),
            wakes: None,
        };
        let table = render(&[line("a", 1.0), line("b", 2.5)], "EUR", "from X");
        let total = table
            .lines()
            .find(|l| l.contains("(team total)"))
            .expect("a team total");
        assert!(total.contains("3.5000") && total.contains('-'), "{table}");
        assert!(table.trim_end().ends_with("from X"));
    }

    #[test]
    fn prometheus_answers_become_lines_for_known_namespaces_only() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"namespace":"a"},"value":[1,"2.5"]},
            {"metric":{"namespace":"gone"},"value":[1,"1"]}]}}"#;
        let hours = parse_answer(body).unwrap();
        let teams: BTreeMap<String, String> = [("a".to_string(), "t".to_string())].into();
        let lines = from_prometheus(
            Mode::Observe,
            &[hours, BTreeMap::new(), BTreeMap::new()],
            &teams,
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].hours_asleep, Some(2.5));
        assert_eq!(lines[0].wakes, Some(0.0));
        let refused = br#"{"status":"error","error":"parse error"}"#;
        assert!(parse_answer(refused).unwrap_err().contains("parse error"));
        assert_eq!(encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
        assert!(queries(Mode::Observe, Duration::from_secs(7 * 86400))[0].contains("[7d:1m]"));
    }
}
