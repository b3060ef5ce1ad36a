//! The Kubernetes client every component uses: Siesta's user agent (which the
//! audit ingest ignores) and tower layers that count requests and answers.
use std::sync::Arc;

use crate::metrics::Metrics;
use crate::{Error, Result, USER_AGENT};

/// A kube client whose requests carry Siesta's user agent, from `KUBECONFIG` or
/// the in-cluster service account.
pub async fn new(metrics: &Arc<Metrics>) -> Result<kube::Client> {
    with_agent(metrics, USER_AGENT).await
}

/// Which cluster a command talks to, as kubectl chooses: `--kubeconfig`
/// (else `KUBECONFIG`, else `~/.kube/config`, else in-cluster) and
/// `--context` (else the file's current context).
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub kubeconfig: Option<std::path::PathBuf>,
    pub context: Option<String>,
}

impl Target {
    async fn config(&self) -> Result<kube::Config> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match (&self.kubeconfig, &self.context) {
            (None, None) => kube::Config::infer().await.map_err(|e| e.to_string()),
            (Some(path), _) => match kube::config::Kubeconfig::read_from(path) {
                Ok(file) => kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
            (None, Some(_)) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| e.to_string()),
        };
        config.map_err(|e| Error::Other(format!("no cluster configuration: {e}")))
    }
}

/// Like [`new`], with another user agent (the CLI's).
pub async fn with_agent(metrics: &Arc<Metrics>, agent: &'static str) -> Result<kube::Client> {
    to(&Target::default(), metrics, agent).await
}

/// Like [`with_agent`], to the cluster of `target`.
pub async fn to(
    target: &Target,
    metrics: &Arc<Metrics>,
    agent: &'static str,
) -> Result<kube::Client> {
    let mut config = target.config().await?;
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(agent),
    ));
    // Count every request by verb, so Siesta's own load on the API server is visible.
    let m = metrics.clone();
    let counted =
        tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
            let watch = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
            let verb = if watch {
                "watch"
            } else {
                req.method().as_str()
            };
            m.kube_requests.with_label_values(&[verb]).inc();
            req
        });
    // ...and every answer by status, so a forbidden (403) request is never silent.
    let m = metrics.clone();
    let answered = tower::util::MapResponseLayer::new(
        move |res: http::Response<Box<kube::client::DynBody>>| {
            let code = match res.status().as_u16() {
                c @ (401 | 403 | 404 | 409 | 429) => c.to_string(),
                c => format!("{}xx", c / 100),
            };
            m.kube_responses.with_label_values(&[&code]).inc();
            res
        },
    );
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&answered)
        .with_layer(&counted)
        .build())
}
