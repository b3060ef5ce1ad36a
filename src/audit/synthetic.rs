//! Realistic audit JSON lines for benchmarks and tests: the mix a busy cluster
//! writes (controllers, nodes, the scheduler, apps' own service accounts, a
//! GitOps agent, and a few people), about 800 bytes an event, deterministic.
use std::fmt::Write;

/// A small deterministic generator (xorshift), so runs are comparable.
pub struct Generator {
    state: u64,
    n: u64,
}

struct Who {
    user: String,
    groups: &'static str,
    agent: &'static str,
}

const VERBS_READ: &[&str] = &["get", "list", "get", "get"];
const RESOURCES: &[(&str, &str)] = &[
    ("pods", ""),
    ("configmaps", ""),
    ("deployments", "apps"),
    ("services", ""),
    ("secrets", ""),
    ("replicasets", "apps"),
];

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            state: seed.max(1),
            n: 0,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }

    /// One event line, without its newline.
    pub fn line(&mut self) -> String {
        self.n += 1;
        let ns = format!("team-{}", self.next() % 200);
        let roll = self.next() % 100;
        let (who, verb, resource, group, namespace) = match roll {
            // Controllers of kube-system: most of the volume.
            0..=39 => {
                let c = self.pick(&[
                    "deployment-controller",
                    "replicaset-controller",
                    "endpointslice-controller",
                    "generic-garbage-collector",
                ]);
                let who = Who {
                    user: format!("system:serviceaccount:kube-system:{c}"),
                    groups: r#"["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"]"#,
                    agent: "kube-controller-manager/v1.36.3 (linux/amd64) kubernetes/$Format/deployment-controller",
                };
                let (r, g) = *self.pick(RESOURCES);
                (who, *self.pick(&["update", "patch", "get"]), r, g, ns)
            }
            // Nodes reporting pod status.
            40..=59 => {
                let node = format!("system:node:node-{}", self.next() % 50);
                (
                    Who {
                        user: node,
                        groups: r#"["system:nodes","system:authenticated"]"#,
                        agent: "kubelet/v1.36.3 (linux/amd64) kubernetes/$Format",
                    },
                    "patch",
                    "pods",
                    "",
                    ns,
                )
            }
            60..=67 => (
                Who {
                    user: "system:kube-scheduler".into(),
                    groups: r#"["system:authenticated"]"#,
                    agent: "kube-scheduler/v1.36.3 (linux/amd64) kubernetes/$Format/scheduler",
                },
                "create",
                "pods",
                "",
                ns,
            ),
            // Apps' own service accounts in their namespace.
            68..=79 => {
                let who = Who {
                    user: format!("system:serviceaccount:{ns}:default"),
                    groups: r#"["system:serviceaccounts","system:authenticated"]"#,
                    agent: "app/1.0 (linux/amd64) client-go/v0.31.0",
                };
                (who, "get", "configmaps", "", ns)
            }
            // A GitOps agent.
            80..=87 => {
                let who = Who {
                    user: "system:serviceaccount:argocd:argocd-application-controller".into(),
                    groups: r#"["system:serviceaccounts","system:serviceaccounts:argocd","system:authenticated"]"#,
                    agent: "argocd-application-controller/v2.12.0 (linux/amd64) kubernetes/$Format",
                };
                let (r, g) = *self.pick(RESOURCES);
                (who, *self.pick(&["list", "get", "patch"]), r, g, ns)
            }
            // Siesta itself.
            88..=89 => (
                Who {
                    user: "siesta".into(),
                    groups: r#"["system:authenticated"]"#,
                    agent: crate::USER_AGENT,
                },
                "patch",
                "deployments",
                "apps",
                ns,
            ),
            // People.
            _ => {
                let name = self.pick(&[
                    "alice@example.com",
                    "bob@example.com",
                    "carol@example.com",
                    "dev\\u00e9lopeur@example.com",
                ]);
                let who = Who {
                    user: name.to_string(),
                    groups: r#"["developers","system:authenticated"]"#,
                    agent: "kubectl/v1.36.3 (linux/amd64) kubernetes/$Format",
                };
                let (r, g) = *self.pick(RESOURCES);
                (who, *self.pick(VERBS_READ), r, g, ns)
            }
        };
        let id = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            self.next() as u32,
            self.next() as u16,
            self.n % 4096,
            self.next() % 4096,
            self.next() & 0xffff_ffff_ffff
        );
        let name = format!(
            "{resource}-{}-{:05x}",
            self.next() % 40,
            self.next() % 0xfffff
        );
        let prefix = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/v1")
        };
        let code = if self.next().is_multiple_of(50) {
            404
        } else {
            200
        };
        let ms = self.n % 1_000_000;
        let mut s = String::with_capacity(1024);
        let _ = write!(
            s,
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"{prefix}/namespaces/{namespace}/{resource}/{name}","verb":"{verb}","user":{{"username":"{user}","uid":"{uid:x}","groups":{groups}}},"sourceIPs":["10.{a}.{b}.{c}"],"userAgent":"{agent}","objectRef":{{"resource":"{resource}","namespace":"{namespace}","name":"{name}","uid":"{uid2:x}","apiGroup":"{group}","apiVersion":"v1","resourceVersion":"{rv}"}},"responseStatus":{{"metadata":{{}},"code":{code}}},"requestReceivedTimestamp":"2026-11-22T04:{m:02}:{sec:02}.{ms:06}Z","stageTimestamp":"2026-11-22T04:{m:02}:{sec:02}.{ms2:06}Z","annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:controller:{verb}\""}}}}"#,
            user = who.user,
            uid = self.next(),
            groups = who.groups,
            a = self.next() % 256,
            b = self.next() % 256,
            c = self.next() % 256,
            agent = who.agent,
            uid2 = self.next(),
            rv = self.next() % 10_000_000,
            m = (self.n / 60_000) % 60,
            sec = (self.n / 1000) % 60,
            ms2 = (ms + 700) % 1_000_000,
        );
        s
    }

    /// Lines (each ending in a newline) until at least `bytes` are written.
    pub fn lines(&mut self, bytes: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes + 2048);
        while out.len() < bytes {
            out.extend_from_slice(self.line().as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// An EventList of `n` events, as the API server's webhook sends it.
    pub fn event_list(&mut self, n: usize) -> Vec<u8> {
        let items: Vec<String> = (0..n).map(|_| self.line()).collect();
        format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
            items.join(",")
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_are_about_800_bytes_valid_and_mixed() {
        let body = Generator::new(7).lines(2 << 20);
        let events = body.iter().filter(|&&b| b == b'\n').count();
        let average = body.len() / events;
        assert!((700..=1000).contains(&average), "{average} bytes an event");
        let (ingest, _) = crate::audit::ingest::tests::ingest();
        let t = ingest.lines(&body);
        assert_eq!(t.invalid, 0);
        assert!(t.counted > 0 && t.ignored > 3 * t.counted, "{t:?}");
        assert!(
            crate::audit::event::split_event_list(&Generator::new(1).event_list(400))
                .unwrap()
                .len()
                == 400
        );
    }
}
