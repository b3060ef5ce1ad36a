//! The admin configuration (`--config FILE`, YAML): defaults, named schedules,
//! policies by namespace label selector, audit ignore lists, proxy limits, prices.
//!
//! A namespace's settings are layered: its own annotations, then the first policy
//! whose selector matches its labels, then `defaults` ([`AdminConfig::resolve`]).
//!
//! Loading never stops at the first problem: the file is parsed to a YAML tree,
//! then every field is checked and every problem reported with its YAML path
//! (`schedules.office-hours.wake`) and its line and column in the file.
//! Pure: reading the file again when it changes (a ConfigMap update swaps a
//! symlink) is the shell's job (`reload`, a layer above); an invalid new file
//! is rejected there and the previous config stays.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::annotations::{Enabled, IdleAfter, Overrides, WakeOn, WakePage};
use crate::schedule::Schedule;

mod check;
mod locate;

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
    /// The furthest ahead `keep-awake-until` may be (`siesta wake --for`);
    /// a later instant is brought back to now plus this, with an Event.
    pub max_keep_awake: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            idle_after: IdleAfter::After(Duration::from_secs(30 * 60)),
            wake_on: WakeOn::default(),
            wake_page: WakePage::Auto,
            flush_interval: Duration::from_secs(30),
            schedule: None,
            max_keep_awake: Duration::from_secs(24 * 3600),
        }
    }
}

/// A policy: settings for every namespace whose labels match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    pub name: String,
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelExpression>,
    pub enabled: Option<Enabled>,
    pub idle_after: Option<IdleAfter>,
    pub schedule: Option<String>,
    pub wake_on: Option<WakeOn>,
    pub wake_page: Option<WakePage>,
    /// Asleep this long without counted activity: marked abandoned. Only
    /// from a policy, never from an annotation.
    pub abandon_after: Option<Duration>,
    /// Abandoned this long more (after a Warning Event): deleted. Only from
    /// a policy, never from an annotation; needs `abandon_after`.
    pub delete_after: Option<Duration>,
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
    /// Client connections open at once, in all. At the cap one more evicts the
    /// oldest connection still reading a request head; when every one is
    /// serving a request, it is closed at accept.
    pub max_connections: usize,
    /// What held requests with a body may make the proxy (and the kernel)
    /// buffer, in all: each reserves [`HELD_BODY_RESERVE`] bytes, and a
    /// request past the budget gets 503 with `Retry-After`.
    pub max_held_body_bytes: usize,
    /// Forward `%2F` and `%5C` in paths instead of refusing them with 400.
    pub allow_encoded_slashes: bool,
}

/// What one held request with a body reserves from `maxHeldBodyBytes`: the
/// HTTP/2 stream window, which is also about what the kernel takes in of an
/// unread HTTP/1 body (the proxy itself reads at most 1 KiB of it while held).
pub const HELD_BODY_RESERVE: usize = 64 * 1024;

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
            max_connections: 20_000,
            max_held_body_bytes: 64 * 1024 * 1024,
            allow_encoded_slashes: false,
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
    /// How long a namespace with these labels may sleep without counted
    /// activity before it is marked abandoned (its policy's `abandonAfter`).
    pub fn abandon_after(&self, labels: &BTreeMap<String, String>) -> Option<Duration> {
        self.policy_for(labels).and_then(|p| p.abandon_after)
    }

    /// How long a namespace with these labels stays marked abandoned before
    /// it is deleted (its policy's `deleteAfter`).
    pub fn delete_after(&self, labels: &BTreeMap<String, String>) -> Option<Duration> {
        self.policy_for(labels).and_then(|p| p.delete_after)
    }

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
            .or(policy.map(|p| p.enabled.unwrap_or(Enabled::Yes)))
            .unwrap_or(Enabled::No);
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
            enabled: enabled != Enabled::No,
            observe: enabled == Enabled::Observe,
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

    /// What a browser sees while the namespace wakes: annotation, policy, default.
    pub fn wake_page(
        &self,
        labels: &BTreeMap<String, String>,
        own: &Overrides,
    ) -> crate::annotations::WakePage {
        own.wake_page
            .or(self.policy_for(labels).and_then(|p| p.wake_page))
            .unwrap_or(self.defaults.wake_page)
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

/// Read and validate an admin config file and the calendars it names.
pub fn load(path: &Path) -> Result<AdminConfig, ConfigErrors> {
    load_with(path, &mut |p| std::fs::read(p))
}

/// [`load`], reading the config file and every calendar through `read`.
pub fn load_with(
    path: &Path,
    read: &mut dyn FnMut(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<AdminConfig, ConfigErrors> {
    let file = path.display().to_string();
    match read(path) {
        Ok(src) => parse_with(&file, &String::from_utf8_lossy(&src), read),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file,
            path: String::new(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        }])),
    }
}

