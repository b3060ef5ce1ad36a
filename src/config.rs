//! The admin configuration (`--config FILE`, YAML): defaults, named schedules,
//! policies by namespace label selector, audit ignore lists, proxy limits, prices.
//!
//! A namespace's settings are layered: its own annotations, then the first policy
//! whose selector matches its labels, then `defaults`.
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::annotations::{IdleAfter, WakeOn, WakePage};
use crate::schedule::Schedule;

/// The file as written (strings), before validation.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub schedules: BTreeMap<String, RawSchedule>,
    #[serde(default)]
    pub policies: Vec<RawPolicy>,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub prices: RawPrices,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawDefaults {
    pub idle_after: Option<String>,
    pub wake_on: Option<String>,
    pub wake_page: Option<String>,
    pub flush_interval: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawSchedule {
    pub awake_hours: Option<String>,
    pub sleep: Option<String>,
    pub wake: Option<String>,
    pub timezone: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    #[serde(default)]
    pub namespace_selector: RawSelector,
    pub enabled: Option<bool>,
    pub idle_after: Option<String>,
    pub schedule: Option<String>,
    pub wake_on: Option<String>,
    pub wake_page: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAudit {
    #[serde(default)]
    pub ignore: RawIgnore,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawIgnore {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub service_accounts: Vec<String>,
    #[serde(default)]
    pub user_agent_prefixes: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawProxy {
    pub hold_timeout: Option<String>,
    pub max_held_per_namespace: Option<usize>,
    pub max_held_total: Option<usize>,
    pub ignore_paths: Option<Vec<String>>,
    pub ignore_user_agents: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPrices {
    pub currency: Option<String>,
    pub cpu_core_hour: Option<f64>,
    pub memory_gib_hour: Option<f64>,
}

/// Settings that apply to a namespace unless its annotations say otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub idle_after: IdleAfter,
    pub wake_on: WakeOn,
    pub wake_page: WakePage,
    /// How often reporters write the Activity Lease of an awake namespace.
    pub flush_interval: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            idle_after: IdleAfter::After(Duration::from_secs(30 * 60)),
            wake_on: WakeOn::default(),
            wake_page: WakePage::Auto,
            flush_interval: Duration::from_secs(30),
        }
    }
}

/// A policy: settings for every namespace whose labels match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    pub name: String,
    pub match_labels: BTreeMap<String, String>,
    pub enabled: Option<bool>,
    pub idle_after: Option<IdleAfter>,
    pub schedule: Option<String>,
    pub wake_on: Option<WakeOn>,
    pub wake_page: Option<WakePage>,
}

impl Policy {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// Audit identities and requests that never count as activity, added to the
/// built-in defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuditIgnore {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub service_accounts: Vec<String>,
    pub user_agent_prefixes: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProxyLimits {
    pub hold_timeout: Duration,
    pub max_held_per_namespace: usize,
    pub max_held_total: usize,
    /// Paths whose requests are forwarded but never count as activity.
    pub ignore_paths: Vec<String>,
    /// User-agent prefixes whose requests never count as activity.
    pub ignore_user_agents: Vec<String>,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            hold_timeout: Duration::from_secs(300),
            max_held_per_namespace: 1000,
            max_held_total: 10_000,
            ignore_paths: ["/healthz", "/livez", "/readyz", "/ping", "/health"]
                .map(String::from)
                .to_vec(),
            ignore_user_agents: [
                "kube-probe/",
                "ELB-HealthChecker/",
                "GoogleHC/",
                "Amazon-Route53-Health-Check-Service",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Prices for savings: OpenCost's default on-demand prices unless configured.
#[derive(Clone, Debug, PartialEq)]
pub struct Prices {
    pub currency: String,
    pub cpu_core_hour: f64,
    pub memory_gib_hour: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            currency: "USD".into(),
            cpu_core_hour: 0.031611,
            memory_gib_hour: 0.004237,
        }
    }
}

/// The validated admin configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdminConfig {
    pub defaults: Defaults,
    pub schedules: BTreeMap<String, Schedule>,
    pub policies: Vec<Policy>,
    pub audit_ignore: AuditIgnore,
    pub proxy: ProxyLimits,
    pub prices: Prices,
}

impl AdminConfig {
    /// The first policy matching these namespace labels.
    pub fn policy_for(&self, labels: &BTreeMap<String, String>) -> Option<&Policy> {
        self.policies.iter().find(|p| p.matches(labels))
    }
}
