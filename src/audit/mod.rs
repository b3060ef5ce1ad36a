//! API activity from the API server's audit events. Every source (the webhook's
//! EventLists and JSON lines, a followed audit log file, `siesta audit replay`)
//! feeds one [`ingest::Ingest`]: parse ([`event`]), judge ([`rules`]), drop
//! repeated stages of one request, report to the [`crate::activity::Reporter`].
pub mod event;
pub mod ingest;
pub mod rules;

pub use ingest::{Ingest, Tally};
pub use rules::Rules;
pub mod tail;
pub mod webhook;
