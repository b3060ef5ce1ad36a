//! Faults: the controller SIGKILLed at random points during many sleep and wake
//! transitions, and leader failover. Every workload must end exactly at its
//! original count with no record left behind.
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use kube::Api;
use serde_json::json;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

/// A small deterministic generator; the seed is printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkilled_controller_never_loses_a_replica_count() {
    let c = client().await;
    let group = "faults-kill";
    let seed = std::env::var("SIESTA_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("fault seed: {seed} (set SIESTA_FAULT_SEED to replay)");
    let mut rng = Rng(seed);

    // 10 namespaces, each with Deployments, a StatefulSet and a CronJob.
    let mut expected: Vec<(String, Vec<(String, i32)>)> = Vec::new();
    let mut names = Vec::new();
    for i in 0..10 {
        let ns = namespace(
            &c,
            &format!("kill{i}"),
            group,
            &[
                ("siesta.dev/enabled", "true"),
                ("siesta.dev/idle-after", "off"),
            ],
        )
        .await;
        let mut ws = Vec::new();
        for d in 0..2 {
            let r = 1 + rng.below(4) as i32;
            create(
                &c,
                &ns,
                &workload(&format!("d{d}")).replicas(r).deployment(),
            )
            .await;
            ws.push((format!("d{d}"), r));
        }
        let r = 1 + rng.below(3) as i32;
        create(&c, &ns, &workload("s0").replicas(r).statefulset()).await;
        ws.push(("s0".into(), r));
        create(&c, &ns, &workload("cron").cronjob(false)).await;
        names.push(ns.clone());
        expected.push((ns, ws));
    }

    // Rounds: ask every namespace to sleep (or wake), kill the controller at a
    // random instant, restart it (same identity: a restarted container).
    let rounds = 20;
    let (mut requested, mut completed) = (0, 0);
    for round in 0..rounds {
        let (action, target) = if round % 2 == 0 {
            ("sleep", "asleep")
        } else {
            ("wake", "awake")
        };
        let mut ctl = Siesta::controller(SIESTA, group, &["--identity", "fault-test"]);
        ctl.wait_ready().await;
        for ns in &names {
            annotate_namespace(&c, ns, json!({"siesta.dev/action": action})).await;
            requested += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(1200))).await;
        ctl.kill();
        for ns in &names {
            if ns_annotation(&c, ns, "siesta.dev/state").await.as_deref() == Some(target) {
                completed += 1;
            }
        }
    }
    println!(
        "{requested} transitions requested, {completed} reached their target state before a SIGKILL, over {rounds} killed controllers"
    );
    assert!(
        completed > 0,
        "the controller had time to act in some rounds"
    );

    // A last controller finishes whatever was half done, then wakes everything.
    let ctl = Siesta::controller(SIESTA, group, &["--identity", "fault-test"]);
    for ns in &names {
        annotate_namespace(&c, ns, json!({"siesta.dev/action": "wake"})).await;
    }
    // A wake waits for KWOK's pods to be ready: 17-63 s here under the other
    // fault tests, longer on a machine busy with builds.
    eventually("every namespace awake", Duration::from_secs(180), || {
        all_in_state(&c, &names, "awake")
    })
    .await;
    for (ns, ws) in &expected {
        for (name, want) in ws {
            let got = if name.starts_with('s') {
                replicas_of::<StatefulSet>(&c, ns, name).await
            } else {
                replicas_of::<Deployment>(&c, ns, name).await
            };
            assert_eq!(
                got,
                Some(*want),
                "{ns}/{name}: original count restored exactly"
            );
            let record = if name.starts_with('s') {
                annotation_of::<StatefulSet>(&c, ns, name, "siesta.dev/original-replicas").await
            } else {
                annotation_of::<Deployment>(&c, ns, name, "siesta.dev/original-replicas").await
            };
            assert_eq!(record, None, "{ns}/{name}: no record left behind");
        }
        let cj = Api::<CronJob>::namespaced(c.clone(), ns)
            .get("cron")
            .await
            .unwrap();
        assert_eq!(cj.spec.suspend, Some(false), "{ns}/cron resumed");
        assert_eq!(
            annotation_of::<CronJob>(&c, ns, "cron", "siesta.dev/original-suspend").await,
            None
        );
    }
    // Nothing was released: no transition was taken for someone else's change.
    // (conflict counters exist at 0 for every managed namespace)
    let text = ctl.metrics().await;
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("siesta_conflicts_total{") && !l.ends_with(" 0")),
        "no workload was seen as changed by someone else"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_when_the_leader_dies() {
    let c = client().await;
    let group = "faults-failover";
    let mut a = Siesta::controller(SIESTA, group, &["--identity", "replica-a"]);
    a.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(1)).await; // a leads first
    let b = Siesta::controller(SIESTA, group, &["--identity", "replica-b"]);
    b.wait_ready().await;
    let ns = namespace(&c, "failover", group, MANUAL).await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "sleep"})).await;
    eventually(
        "asleep under replica a",
        Duration::from_secs(20),
        || async { ns_annotation(&c, &ns, "siesta.dev/state").await.as_deref() == Some("asleep") },
    )
    .await;
    assert!(
        a.metrics().await.contains("siesta_leader 1"),
        "replica a leads"
    );
    assert!(
        b.metrics().await.contains("siesta_leader 0")
            || !b.metrics().await.contains("siesta_leader 1")
    );

    a.kill(); // SIGKILL: no release; b must wait for the lease to expire
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "wake"})).await;
    eventually("woken by replica b", Duration::from_secs(30), || async {
        ns_annotation(&c, &ns, "siesta.dev/state").await.as_deref() == Some("awake")
    })
    .await;
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));
    assert!(
        b.metrics().await.contains("siesta_leader 1"),
        "replica b leads now"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gitops_agent_reapplying_replicas_for_a_minute_causes_one_release_and_no_flapping() {
    let c = client().await;
    let group = "faults-gitops";
    let ctl = Siesta::controller(SIESTA, group, &[]);
    ctl.wait_ready().await;
    let ns = namespace(&c, "gitops", group, MANUAL).await;
    create(&c, &ns, &workload("web").replicas(3).deployment()).await;
    sleep_and_wait(&c, &ns).await;
    // Argo CD self-heal: `replicas: 3` every 3 s for a minute.
    let mut seen_zero_after_release = 0;
    for _ in 0..20 {
        scale::<Deployment>(&c, &ns, "web", 3).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        if annotation_of::<Deployment>(&c, &ns, "web", "siesta.dev/released")
            .await
            .is_some()
            && replicas_of::<Deployment>(&c, &ns, "web").await == Some(0)
        {
            seen_zero_after_release += 1;
        }
    }
    assert_eq!(
        seen_zero_after_release, 0,
        "Siesta never scaled it back down"
    );
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(3));
    let events = events_for(&c, &ns, "web").await;
    assert_eq!(
        events
            .iter()
            .filter(|(r, _)| r == "ChangedWhileAsleep")
            .count(),
        1,
        "{events:?}"
    );
    let m = ctl.metrics().await;
    assert!(
        m.contains(&format!("siesta_conflicts_total{{namespace=\"{ns}\"}} 1")),
        "one conflict counted: {m}"
    );
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/state").await.as_deref(),
        Some("asleep"),
        "the namespace stays asleep"
    );
}

