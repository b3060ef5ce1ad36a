//! What counts as activity: the built-in defaults (see docs/audit.md for the
//! reasons behind each) plus the admin's `audit.ignore` additions.
use std::collections::HashSet;

use super::event::Event;
use crate::config::AuditIgnore;

/// Why an event does not count. Only for logs and tests, never a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Not a response stage (`RequestReceived`, or no stage): written before
    /// authorization, so it cannot say whether the request was allowed. The
    /// same request's response stage decides.
    Unanswered,
    /// Cluster-scoped, or a namespace-less request.
    NoNamespace,
    /// A namespace that is no RFC 1123 label (`TEAM-A`, `a/../b`, a NUL, 64
    /// or more bytes): no such namespace can exist, so counting it would only
    /// grow the activity book and retry Lease writes that cannot succeed.
    BadNamespace,
    /// A `system:` identity other than a service account: a component or node.
    Component,
    /// A service account of kube-system (or another system namespace).
    SystemServiceAccount,
    /// A GitOps agent's service account (Flux's `flux-system`, Argo CD's
    /// `argocd`): its reconciles act in every tenant's namespace every few
    /// seconds and would keep each one awake.
    GitOpsAgent,
    /// A service account acting in its own namespace: the workload itself.
    OwnServiceAccount,
    /// A service account writing Leases or Events: leader election, housekeeping.
    Housekeeping,
    /// Siesta's own request.
    Siesta,
    /// A dry run changes nothing.
    DryRun,
    /// The request was refused (401 or 403).
    Denied,
    /// A verb that never counts (`watch` by default).
    Verb,
    /// On an admin list (user, group, service account, user agent, resource).
    Admin,
}

/// The verdict on one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'e> {
    Count { namespace: &'e str },
    Ignore(Ignored),
}

const SERVICE_ACCOUNT: &str = "system:serviceaccount:";
/// Namespaces whose service accounts belong to the cluster itself.
const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-node-lease", "kube-public"];
/// Namespaces of GitOps agents' service accounts (their default installs).
const GITOPS_NAMESPACES: &[&str] = &["flux-system", "argocd"];
/// Groups of identities that are never people.
const COMPONENT_GROUPS: &[&str] = &["system:nodes", "system:serviceaccounts:kube-system"];
/// What service accounts write to stay alive, not because anyone is at work.
const HOUSEKEEPING_RESOURCES: &[&str] = &["leases", "events"];
const DEFAULT_VERBS: &[&str] = &["watch"];

/// A name, or a prefix when it ends in `*`.
#[derive(Clone, Debug, PartialEq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn new(s: &str) -> Pattern {
        match s.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None => Pattern::Exact(s.to_string()),
        }
    }
    fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == s,
            Pattern::Prefix(p) => s.starts_with(p.as_str()),
        }
    }
}

/// `resource[/subresource][.group]`: `pods` (any subresource, any group),
/// `pods/log`, `leases.coordination.k8s.io`.
#[derive(Clone, Debug, PartialEq)]
struct ResourcePattern {
    resource: String,
    subresource: Option<String>,
    group: Option<String>,
}

impl ResourcePattern {
    fn new(s: &str) -> ResourcePattern {
        let (rest, group) = match s.split_once('.') {
            Some((r, g)) => (r, Some(g.to_string())),
            None => (s, None),
        };
        let (resource, subresource) = match rest.split_once('/') {
            Some((r, sub)) => (r.to_string(), Some(sub.to_string())),
            None => (rest.to_string(), None),
        };
        ResourcePattern {
            resource,
            subresource,
            group,
        }
    }
    fn matches(&self, resource: &str, subresource: Option<&str>, group: &str) -> bool {
        self.resource == resource
            && self
                .subresource
                .as_deref()
                .is_none_or(|s| Some(s) == subresource)
            && self.group.as_deref().is_none_or(|g| g == group)
    }
}

/// The rules in force: defaults plus admin additions. Cheap to share behind an `Arc`.
#[derive(Clone, Debug)]
pub struct Rules {
    users: Vec<Pattern>,
    /// `system:` users that count anyway (an admin's own tooling identity).
    counted_users: Vec<Pattern>,
    groups: HashSet<String>,
    user_agent_prefixes: Vec<String>,
    verbs: HashSet<String>,
    resources: Vec<ResourcePattern>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules::new(&AuditIgnore::default())
    }
}

