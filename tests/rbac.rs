//! Least privilege, proven: the controller runs with a token of the shipped
//! `siesta-controller` ServiceAccount, bound only by the shipped roles, and
//! does its whole job without one forbidden request.
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use serde_json::json;
use siesta_test_kit::*;

const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");

/// One test, two parts in turn: the shipped Role for leader election covers
/// only `siesta-system`, so the two controllers must not run at once.
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_roles_are_all_the_controller_and_the_proxy_need() {
    the_controller_needs_nothing_beyond_its_shipped_role().await;
    the_proxy_routes_an_ingress_and_wakes_a_namespace_with_only_its_shipped_role().await;
}

async fn the_controller_needs_nothing_beyond_its_shipped_role() {
    let c = client().await;
    apply_shipped_rbac();
    let kubeconfig = service_account_kubeconfig("siesta-system", "siesta-controller");
    let path = kubeconfig.path().to_str().unwrap().to_string();
    let ctl = Siesta::controller_with_env(
        SIESTA,
        "rbac",
        &[
            "--leader-lease-duration",
            "4s",
            "--leader-election-namespace",
            "siesta-system",
            "--identity",
            "rbac",
        ],
        &[("KUBECONFIG", &path)],
    );
    ctl.wait_ready().await;

    let ns = namespace(&c, "rbac", "rbac", MANUAL).await;
    create(&c, &ns, &workload("web").replicas(2).deployment()).await;
    create(&c, &ns, &workload("db").replicas(1).statefulset()).await;
    create(&c, &ns, &workload("job").cronjob(false)).await;
    let state = |want: &'static str| {
        let (c, ns) = (c.clone(), ns.clone());
        async move { ns_annotation(&c, &ns, "siesta.dev/state").await.as_deref() == Some(want) }
    };
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "sleep"})).await;
    eventually("asleep", Duration::from_secs(30), || state("asleep")).await;
    // The state is written before the pass scales: wait until the pass is
    // done, or the scale-up below is what the pass records and stops.
    replicas_become::<Deployment>(&c, &ns, "web", 0).await;
    replicas_become::<StatefulSet>(&c, &ns, "db", 0).await;
    // someone else's change: an Event on the workload, then a wake
    scale::<StatefulSet>(&c, &ns, "db", 2).await;
    eventually("released", Duration::from_secs(15), || async {
        annotation_of::<StatefulSet>(&c, &ns, "db", "siesta.dev/released")
            .await
            .is_some()
    })
    .await;
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "wake"})).await;
    eventually("awake", Duration::from_secs(30), || state("awake")).await;
    assert_eq!(replicas_of::<Deployment>(&c, &ns, "web").await, Some(2));
    eventually("Events published", Duration::from_secs(10), || async {
        events_for(&c, &ns, &ns)
            .await
            .iter()
            .any(|(r, _)| r == "Awake")
    })
    .await;

    let metrics = ctl.metrics().await;
    let forbidden = forbidden_answers(&metrics);
    assert!(forbidden.is_empty(), "forbidden requests: {forbidden:?}");
    assert!(
        metrics.contains("siesta_kube_responses_total{code=\"2xx\"}"),
        "the counter works: {metrics}"
    );
    // Every kind's series exists from the start, at 0; none may have moved.
    let errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("siesta_errors_total"))
        .collect();
    assert!(errors.len() > 5, "the error series exist at 0: {metrics}");
    let counted: Vec<&&str> = errors.iter().filter(|l| !l.ends_with(" 0")).collect();
    assert!(counted.is_empty(), "errors: {counted:?}");
}