/// Namespaces of Deployments with random counts: (namespace, [(name, replicas)]).
async fn deployments(
    c: &kube::Client,
    prefix: &str,
    group: &str,
    namespaces: usize,
    per: usize,
    rng: &mut Rng,
) -> Vec<(String, Vec<(String, i32)>)> {
    let mut all = Vec::new();
    for i in 0..namespaces {
        let ns = namespace(c, &format!("{prefix}{i}"), group, MANUAL).await;
        let mut ws = Vec::new();
        for d in 0..per {
            let r = 1 + rng.below(4) as i32;
            create(c, &ns, &workload(&format!("d{d}")).replicas(r).deployment()).await;
            ws.push((format!("d{d}"), r));
        }
        all.push((ns, ws));
    }
    all
}

/// What is wrong with the Deployments, if anything: asleep means each at zero
/// with its original count recorded; awake means each at its original count
/// with no record.
async fn not_exact(
    c: &kube::Client,
    expected: &[(String, Vec<(String, i32)>)],
    asleep: bool,
) -> Option<String> {
    for (ns, ws) in expected {
        for (name, want) in ws {
            let got = replicas_of::<Deployment>(c, ns, name).await;
            let record =
                annotation_of::<Deployment>(c, ns, name, "siesta.dev/original-replicas").await;
            let (want_count, want_record) = if asleep {
                (Some(0), Some(want.to_string()))
            } else {
                (Some(*want), None)
            };
            if (got, &record) != (want_count, &want_record) {
                return Some(format!(
                    "{ns}/{name}: replicas {got:?} record {record:?}, want {want_count:?} {want_record:?}"
                ));
            }
        }
    }
    None
}

