//! The command line: flags grouped per component (`#[command(flatten)]`),
//! each turned once into that component's plain settings struct. Defaults come
//! from the components' own constants and `Default` impls, so each is written
//! once. Every flag is also an environment variable `SIESTA_<NAME>`; the two
//! admin listeners have their own (`SIESTA_CONTROLLER_ADMIN_LISTEN`,
//! `SIESTA_PROXY_ADMIN_LISTEN`) so one shell can run both processes.
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use siesta::audit::{self, webhook};
use siesta::{controller, proxy};

/// A duration flag: `90s`, `15m`, `2h`, shown in `--help` the same way.
#[derive(Clone, Copy, Debug)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Dur, String> {
        siesta::duration::parse(s).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&siesta::duration::format(self.0))
    }
}

/// `siesta controller`.
#[derive(clap::Args, Clone, Debug)]
pub struct Controller {
    /// Admin config file (YAML); reloaded when it changes. Optional.
    #[arg(long, env = "SIESTA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SIESTA_CONTROLLER_ADMIN_LISTEN", default_value_t = controller::ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    #[command(flatten)]
    pub audit: Audit,
    #[command(flatten)]
    pub leader: Leader,
    /// Only manage namespaces whose labels match this selector (default: all).
    #[arg(long, env = "SIESTA_NAMESPACE_SELECTOR")]
    pub namespace_selector: Option<String>,
    /// How often the savings counters advance for sleeping namespaces (they
    /// only set the counters' resolution).
    #[arg(long, env = "SIESTA_SAVINGS_INTERVAL", default_value_t = Dur(controller::Settings::default().savings_interval))]
    pub savings_interval: Dur,
    /// Reconciles at once (each is a handful of API requests).
    #[arg(long, env = "SIESTA_CONCURRENCY", default_value_t = controller::Settings::default().concurrency)]
    pub concurrency: u16,
    /// The proxy's Service (NAMESPACE/NAME): while a namespace sleeps, its
    /// Services are redirected to this Service's ready endpoints. Empty: no redirects.
    #[arg(long, env = "SIESTA_PROXY_SERVICE", default_value = "siesta-system/siesta-proxy", value_parser = siesta::redirect::parse_service)]
    // Spelled out so that clap takes the parser's Option as the value (empty: none).
    pub proxy_service: std::option::Option<(String, String)>,
    #[command(flatten)]
    pub redirect_ports: RedirectPorts,
}

/// The proxy ports redirects take (the controller allocates them, the proxy listens on them).
#[derive(clap::Args, Clone, Debug)]
pub struct RedirectPorts {
    /// Proxy ports for redirects of sleeping Services, FIRST-LAST (the
    /// controller and the proxy must be given the same range).
    #[arg(long, env = "SIESTA_REDIRECT_PORTS", default_value = "20000-27999", value_parser = siesta::redirect::parse_ports)]
    pub redirect_ports: std::ops::RangeInclusive<u16>,
}

/// Leader election among controller replicas.
#[derive(clap::Args, Clone, Debug)]
pub struct Leader {
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "SIESTA_LEADER_ELECTION_NAMESPACE", default_value_t = controller::Settings::default().leader_election_namespace)]
    pub leader_election_namespace: String,
    /// This replica's identity in the leader Lease (default: the host name).
    #[arg(long, env = "SIESTA_IDENTITY")]
    pub identity: Option<String>,
    /// How long a leader Lease lasts without renewal; a standby takes over after it.
    #[arg(long, env = "SIESTA_LEADER_LEASE_DURATION", default_value_t = Dur(controller::Settings::default().leader_lease_duration))]
    pub leader_lease_duration: Dur,
}

