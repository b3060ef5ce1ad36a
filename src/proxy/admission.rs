//! Admission: the one decision every front end asks for a request head (the
//! HTTP/1.1 fast path, the pre-hold reader, hyper's path), over a borrowed,
//! protocol-neutral view of it ([`RequestView`]). Steps 1 to 4 of the handler
//! chain, in order:
//! 1. refuse what is never served: CONNECT, no host or more than one `Host`,
//!    a target that is not a path or hides a separator ([`super::target`]);
//! 2. route on the host and the normalised path (never the query), unknown
//!    host or path 404;
//! 3. record activity for the route's namespace, unless it is a health check
//!    (`ignorePaths`, on the normalised path; `ignoreUserAgents`); for a
//!    sleeping namespace that record is the wake request;
//! 4. hold while the namespace sleeps or has no ready endpoint: browsers get
//!    the wake page, others [`Admission::Hold`], which [`Proxy::settle`] waits out.
//!
//! The front ends only encode the outcome: [`Admission::Forward`] carries
//! the upstream and the normalised target to send.
use std::borrow::Cow;
use std::sync::Arc;

use chrono::Utc;
use http::Request;

use super::routes::{self, Route, Upstream};
use super::target;
use super::{Proxy, Refusal, wake_page};
use crate::activity::Activity;
use crate::annotations::WakePage;
use crate::model::Source;

/// What admission reads of a request head, whatever the protocol.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// An absolute-form target's or HTTP/2's authority: it wins over `Host`.
    pub authority: Option<&'a str>,
    /// The first `Host` header, and how many there were.
    pub host: Option<&'a str>,
    pub hosts: usize,
    /// The path and query as sent (origin-form; `*` for asterisk-form).
    pub target: &'a str,
    pub user_agent: &'a str,
    pub accept: Option<&'a str>,
    /// The request has a body: held, it reserves a share of the body budget.
    pub has_body: bool,
}

impl<'a> RequestView<'a> {
    /// The view of an `http` request; `has_body` as the caller knows it.
    pub fn of<B>(req: &'a Request<B>, has_body: bool) -> RequestView<'a> {
        let text = |name| {
            req.headers()
                .get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
        };
        let hosts = req.headers().get_all(http::header::HOST).iter().count();

        RequestView {
            method: req.method().as_str(),
            authority: req.uri().authority().map(|a| a.as_str()),
            host: req
                .headers()
                .get(http::header::HOST)
                .map(|v| v.to_str().unwrap_or("\u{0}")),
            hosts,
            target: req.uri().path_and_query().map_or("/", |p| p.as_str()),
            user_agent: text(http::header::USER_AGENT).unwrap_or(""),
            accept: text(http::header::ACCEPT),
            has_body,
        }
    }
}

/// A request that goes on to an upstream.
#[derive(Debug)]
pub struct Forward {
    pub route: Arc<Route>,
    pub upstream: Upstream,
    /// The normalised path and query, when it is not what the client sent.
    pub target: Option<Box<str>>,
}

/// A request that waits for its namespace.
#[derive(Debug)]
pub struct Held {
    namespace: Arc<str>,
    host: String,
    path: Box<str>,
    target: Option<Box<str>>,
    route: Arc<Route>,
    has_body: bool,
}

/// What the gate reads of a routed request.
struct Gate<'a> {
    host: Cow<'a, str>,
    path: &'a str,
    user_agent: &'a str,
    /// An HTTP request's method and `Accept`: a browser asking for a page
    /// gets the wake page rather than a wait.
    head: Option<(&'a str, Option<&'a str>)>,
    has_body: bool,
}

/// A refusal, with the route when one was found (for its request counter).
#[derive(Debug)]
pub struct Refused {
    pub route: Option<Arc<Route>>,
    pub why: Refusal,
}

impl From<Result<Forward, Refused>> for Admission {
    fn from(r: Result<Forward, Refused>) -> Admission {
        r.map_or_else(Admission::Refuse, Admission::Forward)
    }
}

impl Refused {
    fn unrouted(why: Refusal) -> Refused {
        Refused { route: None, why }
    }
}

/// What admission decided.
#[derive(Debug)]
pub enum Admission {
    Forward(Forward),
    Hold(Held),
    Refuse(Refused),
}

/// The host a request is for: the authority, else its one `Host`; normalised.
fn host_of<'a>(view: &RequestView<'a>) -> Result<Cow<'a, str>, Refusal> {
    let raw = match view.authority {
        Some(a) => a,
        None if view.hosts == 1 => view.host.ok_or(Refusal::NoHost)?,
        None => return Err(Refusal::NoHost),
    };
    routes::normalize_host(raw).ok_or(Refusal::NoHost)
}