impl Rules {
    /// The defaults plus the admin's additions.
    ///
    /// `service_accounts` entries are `namespace/name`, `namespace:name` or the
    /// full `system:serviceaccount:namespace:name`; the name may be `*`. User
    /// entries may end in `*` (a prefix). Resources are `resource[/sub][.group]`.
    pub fn new(ignore: &AuditIgnore) -> Rules {
        let mut users: Vec<Pattern> = ignore.users.iter().map(|u| Pattern::new(u)).collect();
        users.extend(
            ignore
                .service_accounts
                .iter()
                .map(|sa| Pattern::new(&service_account_user(sa))),
        );
        let mut user_agent_prefixes = vec![
            crate::USER_AGENT
                .split('/')
                .next()
                .unwrap_or("siesta")
                .to_string()
                + "/",
        ];
        user_agent_prefixes.extend(
            ignore
                .user_agent_prefixes
                .iter()
                .filter(|p| !p.is_empty())
                .cloned(),
        );
        Rules {
            users,
            counted_users: Vec::new(),
            groups: COMPONENT_GROUPS
                .iter()
                .map(|g| g.to_string())
                .chain(ignore.groups.iter().cloned())
                .collect(),
            user_agent_prefixes,
            verbs: DEFAULT_VERBS
                .iter()
                .map(|v| v.to_string())
                .chain(ignore.verbs.iter().map(|v| v.to_lowercase()))
                .collect(),
            resources: ignore
                .resources
                .iter()
                .map(|r| ResourcePattern::new(r))
                .collect(),
        }
    }

    /// `system:` users (not service accounts) that are people or tools an admin
    /// wants counted, against the default that such users are components.
    pub fn with_counted_users(mut self, users: &[String]) -> Rules {
        self.counted_users = users.iter().map(|u| Pattern::new(u)).collect();
        self
    }

    /// Does this event count, and for which namespace?
    pub fn judge<'e>(&self, event: &'e Event<'_>) -> Verdict<'e> {
        if !event.is_response() {
            return Verdict::Ignore(Ignored::Unanswered);
        }
        let Some(namespace) = event.namespace() else {
            return Verdict::Ignore(Ignored::NoNamespace);
        };
        if !crate::activity::valid_namespace(namespace) {
            return Verdict::Ignore(Ignored::BadNamespace);
        }
        if self.verbs.contains(event.verb.as_str()) {
            return Verdict::Ignore(Ignored::Verb);
        }
        if let Some(agent) = &event.user_agent
            && let Some(i) = self
                .user_agent_prefixes
                .iter()
                .position(|p| agent.0.starts_with(p.as_bytes()))
        {
            return Verdict::Ignore(if i == 0 {
                Ignored::Siesta
            } else {
                Ignored::Admin
            });
        }
        if event
            .response_status
            .as_ref()
            .and_then(|s| s.code)
            .is_some_and(|c| c == 401 || c == 403)
        {
            return Verdict::Ignore(Ignored::Denied);
        }
        if event.request_uri.as_ref().is_some_and(|u| is_dry_run(&u.0)) {
            return Verdict::Ignore(Ignored::DryRun);
        }
        let user = event.effective_user();
        let name = user.username.as_str();
        if self.users.iter().any(|p| p.matches(name)) {
            return Verdict::Ignore(Ignored::Admin);
        }
        let object = event.object_ref.as_ref();
        let resource = object
            .and_then(|o| o.resource.as_ref())
            .map_or("", |r| r.as_str());
        if let Some(sa) = name.strip_prefix(SERVICE_ACCOUNT) {
            let sa_namespace = sa.split_once(':').map_or(sa, |(ns, _)| ns);
            if SYSTEM_NAMESPACES.contains(&sa_namespace) {
                return Verdict::Ignore(Ignored::SystemServiceAccount);
            }
            if GITOPS_NAMESPACES.contains(&sa_namespace) {
                return Verdict::Ignore(Ignored::GitOpsAgent);
            }
            if sa_namespace == namespace {
                return Verdict::Ignore(Ignored::OwnServiceAccount);
            }
            if HOUSEKEEPING_RESOURCES.contains(&resource) {
                return Verdict::Ignore(Ignored::Housekeeping);
            }
        } else if name.starts_with("system:") && !self.counted_users.iter().any(|p| p.matches(name))
        {
            return Verdict::Ignore(Ignored::Component);
        }
        // Last among identity checks: groups are parsed only for the few events that get here.
        if let Some(group) = user
            .groups()
            .iter()
            .find(|g| self.groups.contains(g.as_str()))
        {
            let default = COMPONENT_GROUPS.contains(&group.as_str());
            return Verdict::Ignore(if default {
                Ignored::Component
            } else {
                Ignored::Admin
            });
        }
        if !self.resources.is_empty() {
            let sub = object
                .and_then(|o| o.subresource.as_ref())
                .map(|s| s.as_str());
            let group = object
                .and_then(|o| o.api_group.as_ref())
                .map_or("", |g| g.as_str());
            if self
                .resources
                .iter()
                .any(|r| r.matches(resource, sub, group))
            {
                return Verdict::Ignore(Ignored::Admin);
            }
        }
        Verdict::Count { namespace }
    }
}

