//! Siesta puts idle Kubernetes namespaces to sleep and wakes them on the first request.
//!
//! The data flow, in the order a request travels:
//!
//! - [`audit`] turns API-server audit events into activity; [`proxy`] does the same
//!   for HTTP requests and holds them while a namespace wakes.
//! - [`activity`] keeps the newest activity per namespace in memory and persists it,
//!   coalesced, to the namespace's Activity Lease (the wake request when asleep).
//! - [`annotations`] and [`config`] say what a namespace wants; [`schedule`] says
//!   whether a schedule is awake at an instant; [`decide`] is the pure function that
//!   turns all of it into sleep, wake or keep, and when to look again.
//! - [`controller`] watches the cluster and runs [`decide`]; [`scaler`] is the only
//!   writer of workload replicas, and records originals in the same request;
//!   [`lifecycle`] says when a namespace nobody uses is marked and deleted.
//! - [`metrics`] and [`admin`] expose what happens to Prometheus; [`status`] and
//!   [`report`] print it for people.
#![forbid(unsafe_code)]

pub mod activity;
pub mod admin;
pub mod annotations;
pub mod audit;
pub mod client;
pub mod config;
pub mod controller;
pub mod decide;
pub mod duration;
pub mod gateway;
pub mod gitops;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod proxy;
pub mod redirect;
pub mod reload;
pub mod report;
pub mod resources;
pub mod scaler;
pub mod schedule;
pub mod slots;
pub mod status;
pub mod supervisor;
pub mod workloads;

/// The user agent of every API request Siesta makes; the audit ingest ignores it.
pub const USER_AGENT: &str = concat!("siesta/", env!("CARGO_PKG_VERSION"));
/// The user agent of the CLI (`siesta status`, `sleep`, `wake`): not ignored
/// by the audit ingest, so a person's `siesta wake` counts as their activity.
pub const CLI_USER_AGENT: &str = concat!("siesta-cli/", env!("CARGO_PKG_VERSION"));
/// The field manager of every write Siesta makes (for GitOps `ignoreDifferences`).
pub const FIELD_MANAGER: &str = "siesta";

/// The crate's error type; `anyhow` is used only in `main`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    #[error("config: {0}")]
    Config(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
