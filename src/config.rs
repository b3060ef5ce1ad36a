//! The admin configuration (`--config FILE`, YAML): defaults, named schedules,
//! policies by namespace label selector, audit ignore lists, proxy limits, prices.
//!
//! A namespace's settings are layered: its own annotations, then the first policy
//! whose selector matches its labels, then `defaults` ([`AdminConfig::resolve`]).
//!
//! Loading never stops at the first problem: the file is parsed to a YAML tree,
//! then every field is checked and every problem reported with its YAML path
//! (`schedules.office-hours.wake`) and its line and column in the file.
//! [`watch`] reloads the file when its content changes (a ConfigMap update swaps
//! a symlink); an invalid new file is rejected and the previous config stays.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_yaml::Value;
use tokio::sync::watch;

use crate::annotations::{IdleAfter, Overrides, WakeOn, WakePage};
use crate::schedule::{self, Schedule};

/// How often [`watch`] compares the file's content with the config in force.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Settings that apply to a namespace unless its annotations say otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub idle_after: IdleAfter,
    pub wake_on: WakeOn,
    pub wake_page: WakePage,
    /// How often reporters write the Activity Lease of an awake namespace.
    pub flush_interval: Duration,
    /// The schedule (a name from `schedules`) of namespaces whose annotations and
    /// policy name none.
    pub schedule: Option<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            idle_after: IdleAfter::After(Duration::from_secs(30 * 60)),
            wake_on: WakeOn::default(),
            wake_page: WakePage::Auto,
            flush_interval: Duration::from_secs(30),
            schedule: None,
        }
    }
}

/// A policy: settings for every namespace whose labels match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    pub name: String,
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelExpression>,
    pub enabled: Option<bool>,
    pub idle_after: Option<IdleAfter>,
    pub schedule: Option<String>,
    pub wake_on: Option<WakeOn>,
    pub wake_page: Option<WakePage>,
}

impl Policy {
    /// Whether a namespace with these labels is selected, as a Kubernetes label
    /// selector reads it: every `matchLabels` entry and every expression must hold;
    /// an empty selector selects every namespace.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }
}

/// One `matchExpressions` entry of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelExpression {
    pub key: String,
    pub operator: Operator,
    pub values: BTreeSet<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelExpression {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            // As in Kubernetes: a namespace without the label is "not in".
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
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

impl AdminConfig {
    /// The settings in force for a namespace: its annotations, then the first
    /// matching policy, then the defaults. Matching a policy opts a namespace in
    /// unless the policy says `enabled: false`. An inline `awake-hours` annotation
    /// wins over a `schedule` annotation. A schedule name that this config does
    /// not define is returned as an error, and no schedule applies.
    pub fn resolve(
        &self,
        labels: &BTreeMap<String, String>,
        own: &Overrides,
    ) -> (crate::decide::Policy, Option<String>) {
        let policy = self.policy_for(labels);
        let enabled = own
            .enabled
            .or(policy.map(|p| p.enabled.unwrap_or(true)))
            .unwrap_or(false);
        let name = own
            .schedule
            .as_ref()
            .or(policy.and_then(|p| p.schedule.as_ref()))
            .or(self.defaults.schedule.as_ref());
        let mut problem = None;
        let schedule = match (&own.awake_hours, name) {
            (Some(inline), _) => Some(inline.clone()),
            (None, Some(name)) => {
                let found = self.schedules.get(name).cloned();
                if found.is_none() {
                    problem = Some(format!("no schedule named {name:?} in the admin config"));
                }
                found
            }
            (None, None) => None,
        };
        let resolved = crate::decide::Policy {
            enabled,
            idle_after: own
                .idle_after
                .or(policy.and_then(|p| p.idle_after))
                .unwrap_or(self.defaults.idle_after),
            schedule,
            wake_on: own
                .wake_on
                .or(policy.and_then(|p| p.wake_on))
                .unwrap_or(self.defaults.wake_on),
            keep_awake_until: own.keep_awake_until,
        };
        (resolved, problem)
    }
}

// ---------------------------------------------------------------------------
// Errors

/// One problem in an admin config file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// The YAML path, such as `schedules.office-hours.wake` or `policies[0].name`;
    /// empty for problems with the whole file.
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, " (line {l}, column {c})")?;
        }
        Ok(())
    }
}

/// Every problem found in one file, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ---------------------------------------------------------------------------
// Loading

/// Read and validate an admin config file.
pub fn load(path: &Path) -> Result<AdminConfig, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => parse(&file, &src),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file,
            path: String::new(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        }])),
    }
}

