//! The route table: which upstream (and which namespace) a request's host and
//! path go to. Built from the static routes file or from Ingresses; read on
//! every request, replaced whole when its sources change.
//!
//! Host rules: an exact host beats a wildcard (`*.example.test`, one label,
//! as Ingress defines it), which beats `*`. Path rules within a host: `Exact`
//! beats any prefix, then the longest prefix wins. Prefixes match whole path
//! segments (`/api` matches `/api` and `/api/x`, not `/apix`).
use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use prometheus::IntCounter;

use serde::Deserialize;

use super::FastMap;
use crate::metrics::Metrics;

/// Where a matched request goes.
#[derive(Debug)]
pub struct Route {
    /// Activity and wake-ups go to this namespace; `None` counts nothing.
    pub namespace: Option<Arc<str>>,
    pub backend: Backend,
    /// Millisecond of the last activity report: an awake namespace is reported
    /// at most once per millisecond per route, which keeps the newest activity
    /// exact to that and the per-request cost to an atomic load.
    last_report_ms: AtomicI64,
    /// `siesta_proxy_requests_total` for this namespace, by status class.
    counters: OnceLock<[IntCounter; 5]>,
}

#[derive(Debug)]
pub enum Backend {
    /// A fixed `http://host:port` upstream (routes file).
    Static(http::uri::Authority),
    /// A Service port, resolved to ready endpoints (Ingress).
    Service(ServiceTarget),
    /// A backend the route may not use or that does not exist (an HTTPRoute's
    /// refused or unresolved backendRef): answered 500, as Gateway API says.
    Invalid,
}

/// A Service port as the route table last resolved it.
#[derive(Debug, Default)]
pub struct ServiceTarget {
    pub name: String,
    /// Ready endpoint addresses; round-robin.
    pub endpoints: Vec<SocketAddr>,
    /// An ExternalName Service: its DNS name and port.
    pub external: Option<http::uri::Authority>,
    /// The upstream speaks HTTP/2 without TLS (appProtocol h2c or grpc).
    pub h2c: bool,
    next: AtomicUsize,
}

impl ServiceTarget {
    pub fn new(
        name: String,
        endpoints: Vec<SocketAddr>,
        external: Option<http::uri::Authority>,
        h2c: bool,
    ) -> Self {
        ServiceTarget {
            name,
            endpoints,
            external,
            h2c,
            next: AtomicUsize::new(0),
        }
    }
}

/// The `namespace` label of requests whose route names none.
pub const NO_NAMESPACE: &str = "none";
/// The `code` label values, by status / 100 - 1.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// A resolved upstream for one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    pub authority: http::uri::Authority,
    pub h2c: bool,
}

impl Route {
    pub fn new(namespace: Option<Arc<str>>, backend: Backend) -> Route {
        Route {
            namespace,
            backend,
            last_report_ms: AtomicI64::new(i64::MIN),
            counters: OnceLock::new(),
        }
    }

    /// Whether activity at `now_ms` should be reported (false when this route
    /// reported within the same millisecond).
    pub fn report_due(&self, now_ms: i64) -> bool {
        self.last_report_ms.swap(now_ms, Ordering::Relaxed) != now_ms
    }

    /// The request counter for a status class (index 0 = 1xx .. 4 = 5xx).
    pub fn requests(&self, metrics: &Metrics, class: usize) -> &IntCounter {
        let counters = self.counters.get_or_init(|| {
            let ns = self.namespace.as_deref().unwrap_or(NO_NAMESPACE);
            let family = &metrics.proxy_requests;
            STATUS_CLASSES.map(|c| family.with_label_values(&[ns, c]))
        });
        &counters[class.min(4)]
    }

    /// The upstream to send one request to, or `None` while no endpoint is ready.
    pub fn upstream(&self) -> Option<Upstream> {
        match &self.backend {
            Backend::Static(a) => Some(Upstream {
                authority: a.clone(),
                h2c: false,
            }),
            Backend::Service(s) => {
                if let Some(a) = &s.external {
                    return Some(Upstream {
                        authority: a.clone(),
                        h2c: s.h2c,
                    });
                }
                if s.endpoints.is_empty() {
                    return None;
                }
                let i = s.next.fetch_add(1, Ordering::Relaxed) % s.endpoints.len();
                let authority = s.endpoints[i].to_string().parse().ok()?;
                Some(Upstream {
                    authority,
                    h2c: s.h2c,
                })
            }
            Backend::Invalid => None,
        }
    }

