//! API activity from the API server's audit events. Every source (the webhook's
//! EventLists and JSON lines, a followed audit log file, `siesta audit replay`)
//! feeds one [`ingest::Ingest`]: parse ([`event`], fast path in [`scan`]), judge ([`rules`]), drop
//! repeated stages of one request, report to the [`crate::activity::Reporter`].
//!
//! [`run`] is what the controller starts: the [`webhook`] (what a client may
//! hold of it is in [`admission`]) and, with
//! a log file, the [`tail`] follower, with rules following admin config reloads.
pub mod admission;
pub mod event;
pub mod ingest;
pub mod replay;
pub mod rules;
pub mod scan;
pub mod tail;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

pub use ingest::{Ingest, Tally};
pub use rules::Rules;

use crate::activity::Reporter;
use crate::config::{AdminConfig, AuditIgnore};

/// Without a saved position, events this much older than the process start
/// are not counted from the audit log (a restart's gap is covered; older
/// lines were counted by the process before).
pub const RESTART_MARGIN: chrono::Duration = chrono::Duration::minutes(5);

/// Where audit events come from: the webhook, and optionally a followed log file.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub webhook: webhook::Settings,
    /// Follow this audit log file (JSON lines) like `tail -F`.
    pub log: Option<PathBuf>,
    /// Where the follower keeps its position (device, inode, offset), so a
    /// restart neither re-counts nor misses lines.
    pub log_state: Option<PathBuf>,
}

/// Serve the audit webhook and follow the audit log until one of them fails.
/// Rules follow `config`: each new admin config applies to events from then on.
pub async fn run(
    settings: &Settings,
    reporter: Reporter,
    mut config: watch::Receiver<Arc<AdminConfig>>,
) -> crate::Result<()> {
    let ingest = Ingest::new(
        Rules::new(&config.borrow_and_update().audit_ignore),
        reporter,
    );
    let webhook = webhook::Webhook::bind(&settings.webhook).await?;
    tracing::info!(address = %webhook.local_addr()?, "audit webhook listening");
    let rules = {
        let ingest = ingest.clone();
        async move {
            while config.changed().await.is_ok() {
                let ignore = config.borrow_and_update().audit_ignore.clone();
                ingest.set_rules(Rules::new(&ignore));
            }
            // The sender is gone: keep the last rules.
            std::future::pending::<()>().await
        }
    };
    let tail = {
        let ingest = ingest.clone();
        let options = settings.log.clone().map(|path| tail::Options {
            path,
            state_file: settings.log_state.clone(),
            not_before: Some(chrono::Utc::now() - RESTART_MARGIN),
        });
        async move {
            match options {
                Some(options) => tail::follow(options, ingest).await,
                None => std::future::pending().await,
            }
        }
    };
    tokio::select! {
        r = webhook.serve(ingest) => r,
        r = tail => r,
        () = rules => Ok(()),
    }
}

/// The `audit.ignore` lists of an admin config file, for `siesta audit replay --config`.
pub fn ignore_from_config_file(path: &Path) -> crate::Result<AuditIgnore> {
    crate::config::load(path)
        .map(|c| c.audit_ignore)
        .map_err(|e| crate::Error::Config(e.to_string()))
}
pub mod synthetic;