/// Validate the text of an admin config; `file` only labels the errors.
pub fn parse(file: &str, src: &str) -> Result<AdminConfig, ConfigErrors> {
    let tree: Value = match serde_yaml::from_str(src) {
        Ok(v) => v,
        Err(e) => {
            let location = e.location();
            let mut message = e.to_string();
            if location.is_some()
                && let Some(i) = message.rfind(" at line ")
            {
                message.truncate(i);
            }
            return Err(ConfigErrors(vec![ConfigError {
                file: file.to_string(),
                path: String::new(),
                line: location.as_ref().map(|l| l.line()),
                column: location.as_ref().map(|l| l.column()),
                message: format!("not valid YAML: {message}"),
            }]));
        }
    };
    let mut problems = Problems::default();
    let config = check_config(&mut problems, &tree);
    if problems.0.is_empty() {
        return Ok(config);
    }
    let mut errors: Vec<ConfigError> = problems
        .0
        .into_iter()
        .map(|(path, message)| {
            let at = locate(src, &path);
            ConfigError {
                file: file.to_string(),
                path: path.to_string(),
                line: at.map(|a| a.0),
                column: at.map(|a| a.1),
                message,
            }
        })
        .collect();
    errors.sort_by_key(|e| (e.line, e.column));
    Err(ConfigErrors(errors))
}

/// `siesta check-config FILE`: whether the file is valid, and what to print (a
/// summary, or every error on its own line).
pub fn check_config_cli(path: &Path) -> (bool, String) {
    match load(path) {
        Ok(c) => {
            let names =
                |m: &mut dyn Iterator<Item = &String>| m.cloned().collect::<Vec<_>>().join(", ");
            let d = &c.defaults;
            let summary = format!(
                "{}: ok\n  schedules: {} ({})\n  policies: {} ({})\n  defaults: idle-after {}, wake-on {}, flush interval {}, schedule {}\n  prices: {} {}/CPU-hour, {} {}/GiB-hour\n",
                path.display(),
                c.schedules.len(),
                names(&mut c.schedules.keys()),
                c.policies.len(),
                names(&mut c.policies.iter().map(|p| &p.name)),
                match d.idle_after {
                    IdleAfter::Off => "off".to_string(),
                    IdleAfter::After(t) => crate::duration::format(t),
                },
                match (d.wake_on.api, d.wake_on.http) {
                    (true, true) => "api,http",
                    (true, false) => "api",
                    (false, true) => "http",
                    (false, false) => "none",
                },
                crate::duration::format(d.flush_interval),
                d.schedule.as_deref().unwrap_or("none"),
                c.prices.cpu_core_hour,
                c.prices.currency,
                c.prices.memory_gib_hour,
                c.prices.currency,
            );
            (true, summary)
        }
        Err(errors) => (false, format!("{errors}\n")),
    }
}

// ---------------------------------------------------------------------------
// Checking the YAML tree, field by field

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct YamlPath(Vec<Seg>);

impl YamlPath {
    fn key(&self, k: &str) -> YamlPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    fn index(&self, i: usize) -> YamlPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Problems(Vec<(YamlPath, String)>);

impl Problems {
    fn add(&mut self, path: &YamlPath, message: impl Into<String>) {
        self.0.push((path.clone(), message.into()));
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A YAML mapping with its path; unknown keys are reported when it is opened.
struct Map<'a> {
    path: YamlPath,
    entries: Vec<(String, &'a Value)>,
}

impl<'a> Map<'a> {
    /// `fields` lists the keys allowed; empty allows any key (a map of names).
    fn open(p: &mut Problems, path: YamlPath, v: Option<&'a Value>, fields: &[&str]) -> Map<'a> {
        let mut entries = Vec::new();
        match v {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let Some(k) = k.as_str() else {
                        p.add(&path, format!("keys must be strings, got {}", kind(k)));
                        continue;
                    };
                    if !fields.is_empty() && !fields.contains(&k) {
                        p.add(
                            &path.key(k),
                            format!(
                                "unknown field `{k}`; expected one of: {}",
                                fields.join(", ")
                            ),
                        );
                        continue;
                    }
                    entries.push((k.to_string(), v));
                }
            }
            Some(other) => p.add(&path, format!("expected a mapping, got {}", kind(other))),
        }
        Map { path, entries }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }

    fn at(&self, key: &str) -> YamlPath {
        self.path.key(key)
    }

    fn str(&self, p: &mut Problems, key: &str) -> Option<&'a str> {
        match self.get(key)? {
            Value::String(s) => Some(s),
            other => {
                p.add(
                    &self.at(key),
                    format!("expected a string, got {}", kind(other)),
                );
                None
            }
        }
    }

    /// A string field read by `parse`; its error becomes the message.
    fn parse<T>(
        &self,
        p: &mut Problems,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.str(p, key)?;
        parse(s).map_err(|e| p.add(&self.at(key), e)).ok()
    }