    /// Whether an endpoint is ready (always for static and ExternalName routes).
    pub fn ready(&self) -> bool {
        match &self.backend {
            Backend::Static(_) | Backend::Invalid => true,
            Backend::Service(s) => s.external.is_some() || !s.endpoints.is_empty(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => {
                let p = p.trim_end_matches('/');
                p.is_empty()
                    || (path.starts_with(p)
                        && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/'))
            }
        }
    }

    /// Higher wins: any exact match, then longer prefixes.
    fn rank(&self) -> (bool, usize) {
        match self {
            PathMatch::Exact(p) => (true, p.len()),
            PathMatch::Prefix(p) => (false, p.trim_end_matches('/').len()),
        }
    }
}

#[derive(Debug, Default)]
struct HostRules {
    /// Sorted best first.
    rules: Vec<(PathMatch, Arc<Route>)>,
}

impl HostRules {
    fn push(&mut self, m: PathMatch, route: Arc<Route>) {
        // The first rule for an identical path wins (Ingress conflict rule: oldest first).
        if self.rules.iter().any(|(existing, _)| *existing == m) {
            return;
        }
        self.rules.push((m, route));
        self.rules.sort_by_key(|r| std::cmp::Reverse(r.0.rank()));
    }

    fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.rules
            .iter()
            .find(|(m, _)| m.matches(path))
            .map(|(_, r)| r)
    }
}

/// Hosts to rules, and redirect ports to the Service ports they stand for.
/// Immutable once built; swapped whole.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: FastMap<String, HostRules>,
    /// Keyed by the suffix after `*`, e.g. `.example.test`.
    wildcard: FastMap<String, HostRules>,
    any: Option<HostRules>,
    /// Redirect ports ([`crate::redirect`]): routed by the port a connection
    /// came in on, whatever its host and path.
    ports: FastMap<u16, PortRoute>,
}

/// A redirect port's route, and how its connections are served.
#[derive(Debug)]
pub struct PortRoute {
    pub route: Arc<Route>,
    /// HTTP (record, wake page or hold, forward per request); else plain TCP
    /// (hold the connection, then splice it to an endpoint).
    pub http: bool,
}

/// Lowercase, without port or a trailing dot (borrowed when it is already
/// so). `None` if it is not a plausible host.
pub fn normalize_host(host: &str) -> Option<Cow<'_, str>> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal
        &host[..rest.find(']')? + 2]
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty()
        || name.len() > 253
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:*".contains(&b))
    {
        return None;
    }
    Some(if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    })
}

impl RouteTable {
    /// Add a rule; `host` is exact, `*.suffix` or `*` (empty means `*`).
    pub fn add(&mut self, host: &str, path: PathMatch, route: Arc<Route>) {
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() || host == "*" {
            self.any
                .get_or_insert_with(HostRules::default)
                .push(path, route);
        } else if let Some(suffix) = host.strip_prefix('*') {
            self.wildcard
                .entry(suffix.to_string())
                .or_default()
                .push(path, route);
        } else {
            self.exact.entry(host).or_default().push(path, route);
        }
    }

    /// The route for a normalized host and a path.
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        if let Some(r) = self.exact.get(host).and_then(|rules| rules.find(path)) {
            return Some(r);
        }
        if let Some((_, suffix)) = host.split_once('.') {
            let key = &host[host.len() - suffix.len() - 1..];
            if let Some(r) = self.wildcard.get(key).and_then(|rules| rules.find(path)) {
                return Some(r);
            }
        }
        self.any.as_ref().and_then(|rules| rules.find(path))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty() && self.any.is_none()
    }

    /// Route every connection on redirect port `port` to `route`.
    pub fn add_port(&mut self, port: u16, route: Arc<Route>, http: bool) {
        self.ports.insert(port, PortRoute { route, http });
    }

    /// The route of a redirect port.
    pub fn port(&self, port: u16) -> Option<&PortRoute> {
        self.ports.get(&port)
    }

    /// Every redirect port, and whether it serves HTTP.
    pub fn ports(&self) -> impl Iterator<Item = (u16, bool)> + '_ {
        self.ports.iter().map(|(p, r)| (*p, r.http))
    }
}

