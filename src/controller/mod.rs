//! The controller: watches namespaces, their Activity Leases and workloads,
//! runs [`crate::decide`] for each opted-in namespace, and asks
//! [`crate::scaler`] to sleep or wake it. Only the leader writes.
use std::net::SocketAddr;
use std::path::PathBuf;

/// `siesta controller` settings; each flag is also `SIESTA_<NAME>`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Admin config file (YAML); reloaded when it changes. Optional.
    #[arg(long, env = "SIESTA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SIESTA_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    /// Listen address of the audit webhook (POST /audit, POST /audit/lines).
    #[arg(long, env = "SIESTA_AUDIT_LISTEN", default_value = "127.0.0.1:8443")]
    pub audit_listen: SocketAddr,
    /// Follow this audit log file (JSON lines) like `tail -F`.
    #[arg(long, env = "SIESTA_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
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
    #[arg(long, env = "SIESTA_AUDIT_MAX_BODY", default_value_t = 16 * 1024 * 1024)]
    pub audit_max_body: usize,
    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        env = "SIESTA_LEADER_ELECTION_NAMESPACE",
        default_value = "siesta-system"
    )]
    pub leader_election_namespace: String,
    /// This replica's identity in the leader Lease (default: the host name).
    #[arg(long, env = "SIESTA_IDENTITY")]
    pub identity: Option<String>,
}

pub async fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::Other("`controller` is not built yet".into()))
}