    fn bool(&self, p: &mut Problems, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                p.add(
                    &self.at(key),
                    format!("expected true or false, got {}", kind(other)),
                );
                None
            }
        }
    }

    fn count(&self, p: &mut Problems, key: &str) -> Option<usize> {
        let v = self.get(key)?;
        match (v, v.as_u64().and_then(|n| usize::try_from(n).ok())) {
            (_, Some(n)) if n > 0 => Some(n),
            (Value::Number(n), _) => {
                p.add(
                    &self.at(key),
                    format!("expected a whole number of at least 1, got {n}"),
                );
                None
            }
            _ => {
                p.add(
                    &self.at(key),
                    format!("expected a whole number, got {}", kind(v)),
                );
                None
            }
        }
    }

    fn price(&self, p: &mut Problems, key: &str) -> Option<f64> {
        let v = self.get(key)?;
        match v.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Some(x),
            Some(_) => {
                p.add(&self.at(key), "must be a price of 0 or more");
                None
            }
            None => {
                p.add(&self.at(key), format!("expected a number, got {}", kind(v)));
                None
            }
        }
    }

    /// A list of non-empty strings, each checked by `check`.
    fn strings(
        &self,
        p: &mut Problems,
        key: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Option<Vec<String>> {
        let v = self.get(key)?;
        let Value::Sequence(items) = v else {
            p.add(
                &self.at(key),
                format!("expected a list of strings, got {}", kind(v)),
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = self.at(key).index(i);
            match item.as_str().map(str::trim) {
                Some("") => p.add(&at, "empty string"),
                Some(s) => match check(s) {
                    Ok(()) => out.push(s.to_string()),
                    Err(e) => p.add(&at, e),
                },
                None => p.add(&at, format!("expected a string, got {}", kind(item))),
            }
        }
        Some(out)
    }
}

fn any(_: &str) -> Result<(), String> {
    Ok(())
}

fn check_config(p: &mut Problems, tree: &Value) -> AdminConfig {
    let top = Map::open(
        p,
        YamlPath::default(),
        Some(tree),
        &[
            "defaults",
            "schedules",
            "policies",
            "audit",
            "proxy",
            "prices",
        ],
    );
    let schedules = check_schedules(p, &top);
    // A schedule that is written but invalid has its own error already.
    let written = Map::open(
        &mut Problems::default(),
        top.at("schedules"),
        top.get("schedules"),
        &[],
    );
    let known = |p: &mut Problems, path: YamlPath, name: &str| {
        if written.get(name).is_none() && !schedules.contains_key(name) {
            let defined = schedules.keys().cloned().collect::<Vec<_>>().join(", ");
            let defined = if defined.is_empty() {
                "none is defined".to_string()
            } else {
                format!("defined: {defined}")
            };
            p.add(&path, format!("no schedule named {name:?} ({defined})"));
        }
    };
    let defaults = check_defaults(p, &top);
    if let Some(name) = &defaults.schedule {
        known(p, top.at("defaults").key("schedule"), name);
    }
    let policies = check_policies(p, &top);
    for (i, policy) in policies.iter().enumerate() {
        if let Some(name) = &policy.schedule {
            known(p, top.at("policies").index(i).key("schedule"), name);
        }
    }
    AdminConfig {
        defaults,
        schedules,
        policies,
        audit_ignore: check_audit(p, &top),
        proxy: check_proxy(p, &top),
        prices: check_prices(p, &top),
    }
}

fn check_defaults(p: &mut Problems, top: &Map) -> Defaults {
    let m = Map::open(
        p,
        top.at("defaults"),
        top.get("defaults"),
        &[
            "idleAfter",
            "wakeOn",
            "wakePage",
            "flushInterval",
            "schedule",
        ],
    );
    let d = Defaults::default();
    Defaults {
        idle_after: m
            .parse(p, "idleAfter", IdleAfter::parse)
            .unwrap_or(d.idle_after),
        wake_on: m.parse(p, "wakeOn", WakeOn::parse).unwrap_or(d.wake_on),
        wake_page: m
            .parse(p, "wakePage", WakePage::parse)
            .unwrap_or(d.wake_page),
        flush_interval: m
            .parse(p, "flushInterval", |s| {
                let t = crate::duration::parse(s)?;
                if t > Duration::from_secs(3600) {
                    return Err(format!(
                        "{s:?} is longer than 1h: activity would be recorded too late"
                    ));
                }
                Ok(t)
            })
            .unwrap_or(d.flush_interval),
        schedule: m.parse(p, "schedule", schedule_name),
    }
}

fn schedule_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a schedule name (letters, digits, - _ .)"
        ))
    }
}