async fn the_proxy_routes_an_ingress_and_wakes_a_namespace_with_only_its_shipped_role() {
    let c = client().await;
    apply_shipped_rbac();
    let controller_cfg = service_account_kubeconfig("siesta-system", "siesta-controller");
    let proxy_cfg = service_account_kubeconfig("siesta-system", "siesta-proxy");
    let ctl = Siesta::controller_with_env(
        SIESTA,
        "rbac-proxy",
        &[
            "--leader-lease-duration",
            "4s",
            "--leader-election-namespace",
            "siesta-system",
            "--identity",
            "rbac",
        ],
        &[("KUBECONFIG", controller_cfg.path().to_str().unwrap())],
    );
    ctl.wait_ready().await;
    let ns = namespace(&c, "rbac-proxy", "rbac-proxy", MANUAL).await;
    create(&c, &ns, &workload("web").replicas(1).deployment()).await;
    annotate_namespace(&c, &ns, json!({"siesta.dev/action": "sleep"})).await;
    eventually("asleep", Duration::from_secs(20), || async {
        ns_annotation(&c, &ns, "siesta.dev/state").await.as_deref() == Some("asleep")
    })
    .await;

    // An Ingress of class siesta to an ExternalName Service naming 127.0.0.1
    // (EndpointSlices may not hold loopback addresses).
    let upstream = backend().await;
    let host = format!("{ns}.rbac.test");
    kubectl(
        &["apply", "-n", &ns, "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{type: ExternalName, externalName: 127.0.0.1, ports: [{{name: http, port: {upstream}}}]}}\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: web}}\nspec:\n  ingressClassName: siesta\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: {upstream}}}}}}}}}\n"
        )),
    );
    let listen = free_port();
    let proxy = Siesta::start(
        SIESTA,
        &["proxy", "--listen", &format!("127.0.0.1:{listen}")],
        &[("KUBECONFIG", proxy_cfg.path().to_str().unwrap())],
    );
    proxy.wait_ready().await;
    let mut answer = String::new();
    for _ in 0..50 {
        // the Ingress may take a moment to reach the proxy's table
        answer = get_via_proxy(listen, &host).await;
        if !answer.starts_with("HTTP/1.1 404") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
        "{answer}"
    );
    assert_eq!(
        ns_annotation(&c, &ns, "siesta.dev/reason").await.as_deref(),
        Some("http")
    );

    // An HTTPRoute to the same Service: the proxy serves it, the controller
    // writes its status, each with only its shipped role.
    let class = unique("rbac-gwc");
    let route_host = format!("{ns}.route.rbac.test");
    kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: siesta.dev/gateway}}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: {ns}}}\nspec: {{gatewayClassName: {class}, listeners: [{{name: http, port: 80, protocol: HTTP}}]}}\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: web, namespace: {ns}}}\nspec: {{parentRefs: [{{name: gw}}], hostnames: [{route_host}], rules: [{{backendRefs: [{{name: web, port: {upstream}}}]}}]}}\n"
        )),
    );
    eventually("the route served", Duration::from_secs(20), || async {
        get_via_proxy(listen, &route_host).await.ends_with("hello")
    })
    .await;
    eventually(
        "the route's status written",
        Duration::from_secs(20),
        || async {
            kubectl(
                &[
                    "get",
                    "httproute",
                    "web",
                    "-n",
                    &ns,
                    "-o",
                    "jsonpath={.status.parents[*].conditions[*].status}",
                ],
                None,
            ) == "True True"
        },
    )
    .await;
    kubectl(&["delete", "gatewayclass", &class, "--wait=false"], None);

    for (who, metrics) in [
        ("proxy", proxy.metrics().await),
        ("controller", ctl.metrics().await),
    ] {
        let forbidden = forbidden_answers(&metrics);
        assert!(
            forbidden.is_empty(),
            "{who}: forbidden requests: {forbidden:?}"
        );
        assert!(
            metrics.contains("siesta_kube_responses_total{code=\"2xx\"}"),
            "{who} talked to the API"
        );
    }
}

/// The 401 and 403 answers a Siesta process counted, from its /metrics.
fn forbidden_answers(metrics: &str) -> Vec<&str> {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("siesta_kube_responses_total")
                && (l.contains("\"403\"") || l.contains("\"401\""))
        })
        .collect()
}

/// The controller's ServiceAccount, impersonated.
const CONTROLLER: &str = "system:serviceaccount:siesta-system:siesta-controller";

