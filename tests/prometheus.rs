//! Siesta's /metrics as Prometheus sees it: the output passes `promtool check
//! metrics`, and a real Prometheus (the Debian package) scraping a controller
//! on loopback answers the dashboard's expressions with the savings a sleeping
//! namespace of known requests should accrue.
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

const GROUP: &str = "prometheus";
/// This binary's own leader Lease namespace, so that controllers of other
/// test binaries running at the same time do not make it wait.
const LEADER_NAMESPACE: &str = "siesta-test-prometheus";
/// OpenCost's default on-demand prices, Siesta's defaults.
const CPU_CORE_HOUR: f64 = 0.031611;
const MEMORY_GIB_HOUR: f64 = 0.004237;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// One controller for this test binary; savings advance every second so that
/// a rate over 30 s has 30 steps.
fn controller() -> &'static Mutex<Siesta> {
    static C: OnceLock<Mutex<Siesta>> = OnceLock::new();
    C.get_or_init(|| {
        Mutex::new(Siesta::controller(
            SIESTA,
            GROUP,
            &[
                "--savings-interval",
                "1s",
                "--leader-election-namespace",
                LEADER_NAMESPACE,
            ],
        ))
    })
}

fn admin_port() -> u16 {
    controller().lock().unwrap_or_else(|p| p.into_inner()).admin
}

async fn setup() -> kube::Client {
    let c = client().await;
    let ns = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::core::ObjectMeta {
            name: Some(LEADER_NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    // exists already when another test of this binary created it
    let _ = kube::Api::all(c.clone())
        .create(&kube::api::PostParams::default(), &ns)
        .await;
    wait_ready(admin_port()).await;
    c
}

/// A namespace put to sleep at once, with two Deployments of 2 x (500m, 256Mi):
/// 2 cores and 1 GiB requested while awake.
async fn sleeping_namespace(c: &kube::Client, prefix: &str) -> String {
    let ns = namespace(
        c,
        prefix,
        GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "off"),
        ],
    )
    .await;
    for name in ["web", "api"] {
        let w = workload(name).replicas(2).requests("500m", "256Mi");
        create(c, &ns, &w.deployment()).await;
    }
    annotate_namespace(c, &ns, json!({"siesta.dev/action": "sleep"})).await;
    state_is(c, &ns, "asleep", Duration::from_secs(20)).await;
    ns
}

#[tokio::test(flavor = "multi_thread")]
async fn real_metrics_output_passes_promtool_check_metrics() {
    let c = setup().await;
    let asleep = sleeping_namespace(&c, "prom-lint-asleep").await;
    // a second namespace sleeps and is woken (its pods need not be ready yet:
    // the wake histogram exists at 0 from the start)
    let woken = sleeping_namespace(&c, "prom-lint-woken").await;
    annotate_namespace(&c, &woken, json!({"siesta.dev/action": "wake"})).await;

    let url = format!("http://127.0.0.1:{}/metrics", admin_port());
    let want = [
        format!("siesta_namespace_asleep{{namespace=\"{asleep}\"}} 1"),
        format!("siesta_namespace_waking{{namespace=\"{asleep}\"}} 0"),
        format!("siesta_saved_cost_total{{currency=\"USD\",namespace=\"{asleep}\"}}"),
        format!("siesta_saved_cpu_core_seconds_total{{namespace=\"{asleep}\"}}"),
        format!("siesta_saved_memory_byte_seconds_total{{namespace=\"{asleep}\"}}"),
        format!("siesta_replicas_asleep{{kind=\"Deployment\",namespace=\"{asleep}\"}} 4"),
        format!("siesta_workloads_without_requests{{namespace=\"{asleep}\"}} 0"),
        format!("siesta_sleeps_total{{namespace=\"{asleep}\",reason=\"manual\"}} 1"),
        format!("siesta_wakes_total{{namespace=\"{woken}\",trigger=\"manual\"}} 1"),
        format!("siesta_wake_duration_seconds_count{{namespace=\"{woken}\"}} "),
        "siesta_leader 1".to_string(),
    ];
    let text = std::sync::Arc::new(Mutex::new(String::new()));
    eventually(
        "every controller family has samples",
        Duration::from_secs(20),
        || {
            let (url, want, text) = (url.clone(), want.clone(), text.clone());
            async move {
                let body = http_get(&url).await.unwrap_or_default();
                let all = want.iter().all(|w| body.contains(w.as_str()));
                *text.lock().unwrap_or_else(|p| p.into_inner()) = body;
                all
            }
        },
    )
    .await;
    let text = text.lock().unwrap_or_else(|p| p.into_inner()).clone();

    let out = prom::promtool(&["check", "metrics"], Some(&text));
    assert!(
        out.status.success(),
        "promtool check metrics: {}\nmetrics:\n{text}",
        prom::describe(&out)
    );
}