/// Wait until every namespace is in `target` with its Deployments exactly so.
async fn settle(
    c: &kube::Client,
    expected: &[(String, Vec<(String, i32)>)],
    target: &str,
    what: &str,
) {
    let names: Vec<String> = expected.iter().map(|(ns, _)| ns.clone()).collect();
    let asleep = target == "asleep";
    // Generous: with four fault tests at once on two cores, restored workloads
    // took 17-63 s to turn ready in the fake cluster (the same before and after
    // the executor split); this bounds a hang, it does not time Siesta.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let problem = if all_in_state(c, &names, target).await {
            not_exact(c, expected, asleep).await
        } else {
            Some(format!("not every namespace {target}"))
        };
        match problem {
            None => return,
            Some(p) if tokio::time::Instant::now() > deadline => panic!("{what}: {p}"),
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The sum of a counter family's series for one namespace.
fn counted(metrics: &str, family: &str, ns: &str) -> f64 {
    let label = format!("namespace=\"{ns}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Hand the leader Lease to `to`, as a replica that took it would have written it.
async fn take_lease(c: &kube::Client, lease_ns: &str, to: &str) {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    Api::<Lease>::namespaced(c.clone(), lease_ns)
        .patch(
            "siesta-controller",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"holderIdentity": to, "renewTime": now, "acquireTime": now}}),
            ),
        )
        .await
        .expect("take the leader lease");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_taken_mid_transition_applies_each_transition_once() {
    let c = client().await;
    let group = "faults-steal";
    let mut rng = Rng(0x5eed_1ea5e | 1);
    let a = Siesta::controller(SIESTA, group, &["--identity", "steal-a"]);
    a.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(1)).await; // a leads first
    let b = Siesta::controller(SIESTA, group, &["--identity", "steal-b"]);
    b.wait_ready().await;
    let expected = deployments(&c, "steal", group, 6, 6, &mut rng).await;
    let names: Vec<String> = expected.iter().map(|(ns, _)| ns.clone()).collect();

    // Each round: ask every namespace to sleep (or wake), and a moment later,
    // while passes are in flight, the other replica takes the Lease.
    let rounds = 6;
    let mut holder = "steal-a";
    for round in 0..rounds {
        let (action, target) = if round % 2 == 0 {
            ("sleep", "asleep")
        } else {
            ("wake", "awake")
        };
        for ns in &names {
            annotate_namespace(&c, ns, json!({"siesta.dev/action": action})).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        holder = if holder == "steal-a" {
            "steal-b"
        } else {
            "steal-a"
        };
        take_lease(&c, &format!("siesta-lease-{group}"), holder).await;
        settle(&c, &expected, target, &format!("round {round}")).await;
        let (new, old) = if holder == "steal-a" {
            (&a, &b)
        } else {
            (&b, &a)
        };
        eventually(
            &format!("round {round}: {holder} leads alone"),
            Duration::from_secs(20),
            || async {
                new.metrics().await.contains("siesta_leader 1")
                    && old.metrics().await.contains("siesta_leader 0")
            },
        )
        .await;
    }

    // Exactly one sleep and one wake per round and namespace, whichever replica
    // applied it.
    let (ma, mb) = (a.metrics().await, b.metrics().await);
    for ns in &names {
        let sleeps =
            counted(&ma, "siesta_sleeps_total", ns) + counted(&mb, "siesta_sleeps_total", ns);
        let wakes = counted(&ma, "siesta_wakes_total", ns) + counted(&mb, "siesta_wakes_total", ns);
        assert_eq!(
            sleeps,
            f64::from(rounds / 2),
            "{ns}: each sleep applied once"
        );
        assert_eq!(wakes, f64::from(rounds / 2), "{ns}: each wake applied once");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conflicting_writers_never_cost_a_replica_count() {
    let c = client().await;
    let group = "faults-409";
    let mut rng = Rng(0x409 | 1);
    let ctl = Siesta::controller(SIESTA, group, &[]);
    ctl.wait_ready().await;
    let expected = deployments(&c, "conflict", group, 2, 12, &mut rng).await;
    let names: Vec<String> = expected.iter().map(|(ns, _)| ns.clone()).collect();

    // Other writers (a labeller, a GitOps agent annotating): every Deployment
    // and the namespace itself change all the time, without touching replicas,
    // so Siesta's resourceVersion-guarded writes keep meeting 409 Conflict.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..2 {
        let (c, expected, stop) = (c.clone(), expected.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut tick = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (ns, ws) in &expected {
                    let note = json!({"metadata": {"annotations": {format!("other.example/writer-{w}"): tick.to_string()}}});
                    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
                        .patch(ns, &Default::default(), &kube::api::Patch::Merge(&note))
                        .await;
                    for (name, _) in ws {
                        let _ = Api::<Deployment>::namespaced(c.clone(), ns)
                            .patch(name, &Default::default(), &kube::api::Patch::Merge(&note))
                            .await;
                        // busy, not a flood: the cluster's own controllers must keep up
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                tick += 1;
            }
            tick
        }));
    }
    for (action, target) in [
        ("sleep", "asleep"),
        ("wake", "awake"),
        ("sleep", "asleep"),
        ("wake", "awake"),
    ] {
        for ns in &names {
            annotate_namespace(&c, ns, json!({"siesta.dev/action": action})).await;
        }
        settle(&c, &expected, target, "despite the other writers").await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        assert!(w.await.unwrap() > 0, "the other writers wrote");
    }
    let m = ctl.metrics().await;
    let conflicts: f64 = m
        .lines()
        .filter(|l| l.starts_with("siesta_kube_responses_total{") && l.contains("code=\"409\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    println!("409 Conflict answers met by the controller: {conflicts}");
    assert!(conflicts > 0.0, "the other writers caused conflicts: {m}");
    for ns in &names {
        assert_eq!(
            counted(&m, "siesta_sleeps_total", ns),
            2.0,
            "{ns}: two sleeps"
        );
        assert_eq!(
            counted(&m, "siesta_wakes_total", ns),
            2.0,
            "{ns}: two wakes"
        );
        assert_eq!(
            counted(&m, "siesta_conflicts_total", ns),
            0.0,
            "{ns}: annotations by others are not someone else's scale"
        );
    }
}
