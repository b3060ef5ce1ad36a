//! The ingress proxy: route, record activity, hold while waking, forward.
use std::net::SocketAddr;
use std::path::PathBuf;

/// `siesta proxy` settings; each flag is also `SIESTA_<NAME>`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Admin config file (YAML): hold timeout, queue limits, ignored health checks.
    #[arg(long, env = "SIESTA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Traffic listen address.
    #[arg(long, env = "SIESTA_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Listen address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SIESTA_ADMIN_LISTEN", default_value = "127.0.0.1:8082")]
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
}

pub async fn run(_args: Args) -> crate::Result<()> {
    Err(crate::Error::Other("`proxy` is not built yet".into()))
}
