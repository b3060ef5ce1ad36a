//! Reloading the admin config when its file changes.
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{AdminConfig, parse};

/// How often [`watch()`] compares the file's content with the config in force.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Load the admin config once (an invalid file is an error), then keep the
/// returned receiver current: the returned future (spawn it) re-reads the file
/// every [`RELOAD_CHECK`] and, when its content changed, validates it and
/// either publishes it or rejects it, logging every error and keeping the
/// previous config. Without a file, the defaults apply and never change.
pub async fn watch(
    path: Option<PathBuf>,
) -> crate::Result<(
    watch::Receiver<Arc<AdminConfig>>,
    impl Future<Output = ()> + Send + 'static,
)> {
    watch_every(path, RELOAD_CHECK).await
}

pub(super) async fn watch_every(
    path: Option<PathBuf>,
    period: Duration,
) -> crate::Result<(
    watch::Receiver<Arc<AdminConfig>>,
    impl Future<Output = ()> + Send + 'static,
)> {
    let reloads = &crate::metrics::get().config_reloads;
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
                reloads.with_label_values(&["rejected"]).inc();
                crate::Error::Config(e.to_string())
            })?;
            reloads.with_label_values(&["ok"]).inc();
            (config, content)
        }
        None => (AdminConfig::default(), Vec::new()),
    };
    let (tx, rx) = watch::channel(Arc::new(config));
    let run = async move {
        match path {
            Some(path) => reload_loop(path, content, tx, period).await,
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
) {
    let reloads = &crate::metrics::get().config_reloads;
    let file = path.display().to_string();
    follow_file(&path, last, period, "admin config", || !tx.is_closed(), |content| {
        match parse(&file, &String::from_utf8_lossy(content)) {
            Ok(config) => {
                reloads.with_label_values(&["ok"]).inc();
                tracing::info!(file, "admin config reloaded");
                tx.send_replace(Arc::new(config));
            }
            Err(errors) => {
                reloads.with_label_values(&["rejected"]).inc();
                crate::metrics::error("config");
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
        let (mut rx, run) = watch_every(Some(path.clone()), Duration::from_millis(20))
            .await
            .expect("valid at start");
        let task = tokio::spawn(run);
        let idle = |rx: &watch::Receiver<Arc<AdminConfig>>| rx.borrow().defaults.idle_after;
        assert_eq!(idle(&rx), IdleAfter::After(Duration::from_secs(600)));
        let rejected = || {
            crate::metrics::get()
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
        let Err(e) = watch(Some(path)).await else {
            panic!("accepted an invalid config")
        };
        assert!(e.to_string().contains("defaults.idleAfter"), "{e}");
        let (rx, _run) = watch(None).await.expect("defaults");
        assert_eq!(**rx.borrow(), AdminConfig::default());
    }
}
