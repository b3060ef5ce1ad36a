//! Files that are watched and re-read while Siesta runs: the admin config (and,
//! through [`follow_file`], the proxy's routes file). The shell around the pure
//! [`crate::config`]: reading, comparing and publishing happen here.
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{AdminConfig, parse};
use crate::metrics::{ErrorKind, Metrics, ReloadResult};

/// How often [`watch()`] compares the file's content with the config in force.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Load the admin config once (an invalid file is an error), then keep the
/// returned receiver current: the returned future (spawn it) re-reads the file
/// every [`RELOAD_CHECK`] and, when its content changed, validates it and
/// either publishes it or rejects it, logging every error and keeping the
/// previous config. Without a file, the defaults apply and never change.
pub async fn watch(
    path: Option<PathBuf>,
    metrics: Arc<Metrics>,
) -> crate::Result<(
    watch::Receiver<Arc<AdminConfig>>,
    impl Future<Output = ()> + Send + 'static,
)> {
    watch_every(path, RELOAD_CHECK, metrics).await
}

pub(crate) async fn watch_every(
    path: Option<PathBuf>,
    period: Duration,
    metrics: Arc<Metrics>,
) -> crate::Result<(
    watch::Receiver<Arc<AdminConfig>>,
    impl Future<Output = ()> + Send + 'static,
)> {
    let (config, content) = match &path {
        Some(path) => {
            let content = std::fs::read(path).map_err(|e| {
                crate::Error::Config(format!("{}: cannot read: {e}", path.display()))
            })?;
            let config = parse(
                &path.display().to_string(),
                &String::from_utf8_lossy(&content),
            )
            .map_err(|e| {
                metrics.config_reload(ReloadResult::Rejected);
                crate::Error::Config(e.to_string())
            })?;
            metrics.config_reload(ReloadResult::Ok);
            (config, content)
        }
        None => (AdminConfig::default(), Vec::new()),
    };
    let (tx, rx) = watch::channel(Arc::new(config));
    let run = async move {
        match path {
            Some(path) => reload_loop(path, content, tx, period, metrics).await,
            None => {
                let _keep_sender = tx;
                std::future::pending::<()>().await;
            }
        }
    };
    Ok((rx, run))
}

async fn reload_loop(
    path: PathBuf,
    last: Vec<u8>,
    tx: watch::Sender<Arc<AdminConfig>>,
    period: Duration,
    metrics: Arc<Metrics>,
) {
    let file = path.display().to_string();
    follow_file(&path, last, period, "admin config", || !tx.is_closed(), |content| {
        match parse(&file, &String::from_utf8_lossy(content)) {
            Ok(config) => {
                metrics.config_reload(ReloadResult::Ok);
                tracing::info!(file, "admin config reloaded");
                tx.send_replace(Arc::new(config));
            }
            Err(errors) => {
                metrics.config_reload(ReloadResult::Rejected);
                metrics.error(ErrorKind::Config);
                for e in &errors.0 {
                    tracing::warn!(error = %e, "admin config rejected; the previous config stays in force");
                }
            }
        }
    })
    .await;
}

/// Look at the file at `path` every `period` while `open()` holds, and hand
/// each content that differs from the last one to `changed`. A file that
/// cannot be read (a ConfigMap update swaps a symlink: it may vanish for a
/// moment) is logged once and looked at again; what is in force stays.
pub async fn follow_file(
    path: &std::path::Path,
    mut last: Vec<u8>,
    period: Duration,
    what: &str,
    open: impl Fn() -> bool,
    mut changed: impl FnMut(&[u8]),
) {
    let file = path.display().to_string();
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut unreadable = false;
    while open() {
        ticker.tick().await;
        let content = match std::fs::read(path) {
            Ok(c) => {
                unreadable = false;
                c
            }
            Err(e) => {
                if !unreadable {
                    tracing::warn!(file, error = %e, "cannot read the {what}; what is in force stays");
                    unreadable = true;
                }
                continue;
            }
        };
        if content != last {
            changed(&content);
            last = content;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::IdleAfter;

    #[tokio::test]
    async fn a_changed_file_is_reloaded_and_an_invalid_one_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("siesta.yaml");
        std::fs::write(&path, "defaults: {idleAfter: 10m}\n").expect("write");
        let metrics = Arc::new(Metrics::new());
        let (mut rx, run) = watch_every(
            Some(path.clone()),
            Duration::from_millis(20),
            metrics.clone(),
        )
        .await
        .expect("valid at start");
        let task = tokio::spawn(run);
        let idle = |rx: &watch::Receiver<Arc<AdminConfig>>| rx.borrow().defaults.idle_after;
        assert_eq!(idle(&rx), IdleAfter::After(Duration::from_secs(600)));
        let rejected = || {
            metrics
                .config_reloads
                .with_label_values(&["rejected"])
                .get()
        };
        let before = rejected();

        // A ConfigMap update: a new file swapped in under the same name.
        let next = dir.path().join("next.yaml");
        std::fs::write(&next, "defaults: {idleAfter: 20m}\n").expect("write");
        std::fs::rename(&next, &path).expect("swap");
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("reloaded")
            .expect("sender alive");
        assert_eq!(idle(&rx), IdleAfter::After(Duration::from_secs(1200)));

        // An invalid file is rejected; the previous config stays in force.
        std::fs::write(&path, "defaults: {idleAfter: soon}\n").expect("write");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while rejected() == before && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The counter is shared with other tests: give this watcher a few more
        // checks of the invalid file before looking.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!rx.has_changed().expect("sender alive"));
        assert_eq!(idle(&rx), IdleAfter::After(Duration::from_secs(1200)));
        assert!(rejected() > before);
        task.abort();
    }

    #[tokio::test]
    async fn an_invalid_file_at_startup_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("siesta.yaml");
        std::fs::write(&path, "defaults: {idleAfter: soon}\n").expect("write");
        let Err(e) = watch(Some(path), Arc::default()).await else {
            panic!("accepted an invalid config")
        };
        assert!(e.to_string().contains("defaults.idleAfter"), "{e}");
        let (rx, _run) = watch(None, Arc::default()).await.expect("defaults");
        assert_eq!(**rx.borrow(), AdminConfig::default());
    }
}