/// A Prometheus on loopback scraping the given admin ports every second,
/// storing into a temporary directory. Dropping it stops it; if the test
/// process dies instead, the shell wrapper sees its standard input close and
/// stops Prometheus too.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[u16]) -> Prometheus {
        let dir = tempfile::tempdir().expect("temporary directory");
        let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: siesta-controller\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" "$@" & p=$!; read -r _; kill "$p"; wait "$p""#)
            .arg(prom::tool("prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::piped())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// GET an API path with form parameters (curl encodes them): the JSON answer.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "10", "-G"]);
        for (k, v) in params {
            cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        let out = cmd
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .expect("run curl (Debian package curl)");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// An instant query: the whole answer.
    fn query(&self, expr: &str) -> Value {
        self.api("/api/v1/query", &[("query", expr)])
    }

    /// The value of a one-element instant vector, if that is the answer.
    fn scalar(&self, expr: &str) -> Option<f64> {
        let v = self.query(expr);
        let result = v["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Wait until the query API answers.
    async fn wait_ready(&self) {
        eventually(
            "prometheus answers queries",
            Duration::from_secs(20),
            || {
                let up = self.scalar("vector(1)") == Some(1.0);
                async move { up }
            },
        )
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // closing its standard input makes the wrapper stop Prometheus
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The first expression of the dashboard panel with this title, for `namespace`.
fn panel_expr(title: &str, namespace: &str) -> String {
    let d = prom::dashboard();
    let expr = d["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["title"] == title)
        .and_then(|p| p["targets"][0]["expr"].as_str())
        .unwrap_or_else(|| panic!("the dashboard has no panel {title:?}"));
    prom::substitute(expr, namespace)
}

fn assert_near(what: &str, got: Option<f64>, want: f64) {
    let got = got.unwrap_or_else(|| panic!("{what}: no single value"));
    let error = (got - want).abs() / want;
    eprintln!(
        "{what}: {got} (expected {want}, off by {:.2}%)",
        error * 100.0
    );
    assert!(
        error < 0.10,
        "{what}: got {got}, want {want} within 10% (off by {:.1}%)",
        error * 100.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_sees_a_sleeping_namespace_save_at_its_requested_rate() {
    let started = tokio::time::Instant::now();
    let c = setup().await;
    let prometheus = Prometheus::start(&[admin_port()]);
    prometheus.wait_ready().await;
    let ns = sleeping_namespace(&c, "prom-rate").await;

    // the dashboard's "Namespaces asleep now", for this namespace
    let asleep = panel_expr("Namespaces asleep now", &ns);
    eventually(
        "prometheus sees the namespace asleep",
        Duration::from_secs(20),
        || {
            let got = prometheus.scalar(&asleep);
            async move { got == Some(1.0) }
        },
    )
    .await;

    // Savings began more than a full 30 s window ago, so that no rate below
    // extrapolates over the series' start (which would read a few % low).
    let samples =
        format!("count_over_time(siesta_saved_cpu_core_seconds_total{{namespace=\"{ns}\"}}[40s])");
    eventually("35 s of savings samples", Duration::from_secs(50), || {
        let n = prometheus.scalar(&samples).unwrap_or(0.0);
        async move { n >= 35.0 }
    })
    .await;

    let cores = panel_expr("CPU cores not requested (asleep)", &ns);
    assert_near("CPU cores saved per second", prometheus.scalar(&cores), 2.0);
    let memory = panel_expr("Memory not requested (asleep)", &ns);
    assert_near("bytes saved per second", prometheus.scalar(&memory), GIB);
    let money = panel_expr("Money saved per hour, by namespace", &ns);
    assert_near(
        "money saved per hour",
        prometheus.scalar(&money),
        2.0 * CPU_CORE_HOUR + 1.0 * MEMORY_GIB_HOUR,
    );
    let per_second = format!("rate(siesta_saved_cost_total{{namespace=\"{ns}\"}}[30s])");
    assert_near(
        "rate(siesta_saved_cost_total[30s])",
        prometheus.scalar(&per_second),
        (2.0 * CPU_CORE_HOUR + MEMORY_GIB_HOUR) / 3600.0,
    );

    // every expression of the dashboard and the alerts is valid PromQL that
    // Prometheus evaluates against Siesta's series
    for (place, expr) in prom::dashboard_exprs()
        .into_iter()
        .chain(prom::rule_exprs())
    {
        let q = prom::substitute(&expr, &ns);
        let answer = prometheus.query(&q);
        assert_eq!(
            answer["status"], "success",
            "{place}: Prometheus rejects {q}: {answer}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_namespace_stops_saving_and_leaves_no_series() {
    let c = setup().await;
    let ns = sleeping_namespace(&c, "prom-deleted").await;
    let url = format!("http://127.0.0.1:{}/metrics", admin_port());
    let label = format!("namespace=\"{ns}\"");
    eventually("savings published", Duration::from_secs(20), || {
        let (url, want) = (
            url.clone(),
            format!("siesta_saved_cost_total{{currency=\"USD\",{label}}}"),
        );
        async move { http_get(&url).await.unwrap_or_default().contains(&want) }
    })
    .await;
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
        .delete(&ns, &Default::default())
        .await
        .expect("delete namespace");
    eventually(
        "no series of the deleted namespace",
        Duration::from_secs(60),
        || {
            let (url, label) = (url.clone(), label.clone());
            async move {
                let text = http_get(&url).await.unwrap_or_default();
                !text.is_empty() && !text.contains(&label)
            }
        },
    )
    .await;
}

/// The savings counters are totals written on the namespace
/// (`siesta.dev/saved`) and the clock, so a controller killed mid-sleep and
/// started again continues them: Prometheus sees no reset, and the last value
/// is the requested CPU times the time asleep, over a completed sleep and the
/// current one, counted once.
#[tokio::test(flavor = "multi_thread")]
async fn savings_continue_across_a_controller_restart_without_a_reset() {
    const RESTART_GROUP: &str = "prometheus-restart";
    let c = setup().await;
    let admin = free_port();
    let start = || {
        Siesta::controller_at(
            SIESTA,
            RESTART_GROUP,
            admin,
            &["--savings-interval", "1s", "--leader-lease-duration", "4s"],
            &[],
        )
    };
    let mut first = start();
    wait_ready(admin).await;
    let prometheus = Prometheus::start(&[admin]);
    prometheus.wait_ready().await;
    let ns = namespace(
        &c,
        "prom-restart",
        RESTART_GROUP,
        &[
            ("siesta.dev/enabled", "true"),
            ("siesta.dev/idle-after", "off"),
        ],
    )
    .await;
    // 2 x 500m: 1 core while asleep.
    create(
        &c,
        &ns,
        &workload("web")
            .replicas(2)
            .requests("500m", "64Mi")
            .deployment(),
    )
    .await;
    let since = |c: kube::Client, ns: String| async move {
        let at = ns_annotation(&c, &ns, "siesta.dev/state-since")
            .await
            .expect("state-since");
        chrono::DateTime::parse_from_rfc3339(&at).expect("an instant")
    };

    // A first, completed sleep of about 8 s.
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "sleep"})).await;
    state_is(&c, &ns, "asleep", Duration::from_secs(20)).await;
    let slept = since(c.clone(), ns.clone()).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "wake"})).await;
    state_is(&c, &ns, "awake", Duration::from_secs(60)).await;
    // When the sleep ended: the instant the wake wrote its totals at.
    let saved = ns_annotation(&c, &ns, "siesta.dev/saved")
        .await
        .expect("the wake wrote siesta.dev/saved");
    let woke = saved
        .split(',')
        .find_map(|kv| kv.strip_prefix("at="))
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).expect("an instant"))
        .expect("an at= field");

    // The second sleep, with the controller killed (no clean stop) in the middle.
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "sleep"})).await;
    state_is(&c, &ns, "asleep", Duration::from_secs(20)).await;
    let slept_again = since(c.clone(), ns.clone()).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    first.kill();
    let _second = start();
    wait_ready(admin).await;
    tokio::time::sleep(Duration::from_secs(12)).await;

    let series = format!("siesta_saved_cpu_core_seconds_total{{namespace=\"{ns}\"}}");
    assert_eq!(
        prometheus.scalar(&format!("resets({series}[5m])")),
        Some(0.0),
        "the counter never went back"
    );
    let last = prometheus.query(&format!("last_over_time({series}[5m])"));
    let sample = &last["data"]["result"][0]["value"];
    let (at, value) = (
        sample[0].as_f64().expect("a sample time"),
        sample[1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .expect("a value"),
    );
    let asleep = (woke - slept).num_milliseconds() as f64 / 1000.0 + at
        - slept_again.timestamp_millis() as f64 / 1000.0;
    eprintln!("saved {value} core-seconds after {asleep:.1} s asleep at 1 core");
    assert!(
        (value - asleep).abs() < 3.0,
        "saved {value} core-seconds, asleep {asleep:.1} s at 1 core: a restart must neither \
         count the sleep twice nor lose it"
    );
    // And increase() over the whole run counts it once as well.
    let increase = prometheus
        .scalar(&format!("increase({series}[5m])"))
        .expect("an increase");
    assert!(
        increase <= value * 1.05 + 1.0,
        "increase() {increase} counts more than was saved ({value})"
    );
}

/// Observe mode end to end: an observed namespace idle past `idle-after`
/// keeps every replica, counts one would-be sleep with one `WouldSleep`
/// Event, and its potential savings grow at its pods' requested rate as a
/// real Prometheus sees them; `siesta report` prints them from the
/// namespace's record and from Prometheus; a would-be wake is counted.
#[tokio::test(flavor = "multi_thread")]
async fn an_observed_namespace_keeps_its_replicas_and_counts_what_sleep_would_save() {
    let c = setup().await;
    let prometheus = Prometheus::start(&[admin_port()]);
    prometheus.wait_ready().await;
    let ns = namespace(
        &c,
        "prom-observe",
        GROUP,
        &[
            ("siesta.dev/enabled", "observe"),
            ("siesta.dev/idle-after", "3s"),
        ],
    )
    .await;
    kubectl(&["label", "ns", &ns, "team=observers"], None);
    // 2 x (500m, 256Mi) twice: 2 cores and 1 GiB would stop.
    for name in ["web", "api"] {
        let w = workload(name).replicas(2).requests("500m", "256Mi");
        create(&c, &ns, &w.deployment()).await;
    }
    eventually("a would-be sleep", Duration::from_secs(30), || {
        let (c, ns) = (c.clone(), ns.clone());
        async move {
            ns_annotation(&c, &ns, "siesta.dev/observed-state")
                .await
                .as_deref()
                == Some("asleep")
        }
    })
    .await;
    assert_eq!(ns_annotation(&c, &ns, "siesta.dev/state").await, None);
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/observed-reason")
            .await
            .as_deref(),
        Some("idle")
    );

    // The rate over 20 s of samples, all of them inside the would-be sleep.
    let series = format!("siesta_potential_saved_cpu_core_seconds_total{{namespace=\"{ns}\"}}");
    eventually("25 s of potential savings", Duration::from_secs(45), || {
        let n = prometheus
            .scalar(&format!("count_over_time({series}[30s])"))
            .unwrap_or(0.0);
        async move { n >= 25.0 }
    })
    .await;
    assert_near(
        "potential CPU cores saved per second",
        prometheus.scalar(&format!("rate({series}[20s])")),
        2.0,
    );
    let memory = format!(
        "rate(siesta_potential_saved_memory_byte_seconds_total{{namespace=\"{ns}\"}}[20s])"
    );
    assert_near(
        "potential bytes saved per second",
        prometheus.scalar(&memory),
        GIB,
    );
    assert_eq!(
        prometheus.scalar(&format!("siesta_observed_asleep{{namespace=\"{ns}\"}}")),
        Some(1.0)
    );
    assert_eq!(
        prometheus.scalar(&format!(
            "siesta_observed_sleeps_total{{namespace=\"{ns}\",reason=\"idle\"}}"
        )),
        Some(1.0)
    );
    // Nothing was scaled, and the would-be sleep was announced once.
    for name in ["web", "api"] {
        assert_eq!(
            replicas_of::<k8s_openapi::api::apps::v1::Deployment>(&c, &ns, name).await,
            Some(2)
        );
    }
    let would: Vec<_> = events_for(&c, &ns, &ns)
        .await
        .into_iter()
        .filter(|(reason, _)| reason == "WouldSleep")
        .collect();
    assert_eq!(would.len(), 1, "{would:?}");
    assert!(would[0].1.contains("2 CPU cores"), "{would:?}");

    // The report, from the namespace's record and from Prometheus.
    let report = |extra: &[&str]| {
        let out = Command::new(SIESTA)
            .arg("report")
            .args(extra)
            .env("KUBECONFIG", kubeconfig())
            .output()
            .expect("run siesta report");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let line_of = |table: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(ns.as_str()))
            .unwrap_or_else(|| panic!("no line for {ns} in\n{table}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let recorded = report(&[]);
    let line = line_of(&recorded);
    assert_eq!(line[0], "observers");
    assert_eq!(line[2], "observe");
    // about 30 s asleep: 0.01 h, at 2 cores and 1 GiB
    let hours: f64 = line[3].parse().expect("hours");
    assert!(hours > 0.0 && hours < 0.1, "{recorded}");
    let money: f64 = line[4].parse().expect("money");
    assert!(money > 0.0, "{recorded}");
    assert!(
        recorded.contains("recorded on each namespace"),
        "{recorded}"
    );
    let url = format!("http://127.0.0.1:{}", prometheus.port);
    let windowed = report(&["--prometheus", &url, "--since", "1h"]);
    let line = line_of(&windowed);
    // hours at one-minute resolution: under a minute may read 0
    let hours: f64 = line[3].parse().expect("hours");
    assert!((0.0..0.1).contains(&hours), "{windowed}");
    let money: f64 = line[4].parse().expect("money");
    assert!(money > 0.0, "{windowed}");
    assert!(windowed.contains("in Prometheus"), "{windowed}");

    // A would-be wake: counted, and the would-be state is awake again.
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "wake"})).await;
    eventually("a would-be wake", Duration::from_secs(20), || {
        let (c, ns) = (c.clone(), ns.clone());
        async move {
            ns_annotation(&c, &ns, "siesta.dev/observed-state")
                .await
                .as_deref()
                == Some("awake")
        }
    })
    .await;
    let metrics = http_get(&format!("http://127.0.0.1:{}/metrics", admin_port()))
        .await
        .unwrap_or_default();
    let woke = format!("siesta_observed_wakes_total{{namespace=\"{ns}\",trigger=\"manual\"}} 1");
    assert!(metrics.contains(&woke), "no {woke}");
    let line = line_of(&report(&[]));
    assert_eq!(line[5], "1", "{line:?}");
    remove_namespace(&c, &ns).await;
}