/// The audit ingest: the webhook and the log follower.
#[derive(clap::Args, Clone, Debug)]
pub struct Audit {
    /// Listen address of the audit webhook (POST /audit, POST /audit/lines).
    #[arg(long, env = "SIESTA_AUDIT_LISTEN", default_value_t = webhook::LISTEN)]
    pub audit_listen: SocketAddr,
    /// Follow this audit log file (JSON lines) like `tail -F`.
    #[arg(long, env = "SIESTA_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Where the audit log follower keeps its position (device, inode, offset),
    /// so a restart neither re-counts nor misses lines.
    #[arg(long, env = "SIESTA_AUDIT_LOG_STATE")]
    pub audit_log_state: Option<PathBuf>,
    /// TLS certificate (PEM) for the audit listener; required off loopback.
    #[arg(long, env = "SIESTA_AUDIT_TLS_CERT")]
    pub audit_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the audit listener.
    #[arg(long, env = "SIESTA_AUDIT_TLS_KEY")]
    pub audit_tls_key: Option<PathBuf>,
    /// CA bundle (PEM): audit clients must present a certificate it signed.
    #[arg(long, env = "SIESTA_AUDIT_CLIENT_CA")]
    pub audit_client_ca: Option<PathBuf>,
    /// File holding the bearer token audit clients must send.
    #[arg(long, env = "SIESTA_AUDIT_TOKEN_FILE")]
    pub audit_token_file: Option<PathBuf>,
    /// Largest accepted audit request body, in bytes.
    #[arg(long, env = "SIESTA_AUDIT_MAX_BODY", default_value_t = webhook::MAX_BODY)]
    pub audit_max_body: usize,
    /// Audit connections one client address may have open at once; past it a
    /// new one is closed unread. 0: no limit per address.
    #[arg(long, env = "SIESTA_AUDIT_MAX_CONNECTIONS_PER_PEER", default_value_t = webhook::MAX_CONNECTIONS_PER_PEER)]
    pub audit_max_connections_per_peer: usize,
    /// Bytes of audit request bodies held at once (being read, queued or
    /// parsed); past it a request gets 429 with Retry-After. Never less than
    /// --audit-max-body.
    #[arg(long, env = "SIESTA_AUDIT_MAX_BODIES_BYTES", default_value_t = webhook::MAX_BODIES_BYTES)]
    pub audit_max_bodies_bytes: usize,
    /// From accepting an audit connection to the end of its first request head
    /// (the TLS handshake included); the connection is closed after it.
    #[arg(long, env = "SIESTA_AUDIT_FIRST_HEAD_TIMEOUT", default_value_t = Dur(webhook::FIRST_HEAD_TIMEOUT))]
    pub audit_first_head_timeout: Dur,
    /// A kept-alive audit connection that has not sent its next whole request
    /// head by then is disconnected.
    #[arg(long, env = "SIESTA_AUDIT_HEADER_TIMEOUT", default_value_t = Dur(webhook::HEADER_TIMEOUT))]
    pub audit_header_timeout: Dur,
    /// An audit request body not received whole by then gets 408.
    #[arg(long, env = "SIESTA_AUDIT_BODY_TIMEOUT", default_value_t = Dur(webhook::BODY_TIMEOUT))]
    pub audit_body_timeout: Dur,
}

impl From<Audit> for audit::Settings {
    fn from(a: Audit) -> audit::Settings {
        audit::Settings {
            webhook: webhook::Settings {
                listen: Some(a.audit_listen),
                tls_cert: a.audit_tls_cert,
                tls_key: a.audit_tls_key,
                client_ca: a.audit_client_ca,
                token_file: a.audit_token_file,
                max_body: a.audit_max_body,
                first_head_timeout: a.audit_first_head_timeout.0,
                header_timeout: a.audit_header_timeout.0,
                body_timeout: a.audit_body_timeout.0,
                max_connections_per_peer: a.audit_max_connections_per_peer,
                max_bodies_bytes: a.audit_max_bodies_bytes,
            },
            log: a.audit_log,
            log_state: a.audit_log_state,
        }
    }
}

impl From<Controller> for controller::Settings {
    fn from(c: Controller) -> controller::Settings {
        controller::Settings {
            config: c.config,
            admin_listen: c.admin_listen,
            audit: c.audit.into(),
            leader_election_namespace: c.leader.leader_election_namespace,
            identity: c.leader.identity,
            leader_lease_duration: c.leader.leader_lease_duration.0,
            namespace_selector: c.namespace_selector,
            savings_interval: c.savings_interval.0,
            concurrency: c.concurrency,
            redirect: controller::redirect::Settings {
                proxy_service: c.proxy_service,
                ports: c.redirect_ports.redirect_ports,
            },
        }
    }
}

