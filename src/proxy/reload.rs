//! Re-reading the static routes file (`--routes`) while the proxy runs, as the
//! admin config is re-read ([`crate::reload::watch`]): its content is compared
//! every few seconds, a changed file that parses replaces the route table
//! whole, and one that does not is logged, error by error, while the routes in
//! force stay.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::{ErrorKind, Metrics};

use super::hold::Namespaces;
use super::routes::{RouteTable, parse_routes};

pub use crate::reload::RELOAD_CHECK;

/// Read and parse the routes file; the table and the content it came from.
pub fn load(path: &Path) -> crate::Result<(RouteTable, Vec<u8>)> {
    let content = std::fs::read(path)
        .map_err(|e| crate::Error::Config(format!("{}: cannot read: {e}", path.display())))?;
    let table = parse_routes(&String::from_utf8_lossy(&content))
        .map_err(|e| crate::Error::Config(format!("{}: {e}", path.display())))?;
    Ok((table, content))
}

/// Keep `routes` current with the file at `path`, whose table in force came
/// from `last`, looking every `period` until every receiver is gone. Held
/// requests look again at each new table.
pub async fn watch_routes_file(
    path: PathBuf,
    last: Vec<u8>,
    period: Duration,
    routes: watch::Sender<Arc<RouteTable>>,
    namespaces: Arc<Namespaces>,
    metrics: Arc<Metrics>,
) {
    let file = path.display().to_string();
    let open = || !routes.is_closed();
    crate::reload::follow_file(&path, last, period, "routes file", open, |content| {
        match parse_routes(&String::from_utf8_lossy(content)) {
            Ok(table) => {
                tracing::info!(file, "routes reloaded");
                routes.send_replace(Arc::new(table));
                namespaces.notify_all();
            }
            Err(errors) => {
                metrics.error(ErrorKind::Config);
                tracing::warn!(file, error = %errors, "routes file rejected; the routes in force stay");
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_changed_routes_file_replaces_the_table_and_a_bad_one_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("routes.yaml");
        let one = "routes:\n  - {host: a.example.test, upstream: 'http://127.0.0.1:1'}\n";
        std::fs::write(&path, one).expect("write");
        let (table, content) = load(&path).expect("valid");
        let (tx, mut rx) = watch::channel(Arc::new(table));
        let task = tokio::spawn(watch_routes_file(
            path.clone(),
            content,
            Duration::from_millis(10),
            tx,
            Arc::default(),
            Arc::default(),
        ));
        let upstream = |rx: &watch::Receiver<Arc<RouteTable>>, host: &str| {
            rx.borrow()
                .find(host, "/")
                .and_then(|r| r.upstream())
                .map(|u| u.authority.to_string())
        };

        let next = dir.path().join("next.yaml");
        std::fs::write(
            &next,
            "routes:\n  - {host: a.example.test, upstream: 'http://127.0.0.1:2'}\n",
        )
        .expect("write");
        std::fs::rename(&next, &path).expect("swap");
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("reloaded")
            .expect("sender alive");
        assert_eq!(
            upstream(&rx, "a.example.test").as_deref(),
            Some("127.0.0.1:2")
        );

        std::fs::write(
            &path,
            "routes:\n  - {host: 'bad host', upstream: ftp://x}\n",
        )
        .expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!rx.has_changed().expect("sender alive"), "rejected");
        assert_eq!(
            upstream(&rx, "a.example.test").as_deref(),
            Some("127.0.0.1:2")
        );
        task.abort();
    }
}