fn check_schedules(p: &mut Problems, top: &Map) -> BTreeMap<String, Schedule> {
    let all = Map::open(p, top.at("schedules"), top.get("schedules"), &[]);
    let mut out = BTreeMap::new();
    for (name, v) in &all.entries {
        let at = all.at(name);
        if let Err(e) = schedule_name(name) {
            p.add(&at, e);
            continue;
        }
        let m = Map::open(
            p,
            at.clone(),
            Some(v),
            &["awakeHours", "sleep", "wake", "timezone"],
        );
        if v.is_null() || m.entries.is_empty() {
            p.add(
                &at,
                "a schedule needs awakeHours, or sleep, wake and timezone",
            );
            continue;
        }
        let cron_fields = ["sleep", "wake", "timezone"];
        let parsed = if m.get("awakeHours").is_some() {
            if cron_fields.iter().any(|f| m.get(f).is_some()) {
                p.add(
                    &at,
                    "use either awakeHours, or sleep, wake and timezone, not both",
                );
                continue;
            }
            m.parse(p, "awakeHours", |s| {
                Schedule::parse_awake_hours(s).map_err(|e| e.0)
            })
        } else {
            for f in cron_fields.iter().filter(|f| m.get(f).is_none()) {
                p.add(
                    &at,
                    format!("missing `{f}`: a cron schedule needs sleep, wake and timezone"),
                );
            }
            let sleep = m.parse(p, "sleep", |s| schedule::parse_cron(s).map_err(|e| e.0));
            let wake = m.parse(p, "wake", |s| schedule::parse_cron(s).map_err(|e| e.0));
            let tz = m.parse(p, "timezone", |s| schedule::parse_zone(s).map_err(|e| e.0));
            match (sleep, wake, tz) {
                (Some(s), Some(w), Some(tz)) => schedule::CronPair::new(s, w, tz)
                    .map(|c| Schedule::Cron(Box::new(c)))
                    .map_err(|e| p.add(&at, e.0))
                    .ok(),
                _ => None,
            }
        };
        if let Some(s) = parsed {
            out.insert(name.clone(), s);
        }
    }
    out
}

fn check_policies(p: &mut Problems, top: &Map) -> Vec<Policy> {
    let path = top.at("policies");
    let items = match top.get("policies") {
        None => return Vec::new(),
        Some(Value::Sequence(items)) => items,
        Some(other) => {
            p.add(
                &path,
                format!("expected a list of policies, got {}", kind(other)),
            );
            return Vec::new();
        }
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = path.index(i);
        let m = Map::open(
            p,
            at.clone(),
            Some(item),
            &[
                "name",
                "namespaceSelector",
                "enabled",
                "idleAfter",
                "schedule",
                "wakeOn",
                "wakePage",
            ],
        );
        let name = m
            .str(p, "name")
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            p.add(&at.key("name"), "every policy needs a name");
        } else if !seen.insert(name.clone()) {
            p.add(
                &at.key("name"),
                format!("another policy is already named {name:?}"),
            );
        }
        let (match_labels, match_expressions) = match m.get("namespaceSelector") {
            Some(v) => check_selector(p, at.key("namespaceSelector"), v),
            None => {
                p.add(
                    &at,
                    "missing `namespaceSelector` (use {} to select every namespace)",
                );
                Default::default()
            }
        };
        out.push(Policy {
            name,
            match_labels,
            match_expressions,
            enabled: m.bool(p, "enabled"),
            idle_after: m.parse(p, "idleAfter", IdleAfter::parse),
            schedule: m.parse(p, "schedule", schedule_name),
            wake_on: m.parse(p, "wakeOn", WakeOn::parse),
            wake_page: m.parse(p, "wakePage", WakePage::parse),
        });
    }
    out
}

fn label_key(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 317
        && !s.chars().any(|c| c.is_whitespace() || c == ',' || c == '=');
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a label key"))
    }
}