/// The routes file as written (DESIGN.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRoute {
    host: String,
    #[serde(default)]
    path_prefix: Option<String>,
    upstream: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// Parse a routes file; every bad route is reported with its index.
pub fn parse_routes(text: &str) -> Result<RouteTable, String> {
    let file: RoutesFile =
        serde_yaml_ng::from_str(text).map_err(|e| format!("routes file: {e}"))?;
    let mut table = RouteTable::default();
    let mut errors = Vec::new();
    for (i, raw) in file.routes.into_iter().enumerate() {
        match parse_route(&raw) {
            Ok((host, path, route)) => table.add(&host, path, Arc::new(route)),
            Err(e) => errors.push(format!("routes[{i}]: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(table)
    } else {
        Err(errors.join("; "))
    }
}

fn parse_route(raw: &RawRoute) -> Result<(String, PathMatch, Route), String> {
    let host = raw.host.trim();
    valid_host_rule(host)?;
    let prefix = raw.path_prefix.clone().unwrap_or_else(|| "/".into());
    if !prefix.starts_with('/') {
        return Err(format!("pathPrefix {prefix:?} does not start with /"));
    }
    let uri: http::Uri = raw
        .upstream
        .parse()
        .map_err(|e| format!("upstream {:?}: {e}", raw.upstream))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "upstream {:?}: only http:// upstreams are supported",
            raw.upstream
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("upstream {:?} has no host", raw.upstream))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "upstream {:?}: a path is not supported; use pathPrefix",
            raw.upstream
        ));
    }
    let namespace = match raw.namespace.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(ns) if crate::activity::valid_namespace(ns) => Some(Arc::from(ns)),
        Some(ns) => return Err(format!("namespace {ns:?} is not a valid namespace name")),
    };
    Ok((
        host.to_string(),
        PathMatch::Prefix(prefix),
        Route::new(namespace, Backend::Static(authority)),
    ))
}

fn valid_host_rule(host: &str) -> Result<(), String> {
    if host == "*" {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("host {host:?} is not a host name, *.domain or *"))
    }
}