/// `siesta proxy`.
#[derive(clap::Args, Clone, Debug)]
pub struct Proxy {
    /// Admin config file (YAML): hold timeout, queue limits, ignored health checks.
    #[arg(long, env = "SIESTA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Traffic listen address.
    #[arg(long, env = "SIESTA_LISTEN", default_value_t = proxy::LISTEN)]
    pub listen: SocketAddr,
    /// Listen address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SIESTA_PROXY_ADMIN_LISTEN", default_value_t = proxy::ADMIN_LISTEN)]
    pub admin_listen: SocketAddr,
    /// Static routes file; without it, routes come from Ingresses of class `siesta`.
    #[arg(long, env = "SIESTA_ROUTES")]
    pub routes: Option<PathBuf>,
    /// TLS certificate (PEM) for the traffic listener (enables h2 over TLS).
    #[arg(long, env = "SIESTA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "SIESTA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Threads serving traffic, each with its own single-threaded runtime (an
    /// event loop per core, as nginx workers); 0 means one per CPU.
    #[arg(long, env = "SIESTA_WORKERS", default_value_t = proxy::Settings::default().workers)]
    pub workers: usize,
    /// At SIGTERM or Ctrl-C, how long requests in flight may take to finish
    /// (new connections are refused at once); 0 closes everything at once.
    #[arg(long, env = "SIESTA_DRAIN_TIMEOUT", default_value_t = Dur(proxy::Settings::default().drain_timeout))]
    pub drain_timeout: Dur,
    /// Serve plain HTTP/1.1 requests by the fast path; `false` sends every
    /// request through hyper (the same decisions, encoded by hyper).
    #[arg(long, env = "SIESTA_HTTP1_FAST_PATH", default_value_t = proxy::Settings::default().http1_fast_path, action = clap::ArgAction::Set)]
    pub http1_fast_path: bool,
}

impl From<Proxy> for proxy::Settings {
    fn from(p: Proxy) -> proxy::Settings {
        proxy::Settings {
            config: p.config,
            listen: p.listen,
            admin_listen: p.admin_listen,
            routes: p.routes,
            tls_cert: p.tls_cert,
            tls_key: p.tls_key,
            workers: p.workers,
            drain_timeout: p.drain_timeout.0,
            http1_fast_path: p.http1_fast_path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(clap::Subcommand)]
    enum Sub {
        Controller(Box<Controller>),
        Proxy(Box<Proxy>),
    }

    fn controller(args: &[&str]) -> controller::Settings {
        match Cli::try_parse_from([&["siesta", "controller"], args].concat())
            .expect("flags parse")
            .command
        {
            Sub::Controller(c) => (*c).into(),
            Sub::Proxy(_) => unreachable!("parsed as controller"),
        }
    }

    #[test]
    fn no_flags_give_the_components_own_defaults() {
        let s = controller(&[]);
        let d = controller::Settings::default();
        assert_eq!(
            (s.admin_listen, s.concurrency, s.savings_interval),
            (d.admin_listen, d.concurrency, d.savings_interval)
        );
        let w = webhook::Settings::default();
        assert_eq!(s.audit.webhook.max_body, w.max_body);
        assert_eq!(s.audit.webhook.header_timeout, w.header_timeout);
        assert_eq!(s.audit.webhook.first_head_timeout, w.first_head_timeout);
        assert_eq!(s.audit.webhook.listen, Some(webhook::LISTEN));
    }

    #[test]
    fn flags_reach_the_settings_of_their_component() {
        let s = controller(&[
            "--audit-max-body",
            "1024",
            "--audit-first-head-timeout",
            "1s",
            "--leader-lease-duration",
            "2s",
            "--audit-log",
            "/var/log/audit.log",
        ]);
        assert_eq!(s.audit.webhook.max_body, 1024);
        assert_eq!(s.audit.webhook.first_head_timeout, Duration::from_secs(1));
        assert_eq!(s.leader_lease_duration, Duration::from_secs(2));
        assert_eq!(s.audit.log.as_deref(), Some("/var/log/audit.log".as_ref()));
        let bad = Cli::try_parse_from(["siesta", "controller", "--savings-interval", "soon"]);
        assert!(bad.is_err(), "a malformed duration is refused");
    }
}