impl Proxy {
    /// Steps 1 to 4 for one request head (see the module doc). Records the
    /// request as activity when it is routed to a namespace.
    pub fn admit(&self, view: &RequestView<'_>) -> Admission {
        if view.method == "CONNECT" {
            return Admission::Refuse(Refused::unrouted(Refusal::Connect));
        }

        let host = match host_of(view) {
            Ok(h) => h,
            Err(why) => return Admission::Refuse(Refused::unrouted(why)),
        };
        let target = match target::normalize(view.target, self.limits.allow_encoded_slashes) {
            Ok(t) => t,
            Err(bad) => return Admission::Refuse(Refused::unrouted(Refusal::BadTarget(bad))),
        };
        let Some(route) = self.find(&host, target.path()) else {
            return Admission::Refuse(Refused::unrouted(self.no_route()));
        };
        let changed = target.changed().then(|| Box::from(&*target.target));
        let gate = Gate {
            host,
            path: target.path(),
            user_agent: view.user_agent,
            head: Some((view.method, view.accept)),
            has_body: view.has_body,
        };
        self.gate(route, gate, changed)
    }

    /// Steps 3 and 4 for a connection on a plain TCP redirect port: no head
    /// to read, so no wake page, and the connection is what is held.
    pub fn admit_stream(&self) -> Admission {
        let Some(route) = self.find("", "") else {
            return Admission::Refuse(Refused::unrouted(self.no_route()));
        };
        let host = match &route.backend {
            routes::Backend::Service(s) => Cow::Owned(s.name.clone()),
            routes::Backend::Static(a) => Cow::Owned(a.to_string()),
            routes::Backend::Invalid => Cow::Borrowed(""),
        };
        let gate = Gate {
            host,
            path: "",
            user_agent: "",
            head: None,
            has_body: false,
        };
        self.gate(route, gate, None)
    }

    /// A redirect port whose slice is gone serves nothing: 503, so a caller
    /// retries where the Service now leads; elsewhere an unknown host is 404.
    fn no_route(&self) -> Refusal {
        if self.port.is_some() {
            Refusal::NoEndpoint
        } else {
            Refusal::UnknownHost
        }
    }

    /// Steps 3 and 4 once routed: record, then forward, the wake page, or hold.
    fn gate(&self, route: Arc<Route>, g: Gate<'_>, changed: Option<Box<str>>) -> Admission {
        let Some(ns) = route.namespace.clone() else {
            return self.to_upstream(route, changed).into();
        };
        let info = self.namespaces.info(&ns);
        let sleeping = info.is_some_and(|i| i.sleeping());
        self.record(&ns, &route, &g.host, g.path, g.user_agent, sleeping);
        let managed = info.is_some_and(|i| i.state.is_some());
        if !(sleeping || (managed && !route.ready())) {
            return self.to_upstream(route, changed).into();
        }
        let page = info.and_then(|i| i.wake_page).unwrap_or(self.wake_page);
        let browser = g
            .head
            .is_some_and(|(method, accept)| wake_page::wants_page(method, accept));
        if page == WakePage::Auto && browser {
            return Admission::Refuse(Refused {
                route: Some(route),
                why: Refusal::WakePage(g.host.into_owned()),
            });
        }
        Admission::Hold(Held {
            namespace: ns,
            host: g.host.into_owned(),
            path: g.path.into(),
            target: changed,
            route,
            has_body: g.has_body,
        })
    }

    /// Where a routed request goes now: an upstream, 503 while none is
    /// ready, 500 for a backend the route may not use.
    fn to_upstream(&self, route: Arc<Route>, target: Option<Box<str>>) -> Result<Forward, Refused> {
        match route.upstream() {
            Some(upstream) => Ok(Forward {
                route,
                upstream,
                target,
            }),
            None => {
                let why = match route.backend {
                    routes::Backend::Invalid => Refusal::InvalidBackend,
                    _ => Refusal::NoEndpoint,
                };
                Err(Refused {
                    route: Some(route),
                    why,
                })
            }
        }
    }

    /// The outcome of an admission once any wait is over.
    pub async fn settle(&self, admission: Admission) -> Result<Forward, Refused> {
        match admission {
            Admission::Forward(f) => Ok(f),
            Admission::Refuse(r) => Err(r),
            Admission::Hold(held) => match self.hold(&held).await {
                Ok(route) => self.to_upstream(route, held.target),
                Err(why) => Err(Refused {
                    route: Some(held.route),
                    why,
                }),
            },
        }
    }

