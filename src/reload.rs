//! Files that are watched and re-read while Siesta runs: the admin config with
//! the holiday calendars it names (and, through [`follow_file`], the proxy's
//! routes file). The shell around the pure [`crate::config`]: reading,
//! comparing and publishing happen here.
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{AdminConfig, ConfigErrors, load_with};
use crate::metrics::{ErrorKind, Metrics, ReloadResult};

/// How often [`watch()`] compares the file's content with the config in force.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Load the admin config once (an invalid file is an error), then keep the
/// returned receiver current: the returned future (spawn it) re-reads the file
/// and the calendars it names every [`RELOAD_CHECK`] and, when a content
/// changed, validates them and either publishes the new config or rejects it,
/// logging every error and keeping the previous config. Without a file, the
/// defaults apply and never change.
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
    let (config, sources) = match &path {
        Some(path) => {
            let (config, sources) = read_config(path);
            let config = config.map_err(|e| {
                metrics.config_reload(ReloadResult::Rejected);
                crate::Error::Config(e.to_string())
            })?;
            metrics.config_reload(ReloadResult::Ok);
            (config, sources)
        }
        None => (AdminConfig::default(), Vec::new()),
    };
    let (tx, rx) = watch::channel(Arc::new(config));
    let run = async move {
        match path {
            Some(path) => reload_loop(path, sources, tx, period, metrics).await,
            None => {
                let _keep_sender = tx;
                std::future::pending::<()>().await;
            }
        }
    };
    Ok((rx, run))
}

/// The files one read of the config used (the config first, then each
/// calendar), with what each held; `None`: it could not be read.
type Sources = Vec<(PathBuf, Option<Vec<u8>>)>;

/// Read the config and its calendars, remembering what was read.
fn read_config(path: &Path) -> (Result<AdminConfig, ConfigErrors>, Sources) {
    let mut sources = Sources::new();
    let config = load_with(path, &mut |p| {
        let read = std::fs::read(p);
        sources.push((p.to_path_buf(), read.as_ref().ok().cloned()));
        read
    });
    (config, sources)
}

async fn reload_loop(
    path: PathBuf,
    sources: Sources,
    tx: watch::Sender<Arc<AdminConfig>>,
    period: Duration,
    metrics: Arc<Metrics>,
) {
    let file = path.display().to_string();
    follow_files(sources, period, "admin config", || !tx.is_closed(), |_| {
        let (config, sources) = read_config(&path);
        match config {
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
        sources
    })
    .await;
}

/// Look at the file at `path` every `period` while `open()` holds, and hand
/// each content that differs from the last one to `changed`. A file that
/// cannot be read (a ConfigMap update swaps a symlink: it may vanish for a
/// moment) is logged once and looked at again; what is in force stays.
pub async fn follow_file(
    path: &Path,
    last: Vec<u8>,
    period: Duration,
    what: &str,
    open: impl Fn() -> bool,
    mut changed: impl FnMut(&[u8]),
) {
    let sources = vec![(path.to_path_buf(), Some(last))];
    follow_files(sources, period, what, open, |now| {
        if let Some((_, Some(content))) = now.first() {
            changed(content);
        }
        now.clone()
    })
    .await;
}

/// [`follow_file`] for a set of files: when any differs from `last`,
/// `changed` gets them all as they are now and returns the set to watch from
/// then on (a new config may name other calendars). A file that was read
/// before and cannot be read now is logged once and the set looked at again.
async fn follow_files(
    mut last: Sources,
    period: Duration,
    what: &str,
    open: impl Fn() -> bool,
    mut changed: impl FnMut(&Sources) -> Sources,
) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut unreadable = false;
    while open() {
        ticker.tick().await;
        let reads: Vec<_> = last.iter().map(|(path, _)| std::fs::read(path)).collect();
        let vanished = last.iter().zip(&reads).find_map(|((path, was), is)| {
            Some((path, is.as_ref().err().filter(|_| was.is_some())?))
        });
        if let Some((path, e)) = vanished {
            if !unreadable {
                let file = path.display().to_string();
                tracing::warn!(file, error = %e, "cannot read the {what}; what is in force stays");
                unreadable = true;
            }
            continue;
        }
        let now: Sources = last
            .iter()
            .zip(reads)
            .map(|((path, _), read)| (path.clone(), read.ok()))
            .collect();
        unreadable = false;
        if now != last {
            last = changed(&now);
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
    async fn a_changed_calendar_is_reloaded_and_a_malformed_one_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("siesta.yaml");
        let calendar = dir.path().join("holidays.ics");
        let ics = |date: &str| {
            format!(
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:{date}\nEND:VEVENT\nEND:VCALENDAR\n"
            )
        };
        std::fs::write(&calendar, ics("20261224")).expect("write");
        std::fs::write(
            &path,
            "schedules:\n  office: {awakeHours: always, holidays: {calendars: [holidays.ics], timezone: UTC}}\n",
        )
        .expect("write");
        let (mut rx, run) = watch_every(Some(path), Duration::from_millis(20), Arc::default())
            .await
            .expect("valid at start");
        let task = tokio::spawn(run);
        let first =
            |rx: &watch::Receiver<Arc<AdminConfig>>| match rx.borrow().schedules.get("office") {
                Some(crate::schedule::Schedule::Holidays(h)) => {
                    h.holidays.spans().first().map(|s| s.0.to_string())
                }
                _ => None,
            };
        assert_eq!(first(&rx).as_deref(), Some("2026-12-24"));

        std::fs::write(&calendar, ics("20261231")).expect("write");
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("reloaded")
            .expect("sender alive");
        assert_eq!(first(&rx).as_deref(), Some("2026-12-31"));

        // A malformed calendar changes nothing.
        std::fs::write(&calendar, "BEGIN:VCALENDAR\nBEGIN:VEVENT\n").expect("write");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!rx.has_changed().expect("sender alive"));
        assert_eq!(first(&rx).as_deref(), Some("2026-12-31"));
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
