//! What ships for Prometheus and Grafana (deploy/prometheus, deploy/grafana)
//! is valid and matches Siesta's metrics. No cluster needed; promtool (the
//! Debian package `prometheus`) is.
use siesta_test_kit::prom::{self, describe, promtool};

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let out = promtool(&["check", "rules", "deploy/prometheus/rules.yaml"], None);
    assert!(
        out.status.success(),
        "promtool check rules: {}",
        describe(&out)
    );
}

#[test]
fn every_alert_fires_and_stays_quiet_as_its_unit_tests_say() {
    let out = promtool(
        &["test", "rules", "deploy/prometheus/rules_test.yaml"],
        None,
    );
    assert!(
        out.status.success(),
        "promtool test rules: {}",
        describe(&out)
    );
    // every alert has a test case
    let tests = std::fs::read_to_string(prom::root().join("deploy/prometheus/rules_test.yaml"))
        .expect("read rules_test.yaml");
    for (rule, _) in prom::rule_exprs() {
        let alert = rule.trim_start_matches("rule ");
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "{alert} has no test case in rules_test.yaml"
        );
    }
}

#[test]
fn the_prometheusrule_is_built_from_the_rules_file() {
    let script = prom::root().join("deploy/prometheus/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("--check")
        .output()
        .expect("run deploy/prometheus/build.sh --check");
    assert!(out.status.success(), "{}", describe(&out));
    // and it means the same thing, whatever the text
    let read = |p: &str| -> serde_yaml_ng::Value {
        let text = std::fs::read_to_string(prom::root().join(p)).expect("read");
        serde_yaml_ng::from_str(&text).expect("YAML")
    };
    let rules = read("deploy/prometheus/rules.yaml");
    let object = read("deploy/prometheus/prometheusrule.yaml");
    assert_eq!(object["kind"], "PrometheusRule");
    assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(object["spec"], rules);
}

#[test]
fn the_service_monitors_scrape_the_admin_port_of_controller_and_proxy() {
    let text = std::fs::read_to_string(prom::root().join("deploy/prometheus/servicemonitor.yaml"))
        .expect("read servicemonitor.yaml");
    let mut components = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = serde_yaml_ng::Value::deserialize(doc).expect("YAML");
        assert_eq!(v["kind"], "ServiceMonitor");
        assert_eq!(v["metadata"]["namespace"], "siesta-system");
        let labels = &v["spec"]["selector"]["matchLabels"];
        assert_eq!(labels["app.kubernetes.io/name"], "siesta");
        assert_eq!(v["spec"]["endpoints"][0]["port"], "admin");
        assert_eq!(v["spec"]["endpoints"][0]["path"], "/metrics");
        components.push(
            labels["app.kubernetes.io/component"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    assert_eq!(components, ["controller", "proxy"]);
}

use serde::Deserialize;

/// A name in PromQL as the family it belongs to: histograms are queried
/// through their `_bucket`, `_sum` and `_count` series.
fn family_of(name: &str) -> Option<String> {
    let m = siesta::metrics::Metrics::new();
    if m.families().iter().any(|f| f == name) {
        return Some(name.to_string());
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|s| name.strip_suffix(s))
        .find(|base| m.histograms().iter().any(|f| f == base))
        .map(str::to_string)
}

#[test]
fn every_series_the_dashboard_and_the_alerts_query_is_a_siesta_family() {
    let mut queried = std::collections::BTreeSet::new();
    let exprs: Vec<_> = prom::dashboard_exprs()
        .into_iter()
        .chain(prom::rule_exprs())
        .collect();
    assert!(exprs.len() > 20, "too few expressions found: {exprs:?}");
    for (place, expr) in &exprs {
        for name in prom::siesta_names(expr) {
            let family = family_of(&name).unwrap_or_else(|| {
                panic!("{place} queries {name}, which Siesta does not export: {expr}")
            });
            queried.insert(family);
        }
    }
    // and the dashboard shows every family of DESIGN.md's table
    for family in siesta::metrics::DESIGN_FAMILIES {
        assert!(queried.contains(*family), "nothing queries {family}");
    }
}

#[test]
fn a_histogram_bucket_maps_to_its_family_and_a_typo_does_not() {
    assert_eq!(
        family_of("siesta_wake_duration_seconds_bucket").as_deref(),
        Some("siesta_wake_duration_seconds")
    );
    assert_eq!(family_of("siesta_namespace_aslep"), None);
    assert_eq!(family_of("siesta_errors_total_count"), None);
    assert_eq!(
        prom::siesta_names("sum(rate(siesta_errors_total[5m])) / kube_x_siesta_y"),
        ["siesta_errors_total"]
    );
}

#[test]
fn the_dashboard_uses_its_datasource_variable_and_filters_by_namespace() {
    let d = prom::dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap_or(0) >= 36);
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(vars, ["datasource", "team", "namespace"]);
    let mut ids = std::collections::HashSet::new();
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64()),
            "duplicate panel id in {title}"
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {title}");
        for t in p["targets"].as_array().expect("targets") {
            let e = t["expr"].as_str().unwrap_or_default();
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {title}");
            // families with a namespace label honour the namespace variable
            let namespaced = ![
                "siesta_errors_total",
                "siesta_audit_events_total",
                "siesta_leader",
            ]
            .iter()
            .any(|f| e.contains(f));
            if namespaced {
                assert!(
                    e.contains("namespace=~\"$namespace\""),
                    "panel {title} ignores $namespace: {e}"
                );
            }
        }
    }
}

#[test]
fn every_family_is_documented_in_docs_metrics_md() {
    let doc = std::fs::read_to_string(prom::root().join("docs/metrics.md"))
        .expect("read docs/metrics.md");
    for family in siesta::metrics::Metrics::new().families() {
        assert!(
            doc.contains(&format!("| `{family}` |")),
            "docs/metrics.md has no table row for {family}"
        );
    }
}