/// `kubectl delete namespace NAME` as the controller: Ok, or the refusal.
fn delete_as_controller(name: &str, dry_run: bool) -> Result<(), String> {
    let mut args = vec![
        "delete",
        "namespace",
        name,
        "--as",
        CONTROLLER,
        "--wait=false",
    ];
    if dry_run {
        args.push("--dry-run=server");
    }
    let out = std::process::Command::new("kubectl")
        .args(&args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("kubectl");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The objects of deploy/components/delete-namespaces, as an overlay renders
/// them; deleted again when dropped, so the controller has no delete right
/// outside this test.
struct DeleteNamespaces(String);

impl DeleteNamespaces {
    fn rendered() -> String {
        let overlay = root().join("tests/deploy/overlay-delete-namespaces");
        let rendered = kubectl(&["kustomize", overlay.to_str().expect("UTF-8")], None);
        let docs: Vec<&str> = rendered
            .split("\n---\n")
            .filter(|d| d.contains("name: siesta-controller-delete-namespaces"))
            .collect();
        assert_eq!(
            docs.len(),
            4,
            "ClusterRole, binding, policy and its binding"
        );
        docs.join("\n---\n")
    }

    fn remove(docs: &str) {
        kubectl(
            &["delete", "--ignore-not-found", "--wait=false", "-f", "-"],
            Some(docs),
        );
    }

    fn apply() -> DeleteNamespaces {
        let docs = DeleteNamespaces::rendered();
        kubectl(&["apply", "-f", "-"], Some(&docs));
        DeleteNamespaces(docs)
    }
}

impl Drop for DeleteNamespaces {
    fn drop(&mut self) {
        DeleteNamespaces::remove(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_deletes_only_namespaces_siesta_labelled_and_only_with_the_component() {
    let c = client().await;
    apply_shipped_rbac();
    DeleteNamespaces::remove(&DeleteNamespaces::rendered()); // a crashed run's
    let labelled = unique("rbac-del-labelled");
    let unlabelled = unique("rbac-del-unlabelled");
    let garbled = unique("rbac-del-garbled");
    let system = unique("kube-siesta-rbac");
    create_namespace(&c, &labelled, &[("siesta.dev/delete-after", "1")], &[]).await;
    create_namespace(&c, &unlabelled, &[], &[]).await;
    create_namespace(&c, &garbled, &[("siesta.dev/delete-after", "soon")], &[]).await;
    create_namespace(&c, &system, &[("siesta.dev/delete-after", "1")], &[]).await;

    // Without the component: RBAC refuses any namespace, labelled or not.
    for ns in [&labelled, &unlabelled] {
        let refused = delete_as_controller(ns, true).expect_err("no delete right by default");
        assert!(
            refused.contains("cannot delete resource \"namespaces\""),
            "{refused}"
        );
    }

    let component = DeleteNamespaces::apply();
    // Bindings and admission policies take effect a moment later; every try
    // is a dry run until both do.
    let policy_refusal = "Siesta deletes only namespaces it labelled";
    eventually(
        "the component in force",
        Duration::from_secs(30),
        || async {
            delete_as_controller(&labelled, true).is_ok()
                && delete_as_controller(&unlabelled, true)
                    .is_err_and(|e| e.contains(policy_refusal))
        },
    )
    .await;
    for (ns, why) in [
        (&unlabelled, policy_refusal),
        (&garbled, policy_refusal),
        (&system, "never deletes kube-*"),
        // (kube-system and default: Kubernetes itself refuses, before the policy.)
        (&"siesta-system".to_string(), policy_refusal),
    ] {
        let refused = delete_as_controller(ns, true).expect_err("refused by the admission policy");
        assert!(refused.contains(why), "{ns}: {refused}");
    }
    // A labelled namespace goes, for real.
    delete_as_controller(&labelled, false).expect("a labelled namespace may be deleted");
    eventually("the namespace deleted", Duration::from_secs(30), || async {
        let ns = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
            .get_opt(&labelled)
            .await
            .expect("get");
        ns.is_none_or(|n| n.metadata.deletion_timestamp.is_some())
    })
    .await;
    // Everyone else is not matched by the policy: the test's admin deletes the rest.
    drop(component);
    for ns in [&unlabelled, &garbled, &system] {
        kubectl(&["delete", "namespace", ns, "--wait=false"], None);
    }
}