fn check_selector(
    p: &mut Problems,
    path: YamlPath,
    v: &Value,
) -> (BTreeMap<String, String>, Vec<LabelExpression>) {
    let m = Map::open(p, path, Some(v), &["matchLabels", "matchExpressions"]);
    let mut labels = BTreeMap::new();
    let lm = Map::open(p, m.at("matchLabels"), m.get("matchLabels"), &[]);
    for (k, v) in &lm.entries {
        if let Err(e) = label_key(k) {
            p.add(&lm.at(k), e);
        }
        match v.as_str() {
            Some(s) => {
                labels.insert(k.clone(), s.to_string());
            }
            None => p.add(
                &lm.at(k),
                format!("label values are strings, got {}: quote it", kind(v)),
            ),
        }
    }
    let mut expressions = Vec::new();
    let at = m.at("matchExpressions");
    match m.get("matchExpressions") {
        None => {}
        Some(Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                let e = Map::open(p, at.index(i), Some(item), &["key", "operator", "values"]);
                let key = e.str(p, "key").map(str::to_string);
                if key.is_none() && e.get("key").is_none() {
                    p.add(&at.index(i), "missing `key`");
                }
                if let Some(k) = &key
                    && let Err(msg) = label_key(k)
                {
                    p.add(&e.at("key"), msg);
                }
                let operator = e.parse(p, "operator", |s| match s {
                    "In" => Ok(Operator::In),
                    "NotIn" => Ok(Operator::NotIn),
                    "Exists" => Ok(Operator::Exists),
                    "DoesNotExist" => Ok(Operator::DoesNotExist),
                    other => Err(format!(
                        "{other:?} is not In, NotIn, Exists or DoesNotExist"
                    )),
                });
                if operator.is_none() && e.get("operator").is_none() {
                    p.add(&at.index(i), "missing `operator`");
                }
                let values: BTreeSet<String> = e
                    .strings(p, "values", any)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                match operator {
                    Some(Operator::In | Operator::NotIn) if values.is_empty() => {
                        p.add(&at.index(i), "In and NotIn need a non-empty `values` list");
                    }
                    Some(Operator::Exists | Operator::DoesNotExist) if !values.is_empty() => {
                        p.add(&e.at("values"), "Exists and DoesNotExist take no values");
                    }
                    _ => {}
                }
                if let (Some(key), Some(operator)) = (key, operator) {
                    expressions.push(LabelExpression {
                        key,
                        operator,
                        values,
                    });
                }
            }
        }
        Some(other) => p.add(&at, format!("expected a list, got {}", kind(other))),
    }
    (labels, expressions)
}

fn check_audit(p: &mut Problems, top: &Map) -> AuditIgnore {
    let audit = Map::open(p, top.at("audit"), top.get("audit"), &["ignore"]);
    let m = Map::open(
        p,
        audit.at("ignore"),
        audit.get("ignore"),
        &[
            "users",
            "groups",
            "serviceAccounts",
            "userAgentPrefixes",
            "verbs",
            "resources",
        ],
    );
    let service_account = |s: &str| match s.split_once(':') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains(':') => Ok(()),
        _ => Err(format!(
            "{s:?} is not NAMESPACE:NAME (for example argocd:argocd-application-controller)"
        )),
    };
    let lower = |s: &str| {
        if s.chars()
            .all(|c| c.is_ascii_lowercase() || c == '/' || c == '*')
        {
            Ok(())
        } else {
            Err(format!(
                "{s:?}: expected a lowercase name such as get, list, watch or pods/log"
            ))
        }
    };
    AuditIgnore {
        users: m.strings(p, "users", any).unwrap_or_default(),
        groups: m.strings(p, "groups", any).unwrap_or_default(),
        service_accounts: m
            .strings(p, "serviceAccounts", service_account)
            .unwrap_or_default(),
        user_agent_prefixes: m.strings(p, "userAgentPrefixes", any).unwrap_or_default(),
        verbs: m.strings(p, "verbs", lower).unwrap_or_default(),
        resources: m.strings(p, "resources", lower).unwrap_or_default(),
    }
}

fn check_proxy(p: &mut Problems, top: &Map) -> ProxyLimits {
    let m = Map::open(
        p,
        top.at("proxy"),
        top.get("proxy"),
        &[
            "holdTimeout",
            "maxHeldPerNamespace",
            "maxHeldTotal",
            "ignorePaths",
            "ignoreUserAgents",
        ],
    );
    let d = ProxyLimits::default();
    let path = |s: &str| {
        if s.starts_with('/') {
            Ok(())
        } else {
            Err(format!("{s:?}: a path starts with /"))
        }
    };
    let limits = ProxyLimits {
        hold_timeout: m
            .parse(p, "holdTimeout", crate::duration::parse)
            .unwrap_or(d.hold_timeout),
        max_held_per_namespace: m
            .count(p, "maxHeldPerNamespace")
            .unwrap_or(d.max_held_per_namespace),
        max_held_total: m.count(p, "maxHeldTotal").unwrap_or(d.max_held_total),
        ignore_paths: m.strings(p, "ignorePaths", path).unwrap_or(d.ignore_paths),
        ignore_user_agents: m
            .strings(p, "ignoreUserAgents", any)
            .unwrap_or(d.ignore_user_agents),
    };
    if limits.max_held_per_namespace > limits.max_held_total {
        p.add(
            &m.at("maxHeldPerNamespace"),
            format!(
                "{} is more than maxHeldTotal ({})",
                limits.max_held_per_namespace, limits.max_held_total
            ),
        );
    }
    limits
}

fn check_prices(p: &mut Problems, top: &Map) -> Prices {
    let m = Map::open(
        p,
        top.at("prices"),
        top.get("prices"),
        &["currency", "cpuCoreHour", "memoryGibHour"],
    );
    let d = Prices::default();
    let currency = |s: &str| {
        let s = s.trim();
        if !s.is_empty() && s.len() <= 8 && s.chars().all(|c| c.is_ascii_alphabetic()) {
            Ok(s.to_string())
        } else {
            Err(format!("{s:?} is not a currency code such as USD or EUR"))
        }
    };
    Prices {
        currency: m.parse(p, "currency", currency).unwrap_or(d.currency),
        cpu_core_hour: m.price(p, "cpuCoreHour").unwrap_or(d.cpu_core_hour),
        memory_gib_hour: m.price(p, "memoryGibHour").unwrap_or(d.memory_gib_hour),
    }
}