    /// Step 3: record a request as activity for the route's namespace. A
    /// sleeping namespace's first record is its wake request, so it is always
    /// reported; an awake one once per millisecond per route.
    fn record(
        &self,
        ns: &str,
        route: &Route,
        host: &str,
        path: &str,
        user_agent: &str,
        sleeping: bool,
    ) {
        let now = Utc::now();
        if self.counts_as_activity(path, user_agent)
            && (sleeping || route.report_due(now.timestamp_millis()))
        {
            self.reporter.report(Activity {
                namespace: ns.to_string(),
                at: now,
                source: Source::Http,
                detail: host.to_string(),
            });
        }
    }

    /// Health checks and probes are forwarded but never keep a namespace awake.
    pub(super) fn counts_as_activity(&self, path: &str, user_agent: &str) -> bool {
        if self.limits.ignore_paths.iter().any(|p| p == path) {
            return false;
        }
        !self
            .limits
            .ignore_user_agents
            .iter()
            .any(|p| !p.is_empty() && user_agent.starts_with(p.as_str()))
    }

    /// Wait (bounded) until the namespace is awake and the route has a ready
    /// endpoint; the route as it then is.
    async fn hold(&self, held: &Held) -> Result<Arc<Route>, Refusal> {
        let ns = &held.namespace;
        let _slot = self
            .held
            .try_hold(ns, held.has_body)
            .ok_or(Refusal::TooManyHeld)?;
        let started = tokio::time::Instant::now();
        let ready = || {
            !self.namespaces.info(ns).is_some_and(|i| i.sleeping())
                && self.find(&held.host, &held.path).is_some_and(|r| r.ready())
        };
        let waited = tokio::time::timeout(
            self.limits.hold_timeout,
            self.namespaces.wait_until(ns, ready),
        )
        .await;
        self.metrics
            .proxy_hold_duration
            .with_label_values(&[ns])
            .observe(started.elapsed().as_secs_f64());
        waited.map_err(|_| Refusal::HoldTimeout)?;
        self.find(&held.host, &held.path)
            .ok_or(Refusal::UnknownHost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::routes::parse_routes;
    use crate::proxy::tests::proxy_over;

    fn view<'a>(host: &'a str, target: &'a str) -> RequestView<'a> {
        RequestView {
            method: "GET",
            host: Some(host),
            hosts: 1,
            target,
            ..RequestView::default()
        }
    }

    fn upstream_of(p: &Proxy, v: &RequestView<'_>) -> Result<(String, Option<String>), String> {
        match p.admit(v) {
            Admission::Forward(f) => {
                Ok((f.upstream.authority.to_string(), f.target.map(String::from)))
            }
            Admission::Refuse(r) => Err(format!("{:?}", r.why)),
            Admission::Hold(_) => Err("hold".into()),
        }
    }

    #[test]
    fn routing_sees_the_normalised_path_without_the_query() {
        let table = parse_routes(
            "routes:\n  - {host: app.test, upstream: 'http://127.0.0.1:1'}\n  \
             - {host: app.test, pathPrefix: /api, upstream: 'http://127.0.0.1:2'}\n",
        )
        .unwrap();
        let p = proxy_over(table);
        assert_eq!(
            upstream_of(&p, &view("app.test", "/api?x=1")),
            Ok(("127.0.0.1:2".into(), None))
        );
        assert_eq!(
            upstream_of(&p, &view("app.test", "/api/../x")),
            Ok(("127.0.0.1:1".into(), Some("/x".into())))
        );
        assert_eq!(
            upstream_of(&p, &view("app.test", "/x/.%2e/api/v?q")),
            Ok(("127.0.0.1:2".into(), Some("/api/v?q".into())))
        );
        assert!(upstream_of(&p, &view("app.test", "/api/..%2fx")).is_err());
        assert!(upstream_of(&p, &view("app.test", "*")).is_err());
    }

    #[test]
    fn a_request_needs_one_host_and_connect_is_refused() {
        let table = parse_routes("routes:\n  - {host: app.test, upstream: 'http://127.0.0.1:1'}\n")
            .unwrap();
        let p = proxy_over(table);
        let two = RequestView {
            hosts: 2,
            ..view("app.test", "/")
        };
        assert_eq!(upstream_of(&p, &two), Err("NoHost".into()));
        let none = RequestView {
            host: None,
            hosts: 0,
            ..view("", "/")
        };
        assert_eq!(upstream_of(&p, &none), Err("NoHost".into()));
        let connect = RequestView {
            method: "CONNECT",
            ..view("app.test", "/")
        };
        assert_eq!(upstream_of(&p, &connect), Err("Connect".into()));
        // The authority of an absolute target wins over Host.
        let absolute = RequestView {
            authority: Some("app.test"),
            ..view("other.test", "/")
        };
        assert!(upstream_of(&p, &absolute).is_ok());
    }
}