/// Read and parse a routes file.
pub fn load_routes(path: &Path) -> crate::Result<RouteTable> {
    let text = std::fs::read_to_string(path)?;
    parse_routes(&text).map_err(|e| crate::Error::Config(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(yaml: &str) -> RouteTable {
        parse_routes(yaml).unwrap()
    }

    fn target(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        let r = t.find(&normalize_host(host)?, path)?;
        Some(r.upstream()?.authority.to_string())
    }

    const ROUTES: &str = r#"
routes:
  - host: app.example.test
    upstream: http://127.0.0.1:1
    namespace: team-a
  - host: app.example.test
    pathPrefix: /api
    upstream: http://127.0.0.1:2
  - host: "*.example.test"
    upstream: http://127.0.0.1:3
  - host: "*"
    pathPrefix: /shared
    upstream: http://127.0.0.1:4
"#;

    #[test]
    fn exact_host_beats_wildcard_beats_any() {
        let t = table(ROUTES);
        assert_eq!(
            target(&t, "app.example.test", "/").as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(
            target(&t, "other.example.test", "/").as_deref(),
            Some("127.0.0.1:3")
        );
        assert_eq!(
            target(&t, "elsewhere.test", "/shared/x").as_deref(),
            Some("127.0.0.1:4")
        );
        assert_eq!(target(&t, "elsewhere.test", "/"), None);
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let t = table(ROUTES);
        assert_eq!(target(&t, "a.b.example.test", "/"), None);
        assert_eq!(target(&t, "example.test", "/"), None);
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let t = table(ROUTES);
        assert_eq!(
            target(&t, "app.example.test", "/api").as_deref(),
            Some("127.0.0.1:2")
        );
        assert_eq!(
            target(&t, "app.example.test", "/api/v1").as_deref(),
            Some("127.0.0.1:2")
        );
        assert_eq!(
            target(&t, "app.example.test", "/apix").as_deref(),
            Some("127.0.0.1:1")
        );
    }

    #[test]
    fn hosts_are_matched_without_case_port_or_trailing_dot() {
        let t = table(ROUTES);
        assert_eq!(
            target(&t, "APP.Example.Test:8080", "/").as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(
            target(&t, "app.example.test.", "/").as_deref(),
            Some("127.0.0.1:1")
        );
        // A host already in lowercase is looked up without a copy.
        assert!(matches!(
            normalize_host("app.example.test:80"),
            Some(Cow::Borrowed("app.example.test"))
        ));
        assert_eq!(
            normalize_host("App.Example.Test").as_deref(),
            Some("app.example.test")
        );
    }

    #[test]
    fn exact_paths_beat_prefixes() {
        let mut t = RouteTable::default();
        let r = |port: u16| {
            Arc::new(Route::new(
                None,
                Backend::Static(format!("127.0.0.1:{port}").parse().unwrap()),
            ))
        };
        t.add("h", PathMatch::Prefix("/a/b".into()), r(1));
        t.add("h", PathMatch::Exact("/a".into()), r(2));
        t.add("h", PathMatch::Prefix("/".into()), r(3));
        assert_eq!(target(&t, "h", "/a").as_deref(), Some("127.0.0.1:2"));
        assert_eq!(target(&t, "h", "/a/").as_deref(), Some("127.0.0.1:3"));
        assert_eq!(target(&t, "h", "/a/b/c").as_deref(), Some("127.0.0.1:1"));
    }

    #[test]
    fn bad_routes_are_all_reported_with_their_index() {
        let err = parse_routes(
            "routes:\n- {host: 'a b', upstream: 'http://x:1'}\n- {host: ok.test, upstream: 'https://x:1'}\n- {host: ok.test, upstream: 'http://x:1', namespace: Bad_NS}\n",
        )
        .unwrap_err();
        assert!(
            err.contains("routes[0]") && err.contains("routes[1]") && err.contains("routes[2]"),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(
            parse_routes("routes:\n- {host: a, upstream: 'http://x:1', pathprefix: /}\n").is_err()
        );
    }

    #[test]
    fn service_routes_round_robin_over_ready_endpoints() {
        let eps = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        let r = Route::new(
            None,
            Backend::Service(ServiceTarget::new("s".into(), eps, None, false)),
        );
        let a = r.upstream().unwrap().authority.to_string();
        let b = r.upstream().unwrap().authority.to_string();
        assert_ne!(a, b);
        let empty = Route::new(None, Backend::Service(ServiceTarget::default()));
        assert!(!empty.ready() && empty.upstream().is_none());
    }

    #[test]
    fn activity_is_reported_once_per_millisecond_per_route() {
        let r = Route::new(
            Some(Arc::from("team-a")),
            Backend::Static("127.0.0.1:1".parse().unwrap()),
        );
        assert!(r.report_due(1_000));
        assert!(!r.report_due(1_000));
        assert!(r.report_due(1_001));
    }

    proptest! {
        #[test]
        fn the_routes_parser_never_panics(text in "\\PC{0,300}") {
            let _ = parse_routes(&text);
        }

        #[test]
        fn parsed_routes_are_found_by_their_host(
            host in "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
            prefix in "(/[a-z0-9]{1,5}){0,3}",
            port in 1u16..,
        ) {
            let yaml = format!("routes:\n- host: {host}\n  pathPrefix: \"{}\"\n  upstream: http://127.0.0.1:{port}\n", if prefix.is_empty() { "/" } else { &prefix });
            let t = parse_routes(&yaml).unwrap();
            let found = target(&t, &host, &format!("{prefix}/deeper"));
            prop_assert_eq!(found, Some(format!("127.0.0.1:{port}")));
        }

        #[test]
        fn lookups_of_arbitrary_hosts_never_panic(host in "\\PC{0,80}", path in "\\PC{0,80}") {
            let t = table(ROUTES);
            if let Some(h) = normalize_host(&host) {
                let _ = t.find(&h, &path);
            }
        }
    }
}