// ---------------------------------------------------------------------------
// Locating a YAML path in the source text

/// The line and column of the node at `path`, or of its nearest ancestor that
/// exists. serde_yaml attaches the position of the node being read to any error
/// raised while reading it, so the walk raises one at the target.
fn locate(src: &str, path: &YamlPath) -> Option<(usize, usize)> {
    match Find(&path.0).deserialize(serde_yaml::Deserializer::from_str(src)) {
        Err(e) => e.location().map(|l| (l.line(), l.column())),
        Ok(()) => None,
    }
}

struct Find<'p>(&'p [Seg]);

fn here<E: de::Error>() -> E {
    E::custom("located")
}

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(want), rest)) = self.0.split_first() else {
            return Err(here());
        };
        while let Some(key) = map.next_key::<Value>()? {
            if key.as_str() == Some(want.as_str()) {
                return map.next_value_seed(Find(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(here())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(want), rest)) = self.0.split_first() else {
            return Err(here());
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(here());
            }
        }
        match seq.next_element_seed(Find(rest))? {
            Some(()) => Ok(()),
            None => Err(here()),
        }
    }
}

// ---------------------------------------------------------------------------
// Reloading

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

async fn watch_every(
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
    mut last: Vec<u8>,
    tx: watch::Sender<Arc<AdminConfig>>,
    period: Duration,
) {
    let reloads = &crate::metrics::get().config_reloads;
    let file = path.display().to_string();
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut unreadable = false;
    while !tx.is_closed() {
        ticker.tick().await;
        // A ConfigMap update swaps a symlink: the file may vanish for a moment.
        let content = match std::fs::read(&path) {
            Ok(c) => {
                unreadable = false;
                c
            }
            Err(e) => {
                if !unreadable {
                    tracing::warn!(file, error = %e, "cannot read the admin config; the previous config stays in force");
                    unreadable = true;
                }
                continue;
            }
        };
        if content == last {
            continue;
        }
        match parse(&file, &String::from_utf8_lossy(&content)) {
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
        last = content;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Phase;

    fn errors(src: &str) -> Vec<String> {
        match parse("siesta.yaml", src) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("f", ""), Ok(AdminConfig::default()));
        assert_eq!(parse("f", "# nothing\n"), Ok(AdminConfig::default()));
    }

    #[test]
    fn every_shipped_config_is_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut files = vec![root.join("siesta.yaml")];
        let mut examples: Vec<_> = std::fs::read_dir(root.join("examples"))
            .expect("config/examples")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        examples.sort();
        assert!(!examples.is_empty());
        files.extend(examples);
        for f in files {
            if let Err(e) = load(&f) {
                panic!("{e}");
            }
        }
    }

    #[test]
    fn the_documented_config_reads_as_documented() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/siesta.yaml");
        let c = load(&path).expect("valid");
        assert_eq!(
            c.defaults.idle_after,
            IdleAfter::After(Duration::from_secs(1800))
        );
        assert_eq!(c.defaults.schedule.as_deref(), Some("office-hours"));
        assert_eq!(c.schedules.len(), 3);
        assert_eq!(c.policies[0].name, "dev-teams");
        assert_eq!(
            c.policies[0].idle_after,
            Some(IdleAfter::After(Duration::from_secs(3600)))
        );
        assert_eq!(
            c.audit_ignore.service_accounts,
            vec!["argocd:argocd-application-controller"]
        );
        assert_eq!(c.proxy, ProxyLimits::default());
        assert_eq!(c.prices, Prices::default());
        // `nightly` sleeps at 19:00 Berlin on weekdays
        let nightly = &c.schedules["nightly"];
        let wednesday_evening =
            chrono::DateTime::parse_from_rfc3339("2026-11-25T19:00:00Z").expect("instant");
        assert_eq!(nightly.phase_at(wednesday_evening.to_utc()), Phase::Asleep);
    }

    #[test]
    fn every_error_is_reported_with_its_path_and_line() {
        let src = "\
defaults:
  idleAfter: soon
  wakeOn: carrier-pigeon
schedules:
  office-hours:
    sleep: \"0 19 * *\"
    wake: \"0 7 * * 1-5\"
    timezone: Europe/Berln
  late:
    awakeHours: \"Mon-Fri 07:00-25:00 UTC\"
  empty:
    awakeHours: \"\"
policies:
  - name: dev
    namespaceSelector: {matchLabels: {env: dev}}
    schedule: nightly
    colour: blue
  - namespaceSelector:
      matchExpressions:
        - {key: team, operator: Near, values: [a]}
prices:
  cpuCoreHour: cheap
";
        let errs = errors(src);
        let expected = [
            "siesta.yaml: defaults.idleAfter: duration \"soon\"",
            "siesta.yaml: defaults.wakeOn: \"carrier-pigeon\" is not one of api, http",
            "siesta.yaml: schedules.office-hours.sleep: cron \"0 19 * *\": expected 5 fields",
            "siesta.yaml: schedules.office-hours.timezone: unknown time zone \"Europe/Berln\"",
            "siesta.yaml: schedules.late.awakeHours: \"Mon-Fri 07:00-25:00 UTC\": \"25:00\": hour 25 is out of range",
            "siesta.yaml: schedules.empty.awakeHours: empty awake-hours spec",
            "siesta.yaml: policies[0].schedule: no schedule named \"nightly\" (none is defined)",
            "siesta.yaml: policies[0].colour: unknown field `colour`",
            "siesta.yaml: policies[1].name: every policy needs a name",
            "siesta.yaml: policies[1].namespaceSelector.matchExpressions[0].operator: \"Near\" is not In",
            "siesta.yaml: prices.cpuCoreHour: expected a number, got a string",
        ];
        for want in expected {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in\n{}",
                errs.join("\n")
            );
        }
        assert_eq!(errs.len(), expected.len(), "{}", errs.join("\n"));
        // Located: the wrong zone is on line 8, the unknown field on line 17.
        assert!(
            errs.iter()
                .any(|e| e.contains("Europe/Berln") && e.ends_with("(line 8, column 15)")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("colour") && e.contains("(line 17, ")),
            "{errs:?}"
        );
        // A reference to a schedule that is written but invalid is not reported twice.
        let errs = errors(
            "defaults: {schedule: late}\nschedules:\n  late: {awakeHours: 'Mon-Fri 07:00-25:00 UTC'}\n",
        );
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn yaml_syntax_and_shape_errors_are_located() {
        let errs = errors("defaults:\n  idleAfter: [30m\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("siesta.yaml: not valid YAML"),
            "{errs:?}"
        );
        assert!(errs[0].contains("(line "), "{errs:?}");
        let errs = errors(
            "schedules: [a, b]\npolicies: {a: 1}\nproxy:\n  maxHeldTotal: -1\n  holdTimeout: 5\n",
        );
        assert!(
            errs[0].starts_with(
                "siesta.yaml: schedules: expected a mapping, got a list (line 1, column 12)"
            ),
            "{errs:?}"
        );
        assert!(
            errs[1].starts_with(
                "siesta.yaml: policies: expected a list of policies, got a mapping (line 2"
            ),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with(
                "siesta.yaml: proxy.maxHeldTotal: expected a whole number of at least 1, got -1 (line 4"
            ),
            "{errs:?}"
        );
        assert!(
            errs[3].starts_with(
                "siesta.yaml: proxy.holdTimeout: expected a string, got a number (line 5"
            ),
            "{errs:?}"
        );
        let errs = errors("unknown: 1\n");
        assert_eq!(
            errs,
            vec![
                "siesta.yaml: unknown: unknown field `unknown`; expected one of: defaults, schedules, policies, audit, proxy, prices (line 1, column 10)"
            ]
        );
    }

    #[test]
    fn schedules_need_one_complete_form() {
        let errs = errors(
            "schedules:\n  both: {awakeHours: always, sleep: '0 1 * * *'}\n  half: {sleep: '0 1 * * *'}\n  none: {}\n",
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("siesta.yaml: schedules.both: use either")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("siesta.yaml: schedules.half: missing `wake`")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("siesta.yaml: schedules.half: missing `timezone`")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("siesta.yaml: schedules.none: a schedule needs")),
            "{errs:?}"
        );
    }

    #[test]
    fn policies_select_namespaces_like_kubernetes_label_selectors() {
        let c = parse(
            "f",
            "policies:
  - name: dev
    namespaceSelector:
      matchLabels: {env: dev}
      matchExpressions:
        - {key: team, operator: NotIn, values: [platform]}
        - {key: legacy, operator: DoesNotExist}
  - name: previews
    namespaceSelector:
      matchExpressions: [{key: preview, operator: Exists}, {key: env, operator: In, values: [test, stage]}]
  - name: everything-else
    namespaceSelector: {}
    enabled: false
",
        )
        .expect("valid");
        let name = |l: &[(&str, &str)]| c.policy_for(&labels(l)).map(|p| p.name.as_str());
        assert_eq!(name(&[("env", "dev")]), Some("dev"));
        assert_eq!(name(&[("env", "dev"), ("team", "web")]), Some("dev"));
        assert_eq!(
            name(&[("env", "dev"), ("team", "platform")]),
            Some("everything-else")
        );
        assert_eq!(
            name(&[("env", "dev"), ("legacy", "yes")]),
            Some("everything-else")
        );
        assert_eq!(name(&[("env", "test"), ("preview", "")]), Some("previews"));
        assert_eq!(
            name(&[("env", "prod"), ("preview", "1")]),
            Some("everything-else")
        );
        let errs = errors(
            "policies:\n  - name: a\n  - name: a\n    namespaceSelector: {matchLabels: {tier: 1}, matchExpressions: [{key: x, operator: In}, {key: y, operator: Exists, values: [z]}]}\n",
        );
        for want in [
            "policies[0]: missing `namespaceSelector`",
            "policies[1].name: another policy is already named \"a\"",
            "policies[1].namespaceSelector.matchLabels.tier: label values are strings",
            "policies[1].namespaceSelector.matchExpressions[0]: In and NotIn need",
            "policies[1].namespaceSelector.matchExpressions[1].values: Exists and DoesNotExist take no values",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn settings_layer_annotation_then_policy_then_defaults() {
        let c = parse(
            "f",
            "defaults: {idleAfter: 30m, schedule: office}
schedules:
  office: {awakeHours: 'Mon-Fri 08:00-18:00 UTC'}
  nights: {sleep: '0 22 * * *', wake: '0 6 * * *', timezone: UTC}
policies:
  - {name: dev, namespaceSelector: {matchLabels: {env: dev}}, idleAfter: 1h, schedule: nights, wakeOn: http}
  - {name: off, namespaceSelector: {matchLabels: {env: prod}}, enabled: false}
",
        )
        .expect("valid");
        let none = Overrides::default();
        // No policy: not opted in, defaults apply.
        let (p, problem) = c.resolve(&labels(&[]), &none);
        assert!(!p.enabled && problem.is_none());
        assert_eq!(p.schedule.as_ref(), c.schedules.get("office"));
        // A policy opts in and overrides the defaults.
        let (p, _) = c.resolve(&labels(&[("env", "dev")]), &none);
        assert!(p.enabled);
        assert_eq!(p.idle_after, IdleAfter::After(Duration::from_secs(3600)));
        assert_eq!(p.schedule.as_ref(), c.schedules.get("nights"));
        assert_eq!(
            p.wake_on,
            WakeOn {
                api: false,
                http: true
            }
        );
        // Annotations override the policy; inline awake hours win over a name.
        let own = Overrides {
            enabled: Some(true),
            idle_after: Some(IdleAfter::Off),
            schedule: Some("office".into()),
            ..Overrides::default()
        };
        let (p, _) = c.resolve(&labels(&[("env", "prod")]), &own);
        assert!(p.enabled);
        assert_eq!(p.idle_after, IdleAfter::Off);
        assert_eq!(p.schedule.as_ref(), c.schedules.get("office"));
        let inline = Schedule::parse_awake_hours("always").expect("spec");
        let own = Overrides {
            awake_hours: Some(inline.clone()),
            schedule: Some("nope".into()),
            ..own
        };
        assert_eq!(c.resolve(&labels(&[]), &own).0.schedule, Some(inline));
        // An unknown name is reported, and no schedule applies.
        let own = Overrides {
            schedule: Some("nope".into()),
            ..Overrides::default()
        };
        let (p, problem) = c.resolve(&labels(&[]), &own);
        assert_eq!(p.schedule, None);
        assert!(problem.is_some_and(|m| m.contains("nope")));
    }

    #[test]
    fn check_config_cli_summarises_or_lists_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.yaml");
        std::fs::write(&good, "schedules:\n  a: {awakeHours: always}\n").expect("write");
        let (ok, out) = check_config_cli(&good);
        assert!(ok);
        assert!(
            out.contains(": ok\n") && out.contains("schedules: 1 (a)"),
            "{out}"
        );
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "defaults: {idleAfter: x}\nprices: {currency: ''}\n").expect("write");
        let (ok, out) = check_config_cli(&bad);
        assert!(!ok);
        assert_eq!(out.lines().count(), 2, "{out}");
        let (ok, out) = check_config_cli(&dir.path().join("missing.yaml"));
        assert!(!ok && out.contains("cannot read"), "{out}");
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(src in "\\PC{0,80}") {
            let _ = parse("f", &src);
        }

        #[test]
        fn parsing_yaml_shaped_text_never_panics(
            src in "((defaults|schedules|policies|audit|proxy|prices|  [a-zA-Z]{1,8}|  - name|    [a-zA-Z]{1,10}): ?(\\{\\}|\\[\\]|[a-z0-9 :*/-]{0,12})?\n){1,8}"
        ) {
            let _ = parse("f", &src);
        }
    }

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