/// `ns/name`, `ns:name` or `system:serviceaccount:ns:name` as a user name pattern.
fn service_account_user(entry: &str) -> String {
    if entry.starts_with(SERVICE_ACCOUNT) {
        return entry.to_string();
    }
    let (ns, name) = entry.split_once(['/', ':']).unwrap_or((entry, "*"));
    format!("{SERVICE_ACCOUNT}{ns}:{name}")
}

fn is_dry_run(uri: &[u8]) -> bool {
    let Some(q) = memchr::memchr(b'?', uri) else {
        return false;
    };
    uri[q + 1..]
        .split(|&b| b == b'&')
        .any(|kv| kv.starts_with(b"dryRun="))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An audit event line, built field by field.
    pub(crate) struct Line {
        user: String,
        groups: Vec<String>,
        impersonated: Option<String>,
        agent: String,
        verb: String,
        resource: String,
        namespace: Option<String>,
        name: Option<String>,
        code: u16,
        uri: String,
        stage: String,
    }

    impl Line {
        pub(crate) fn person() -> Line {
            Line {
                user: "alice".into(),
                groups: vec!["dev".into(), "system:authenticated".into()],
                impersonated: None,
                agent: "kubectl/v1.36.3 (linux/amd64)".into(),
                verb: "get".into(),
                resource: "pods".into(),
                namespace: Some("team-a".into()),
                name: Some("web-1".into()),
                code: 200,
                uri: "/api/v1/namespaces/team-a/pods/web-1".into(),
                stage: "ResponseComplete".into(),
            }
        }
        fn user(mut self, u: &str) -> Line {
            self.user = u.into();
            self
        }
        fn groups(mut self, g: &[&str]) -> Line {
            self.groups = g.iter().map(|s| s.to_string()).collect();
            self
        }
        fn impersonating(mut self, u: &str) -> Line {
            self.impersonated = Some(u.into());
            self
        }
        fn agent(mut self, a: &str) -> Line {
            self.agent = a.into();
            self
        }
        fn verb(mut self, v: &str) -> Line {
            self.verb = v.into();
            self
        }
        fn resource(mut self, r: &str) -> Line {
            self.resource = r.into();
            self
        }
        fn code(mut self, c: u16) -> Line {
            self.code = c;
            self
        }
        fn uri(mut self, u: &str) -> Line {
            self.uri = u.into();
            self
        }
        fn stage(mut self, s: &str) -> Line {
            self.stage = s.into();
            self
        }
        fn namespace(mut self, n: &str) -> Line {
            self.namespace = Some(n.into());
            self
        }
        fn cluster_scoped(mut self) -> Line {
            self.namespace = None;
            self
        }
        fn json(&self) -> String {
            let imp = self.impersonated.as_ref().map_or(String::new(), |u| {
                format!(r#""impersonatedUser":{{"username":"{u}"}},"#)
            });
            let ns = self
                .namespace
                .as_ref()
                .map_or(String::new(), |n| format!(r#""namespace":"{n}","#));
            let name = self
                .name
                .as_ref()
                .map_or(String::new(), |n| format!(r#""name":"{n}","#));
            format!(
                r#"{{"kind":"Event","auditID":"x","stage":"{}","requestURI":"{}","verb":"{}","user":{{"username":"{}","groups":{:?}}},{imp}"userAgent":"{}","objectRef":{{"resource":"{}",{ns}{name}"apiVersion":"v1"}},"responseStatus":{{"code":{}}},"stageTimestamp":"2026-11-22T04:17:32.437267Z"}}"#,
                self.stage,
                self.uri,
                self.verb,
                self.user,
                self.groups,
                self.agent,
                self.resource,
                self.code
            )
        }
        fn judged(&self, rules: &Rules) -> Verdict<'static> {
            let json = self.json();
            let event = Event::parse(json.as_bytes()).expect("test lines are valid");
            match rules.judge(&event) {
                Verdict::Count { namespace } => Verdict::Count {
                    namespace: namespace.to_string().leak(),
                },
                Verdict::Ignore(r) => Verdict::Ignore(r),
            }
        }
    }

    const COUNTS: Verdict<'static> = Verdict::Count {
        namespace: "team-a",
    };

    fn judge(line: Line) -> Verdict<'static> {
        line.judged(&Rules::default())
    }

    #[test]
    fn a_person_reading_pods_counts() {
        assert_eq!(judge(Line::person()), COUNTS);
        assert_eq!(judge(Line::person().verb("list")), COUNTS);
    }

    #[test]
    fn cluster_admins_are_people() {
        assert_eq!(
            judge(
                Line::person()
                    .user("siesta-admin")
                    .groups(&["system:masters", "system:authenticated"])
            ),
            COUNTS
        );
    }

    #[test]
    fn components_and_nodes_are_ignored() {
        for user in [
            "system:kube-scheduler",
            "system:kube-controller-manager",
            "system:apiserver",
            "system:node:n1",
            "system:kwok-controller",
            "system:anonymous",
        ] {
            assert_eq!(
                judge(Line::person().user(user).groups(&["system:masters"])),
                Verdict::Ignore(Ignored::Component),
                "{user}"
            );
        }
        assert_eq!(
            judge(Line::person().user("node-n1").groups(&["system:nodes"])),
            Verdict::Ignore(Ignored::Component)
        );
    }

    #[test]
    fn an_admin_can_count_a_system_user() {
        let rules = Rules::default().with_counted_users(&["system:ops-*".to_string()]);
        assert_eq!(Line::person().user("system:ops-bot").judged(&rules), COUNTS);
    }

    #[test]
    fn kube_system_service_accounts_are_ignored() {
        let sa = "system:serviceaccount:kube-system:deployment-controller";
        assert_eq!(
            judge(Line::person().user(sa)),
            Verdict::Ignore(Ignored::SystemServiceAccount)
        );
        assert_eq!(
            judge(Line::person().impersonating("system:serviceaccount:kube-system:foo")),
            Verdict::Ignore(Ignored::SystemServiceAccount)
        );
    }

    #[test]
    fn a_workload_polling_its_own_namespace_is_ignored() {
        assert_eq!(
            judge(
                Line::person()
                    .user("system:serviceaccount:team-a:default")
                    .verb("update")
                    .resource("configmaps")
            ),
            Verdict::Ignore(Ignored::OwnServiceAccount)
        );
    }

    #[test]
    fn another_namespaces_service_account_deploying_counts_but_not_its_housekeeping() {
        let ci = "system:serviceaccount:ci:deployer";
        assert_eq!(
            judge(
                Line::person()
                    .user(ci)
                    .verb("patch")
                    .resource("deployments")
            ),
            COUNTS
        );
        assert_eq!(
            judge(Line::person().user(ci).verb("create").resource("events")),
            Verdict::Ignore(Ignored::Housekeeping)
        );
        assert_eq!(
            judge(Line::person().user(ci).verb("update").resource("leases")),
            Verdict::Ignore(Ignored::Housekeeping)
        );
        assert_eq!(
            judge(Line::person().verb("list").resource("events")),
            COUNTS,
            "a person reading events is at work"
        );
    }

    #[test]
    fn siesta_watches_denials_and_dry_runs_are_ignored() {
        assert_eq!(
            judge(Line::person().agent(crate::USER_AGENT)),
            Verdict::Ignore(Ignored::Siesta)
        );
        assert_eq!(
            judge(Line::person().verb("watch")),
            Verdict::Ignore(Ignored::Verb)
        );
        assert_eq!(
            judge(Line::person().code(403)),
            Verdict::Ignore(Ignored::Denied)
        );
        assert_eq!(
            judge(Line::person().code(401)),
            Verdict::Ignore(Ignored::Denied)
        );
        assert_eq!(judge(Line::person().code(404)), COUNTS);
        assert_eq!(
            judge(
                Line::person().verb("patch").uri(
                    "/apis/apps/v1/namespaces/team-a/deployments/web?dryRun=All&fieldManager=x"
                )
            ),
            Verdict::Ignore(Ignored::DryRun)
        );
    }

    #[test]
    fn only_a_response_stage_decides() {
        for stage in ["ResponseStarted", "ResponseComplete", "Panic"] {
            assert_eq!(judge(Line::person().stage(stage)), COUNTS, "{stage}");
        }
        for stage in ["RequestReceived", "", "responsecomplete", "Response"] {
            assert_eq!(
                judge(Line::person().stage(stage)),
                Verdict::Ignore(Ignored::Unanswered),
                "{stage:?}"
            );
        }
        let no_stage = Line::person()
            .json()
            .replace(r#""stage":"ResponseComplete","#, "");
        let event = Event::parse(no_stage.as_bytes()).unwrap();
        assert_eq!(
            Rules::default().judge(&event),
            Verdict::Ignore(Ignored::Unanswered)
        );
    }

    #[test]
    fn a_namespace_that_cannot_exist_counts_nowhere() {
        let long = "a".repeat(64);
        for bad in [
            "TEAM-A",
            "team-a/../kube-system",
            r"team\u0000a",
            "-team",
            "team-",
            "team.a",
            "",
            long.as_str(),
        ] {
            assert_eq!(
                judge(Line::person().namespace(bad)),
                Verdict::Ignore(if bad.is_empty() {
                    Ignored::NoNamespace
                } else {
                    Ignored::BadNamespace
                }),
                "{bad:?}"
            );
        }
        let longest = "a".repeat(63);
        assert_eq!(
            judge(Line::person().namespace(&longest)),
            Verdict::Count {
                namespace: longest.leak()
            }
        );
    }

    #[test]
    fn cluster_scoped_requests_count_nowhere() {
        assert_eq!(
            judge(Line::person().cluster_scoped().resource("nodes")),
            Verdict::Ignore(Ignored::NoNamespace)
        );
    }

    #[test]
    fn admin_additions_apply() {
        let ignore = AuditIgnore {
            users: vec!["bob".into(), "ci-*".into()],
            groups: vec!["robots".into()],
            service_accounts: vec!["argocd/*".into(), "flux-system:kustomize-controller".into()],
            user_agent_prefixes: vec!["argocd-application-controller/".into()],
            verbs: vec!["LIST".into()],
            resources: vec![
                "pods/log".into(),
                "leases.coordination.k8s.io".into(),
                "secrets".into(),
            ],
        };
        let rules = Rules::new(&ignore);
        let admin = Verdict::Ignore(Ignored::Admin);
        assert_eq!(Line::person().user("bob").judged(&rules), admin);
        assert_eq!(Line::person().user("ci-runner").judged(&rules), admin);
        assert_eq!(Line::person().groups(&["robots"]).judged(&rules), admin);
        assert_eq!(
            Line::person()
                .user("system:serviceaccount:argocd:application-controller")
                .judged(&rules),
            admin
        );
        assert_eq!(
            Line::person()
                .user("system:serviceaccount:flux-system:kustomize-controller")
                .judged(&rules),
            admin
        );
        assert_eq!(
            Line::person()
                .agent("argocd-application-controller/v2.9")
                .judged(&rules),
            admin
        );
        assert_eq!(
            Line::person().verb("list").judged(&rules),
            Verdict::Ignore(Ignored::Verb)
        );
        assert_eq!(Line::person().resource("secrets").judged(&rules), admin);
        assert_eq!(
            Line::person().resource("pods").judged(&rules),
            COUNTS,
            "pods/log does not cover pods"
        );
    }

    #[test]
    fn gitops_agents_reconciling_in_a_tenants_namespace_never_count() {
        let rules = Rules::default();
        for sa in [
            "system:serviceaccount:flux-system:kustomize-controller",
            "system:serviceaccount:flux-system:helm-controller",
            "system:serviceaccount:argocd:argocd-application-controller",
        ] {
            assert_eq!(
                Line::person().user(sa).judged(&rules),
                Verdict::Ignore(Ignored::GitOpsAgent),
                "{sa}"
            );
        }
        // Another namespace's deployer still counts.
        assert_eq!(
            Line::person()
                .user("system:serviceaccount:ci:deployer")
                .judged(&rules),
            COUNTS
        );
    }

    #[test]
    fn resource_patterns_read_subresource_and_group() {
        let p = ResourcePattern::new("pods");
        assert!(p.matches("pods", None, "") && p.matches("pods", Some("log"), ""));
        let p = ResourcePattern::new("pods/exec");
        assert!(p.matches("pods", Some("exec"), "") && !p.matches("pods", None, ""));
        let p = ResourcePattern::new("leases.coordination.k8s.io");
        assert!(
            p.matches("leases", None, "coordination.k8s.io") && !p.matches("leases", None, "other")
        );
    }
}
