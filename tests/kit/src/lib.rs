//! What Siesta's integration tests (`tests/*.rs`) and benches (`benches/*.rs`)
//! share, one job a module:
//!
//! - `repo`: the repository root.
//! - `cluster`: the local cluster (tests/cluster/): a kube client, kubectl,
//!   the shipped RBAC and ServiceAccount kubeconfigs.
//! - `namespaces`: unique names, namespace fixtures and their states.
//! - `fixtures`: workloads (Deployments, StatefulSets, CronJobs) and reading
//!   them back.
//! - `wait`: polling until something holds.
//! - `process`: `siesta` subprocesses that die with the test.
//! - `net`: loopback ports, HTTP clients and backends, answers' statuses.
//! - `proxy`: how this run drives the proxy under test.
//! - `flux`: Flux on the local cluster (tests/cluster/flux.sh): Git
//!   repositories on its Git server, GitRepository and Kustomization.
//! - [`prom`]: promtool, prometheus and the PromQL of the dashboard and rules.
//!
//! Everything but [`prom`] is at the crate root: `use siesta_test_kit::*;`.
//! Only the siesta package's own tests know where its binary is, so they pass
//! it in: `const SIESTA: &str = env!("CARGO_BIN_EXE_siesta");`.
mod cluster;
mod fixtures;
mod flux;
mod namespaces;
mod net;
mod podnet;
mod process;
pub mod prom;
mod proxy;
mod repo;
mod wait;

pub use cluster::*;
pub use fixtures::*;
pub use flux::*;
pub use namespaces::*;
pub use net::*;
pub use podnet::*;
pub use process::*;
pub use proxy::*;
pub use repo::*;
pub use wait::*;