/// Validate the text of an admin config; `file` labels the errors, and
/// calendars with relative paths are read from its folder.
pub fn parse(file: &str, src: &str) -> Result<AdminConfig, ConfigErrors> {
    parse_with(file, src, &mut |p| std::fs::read(p))
}

/// [`parse`], reading calendars through `read`.
pub fn parse_with(
    file: &str,
    src: &str,
    read: &mut dyn FnMut(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<AdminConfig, ConfigErrors> {
    let tree: Value = match serde_yaml_ng::from_str(src) {
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
    let mut problems = check::Problems::default();
    let mut files = check::Files {
        base: Path::new(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        read,
    };
    let config = check::check_config(&mut problems, &tree, &mut files);
    if problems.0.is_empty() {
        return Ok(config);
    }
    let mut errors: Vec<ConfigError> = problems
        .0
        .into_iter()
        .map(|(path, message)| {
            let at = locate::locate(src, &path);
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
            let mut summary = format!(
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
            for (name, schedule) in &c.schedules {
                if let Schedule::Holidays(h) = schedule {
                    summary.push_str(&holidays_line(name, &h.holidays));
                }
            }
            for (i, policy) in c.policies.iter().enumerate() {
                summary.push_str(&deletion_warning(policy, &c.policies[..i]));
            }
            (true, summary)
        }
        Err(errors) => (false, format!("{errors}\n")),
    }
}

/// A warning for a policy that deletes namespaces: which ones it selects
/// (those its selector matches and no earlier policy does), after how long.
/// Empty for a policy that deletes nothing.
fn deletion_warning(policy: &Policy, earlier: &[Policy]) -> String {
    let (Some(abandon), Some(delete)) = (policy.abandon_after, policy.delete_after) else {
        return String::new();
    };
    let mut selects = describe_selector(policy);
    if !earlier.is_empty() {
        let names: Vec<&str> = earlier.iter().map(|p| p.name.as_str()).collect();
        selects.push_str(&format!(
            " and not selected by an earlier policy ({})",
            names.join(", ")
        ));
    }
    format!(
        "warning: policy {} deletes namespaces: {selects}, once asleep {} without counted activity (abandonAfter), are deleted {} after a Warning Event DeletionScheduled (deleteAfter), unless activity, a wake or siesta.dev/keep: \"true\" comes first; never kube-*, default, siesta-system or the controller's own namespace. The controller may delete only with the delete-namespaces component (Helm: controller.deleteNamespaces=true)\n",
        policy.name,
        crate::duration::format(abandon),
        crate::duration::format(delete),
    )
}

/// A policy's selector as kubectl writes one (`-l`): `team=a,env in (dev)`.
fn describe_selector(policy: &Policy) -> String {
    let mut parts: Vec<String> = policy
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in &policy.match_expressions {
        let values = e.values.iter().cloned().collect::<Vec<_>>().join(",");
        parts.push(match e.operator {
            Operator::In => format!("{} in ({values})", e.key),
            Operator::NotIn => format!("{} notin ({values})", e.key),
            Operator::Exists => e.key.clone(),
            Operator::DoesNotExist => format!("!{}", e.key),
        });
    }
    if parts.is_empty() {
        "every namespace (the selector is {})".into()
    } else {
        format!("the namespaces with labels {}", parts.join(","))
    }
}

/// `  holidays of NAME: asleep on N days in ZONE, FIRST..LAST` for the summary.
fn holidays_line(name: &str, h: &crate::schedule::Holidays) -> String {
    let spans = h.spans();
    let range = match (spans.first(), spans.last()) {
        (Some((first, _)), Some((_, end))) => {
            format!(", {first}..{}", end.pred_opt().unwrap_or(*end))
        }
        _ => String::new(),
    };
    format!(
        "  holidays of {name}: {} on {} days in {}{range}\n",
        h.mode.phase(),
        h.days(),
        h.tz.name()
    )
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
            "siesta.yaml: policies[0].schedule: no schedule named \"nightly\" (defined: office-hours, late, empty)",
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
            enabled: Some(Enabled::Yes),
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

    #[test]
    fn check_config_warns_about_a_policy_that_deletes_and_says_what_it_selects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("delete.yaml");
        std::fs::write(
            &file,
            "policies:\n  - name: keep-prod\n    namespaceSelector: {matchLabels: {env: prod}}\n    abandonAfter: 30d\n  - name: previews\n    namespaceSelector:\n      matchLabels: {preview: \"true\"}\n      matchExpressions: [{key: team, operator: NotIn, values: [core]}]\n    abandonAfter: 30d\n    deleteAfter: 14d\n",
        )
        .expect("write");
        let (ok, out) = check_config_cli(&file);
        assert!(ok, "a warning is not an error: {out}");
        let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
        assert_eq!(warnings.len(), 1, "{out}");
        let w = warnings[0];
        for words in [
            "policy previews deletes namespaces",
            "labels preview=true,team notin (core)",
            "not selected by an earlier policy (keep-prod)",
            "asleep 30d",
            "deleted 14d after",
            "delete-namespaces component",
        ] {
            assert!(w.contains(words), "{words:?} missing: {w}");
        }
        std::fs::write(
            &file,
            "policies:\n  - name: all\n    namespaceSelector: {}\n    abandonAfter: 1d\n    deleteAfter: 1d\n",
        )
        .expect("write");
        let (_, out) = check_config_cli(&file);
        assert!(
            out.contains("every namespace (the selector is {})"),
            "{out}"
        );
    }

    #[test]
    fn delete_after_needs_abandon_after_and_a_duration() {
        let e = errors(
            "policies:\n  - name: a\n    namespaceSelector: {}\n    deleteAfter: 14d\n  - name: b\n    namespaceSelector: {}\n    abandonAfter: 1d\n    deleteAfter: soon\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("policies[0].deleteAfter: deleteAfter needs abandonAfter"),
            "{e:?}"
        );
        assert!(e[1].contains("policies[1].deleteAfter"), "{e:?}");
        let c = parse(
            "siesta.yaml",
            "policies:\n  - name: a\n    namespaceSelector: {matchLabels: {p: \"1\"}}\n    abandonAfter: 1d\n    deleteAfter: 14d\n",
        )
        .expect("valid");
        let selected: BTreeMap<String, String> = [("p".to_string(), "1".to_string())].into();
        assert_eq!(
            c.delete_after(&selected),
            Some(Duration::from_secs(14 * 86400))
        );
        assert_eq!(c.delete_after(&BTreeMap::new()), None);
    }

    #[test]
    fn holidays_come_from_dates_and_calendars_and_errors_are_located() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("public.ics"),
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20270101\nRRULE:FREQ=YEARLY\nEND:VEVENT\nEND:VCALENDAR\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("broken.ics"),
            "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;TZID=Mars/Olympus:20270101T000000\nEND:VEVENT\nEND:VCALENDAR\n",
        )
        .expect("write");
        let file = dir.path().join("siesta.yaml");
        let file = file.to_str().expect("utf-8");
        let config = "\
schedules:
  office-hours:
    awakeHours: \"Mon-Fri 07:00-19:00 Europe/Berlin\"
    holidays:
      dates: [\"2026-12-24\", \"2026-12-28..2026-12-31\"]
      calendars: [public.ics]
";
        let c = parse(file, config).expect("valid");
        let Some(Schedule::Holidays(h)) = c.schedules.get("office-hours") else {
            panic!("no holidays: {c:?}")
        };
        assert_eq!(h.holidays.tz, chrono_tz::Europe::Berlin);
        let thursday = chrono::DateTime::parse_from_rfc3339("2026-12-24T10:00:00+01:00")
            .expect("instant")
            .to_utc();
        assert_eq!(
            c.schedules["office-hours"].phase_at(thursday),
            Phase::Asleep
        );
        // 2026-12-24, 2026-12-28..2027-01-01 (the calendar's New Year joins the
        // range), then each New Year's Day to 2099.
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        assert_eq!(
            h.holidays.spans()[..3],
            [
                (day("2026-12-24"), day("2026-12-25")),
                (day("2026-12-28"), day("2027-01-02")),
                (day("2028-01-01"), day("2028-01-02"))
            ]
        );
        assert_eq!(h.holidays.days(), 1 + 5 + 72);

        let bad = "\
schedules:
  two-zones:
    awakeHours: \"Mon-Fri 07:00-19:00 Europe/Berlin, Mon-Fri 09:00-17:00 America/New_York\"
    holidays: {dates: [\"2026-12-24\"]}
  office:
    awakeHours: \"Mon-Fri 07:00-19:00 Europe/Berlin\"
    holidays:
      dates: [\"2026-12-24\", \"24.12.2026\"]
      calendars: [public.ics, broken.ics, missing.ics]
      mode: closed
      colour: red
";
        let errs: Vec<String> = match parse(file, bad) {
            Ok(c) => panic!("accepted {c:?}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        };
        let dir = dir.path().display();
        for want in [
            "schedules.two-zones.holidays: the schedule names more than one time zone (Europe/Berlin, America/New_York): say in which one holidays are whole days with `timezone` (line 4, column 15)".to_string(),
            "schedules.office.holidays.dates[1]: \"24.12.2026\" is not a date YYYY-MM-DD".to_string(),
            format!("schedules.office.holidays.calendars[1]: {dir}/broken.ics:3: DTSTART: unknown TZID \"Mars/Olympus\""),
            format!("schedules.office.holidays.calendars[2]: cannot read {dir}/missing.ics"),
            "schedules.office.holidays.mode: \"closed\" is not a holiday mode".to_string(),
            "schedules.office.holidays.colour: unknown field `colour`".to_string(),
        ] {
            assert!(
                errs.iter().any(|e| e.contains(&want)),
                "missing {want:?} in\n{}",
                errs.join("\n")
            );
        }
        assert_eq!(errs.len(), 6, "{}", errs.join("\n"));
        assert!(
            errs.iter()
                .any(|e| e.contains("broken.ics:3") && e.contains("(line 9, column 31)")),
            "{errs:?}"
        );
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

    #[test]
    fn a_policy_can_put_namespaces_in_observe_mode_and_a_misspelling_is_located() {
        let c = parse(
            "f",
            "policies:\n  - {name: trial, namespaceSelector: {matchLabels: {env: dev}}, enabled: observe}\n",
        )
        .expect("valid");
        let (p, _) = c.resolve(&labels(&[("env", "dev")]), &Overrides::default());
        assert!(p.enabled && p.observe);
        // The namespace's own annotation wins over the policy, either way.
        let own = Overrides {
            enabled: Some(Enabled::Yes),
            ..Overrides::default()
        };
        let (p, _) = c.resolve(&labels(&[("env", "dev")]), &own);
        assert!(p.enabled && !p.observe);
        let err = parse(
            "f",
            "policies:\n  - name: trial\n    namespaceSelector: {}\n    enabled: observing\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 4") && err.contains("\"observing\""),
            "{err}"
        );
    }
}
