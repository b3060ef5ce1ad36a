//! Prometheus tooling for tests/observability.rs and tests/prometheus.rs:
//! where promtool and prometheus are, and the PromQL expressions of the
//! dashboard and the rules.
use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root (the same as [`crate::root`]).
pub use crate::root;

/// A binary of the Debian package `prometheus` (promtool, prometheus).
pub fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` not found: install the Debian package `prometheus` (`make deps` does), \
             then stop the service it starts (`systemctl disable --now prometheus`)"
        )
    })
}

/// Run promtool with these arguments; the output, or a failure naming it.
pub fn promtool(args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(tool("promtool"));
    cmd.args(args)
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("start promtool");
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .expect("write to promtool");
    }
    child.wait_with_output().expect("promtool output")
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn dashboard() -> serde_json::Value {
    let path = root().join("deploy/grafana/siesta.json");
    let text = std::fs::read_to_string(&path).expect("read deploy/grafana/siesta.json");
    serde_json::from_str(&text).expect("deploy/grafana/siesta.json is JSON")
}

/// Every PromQL expression of the dashboard: panel targets and variable
/// queries, as (where, expression).
pub fn dashboard_exprs() -> Vec<(String, String)> {
    let d = dashboard();
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                let title = p["title"].as_str().unwrap_or("?");
                out.push((format!("panel {title:?}"), e.to_string()));
            }
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"].as_str().unwrap_or_default();
        let name = v["name"].as_str().unwrap_or("?");
        out.push((format!("variable {name}"), variable_expr(q)));
    }
    out
}

/// The PromQL inside a Grafana variable query: `label_values(EXPR, label)`,
/// `query_result(EXPR)`.
pub fn variable_expr(q: &str) -> String {
    if let Some(rest) = q.strip_prefix("query_result(") {
        return rest.strip_suffix(')').unwrap_or(rest).to_string();
    }
    if let Some(rest) = q.strip_prefix("label_values(") {
        let inner = rest.strip_suffix(')').unwrap_or(rest);
        return inner
            .rsplit_once(',')
            .map(|(e, _)| e.trim().to_string())
            .unwrap_or_else(|| inner.to_string());
    }
    q.to_string()
}

/// Every alert and recording rule expression of deploy/prometheus/rules.yaml.
pub fn rule_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/rules.yaml"))
        .expect("read deploy/prometheus/rules.yaml");
    let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("rules.yaml is YAML");
    let mut out = Vec::new();
    for g in y["groups"].as_sequence().into_iter().flatten() {
        for r in g["rules"].as_sequence().into_iter().flatten() {
            let name = r["alert"]
                .as_str()
                .or(r["record"].as_str())
                .unwrap_or("?")
                .to_string();
            if let Some(e) = r["expr"].as_str() {
                out.push((format!("rule {name}"), e.to_string()));
            }
        }
    }
    out
}

/// The `siesta_*` metric names an expression uses, as written.
pub fn siesta_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("siesta_") {
        let start = i + pos;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        };
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(expr.len(), |n| start + n);
        if boundary {
            names.push(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Fill in Grafana's variables so an expression can be sent to Prometheus.
pub fn substitute(expr: &str, namespace: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__range", "2m")
        .replace("$__interval", "15s")
        .replace("$namespace", namespace)
        .replace("$team", ".*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variable_query_gives_its_promql() {
        assert_eq!(
            variable_expr("label_values(siesta_namespace_state, namespace)"),
            "siesta_namespace_state"
        );
        assert_eq!(variable_expr("query_result(up == 1)"), "up == 1");
        assert_eq!(variable_expr("up"), "up");
    }

    #[test]
    fn metric_names_are_found_at_word_boundaries() {
        assert_eq!(
            siesta_names("sum(rate(siesta_errors_total[5m])) / kube_x_siesta_y + siesta:ratio"),
            ["siesta_errors_total"]
        );
    }

    #[test]
    fn the_dashboard_and_the_rules_have_expressions() {
        assert!(!dashboard_exprs().is_empty());
        assert!(!rule_exprs().is_empty());
    }
}
