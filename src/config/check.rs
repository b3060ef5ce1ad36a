//! Checking the YAML tree of an admin config field by field, collecting every
//! problem with its path instead of stopping at the first.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::Value;

use super::{
    AdminConfig, AuditIgnore, Defaults, LabelExpression, Operator, Policy, Prices, ProxyLimits,
};
use crate::annotations::{Enabled, IdleAfter, WakeOn, WakePage};
use crate::schedule::{self, HolidayMode, Holidays, Schedule, WithHolidays};

/// How a config reads the files it names (holiday calendars): relative paths
/// are read from the config file's folder, through `read` (the disk, or the
/// reloader's reader, which remembers what it read to watch it).
pub(super) struct Files<'r> {
    pub(super) base: PathBuf,
    pub(super) read: &'r mut dyn FnMut(&Path) -> std::io::Result<Vec<u8>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct YamlPath(pub(super) Vec<Seg>);

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
pub(super) struct Problems(pub(super) Vec<(YamlPath, String)>);

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

    /// `true`, `false` or `observe`.
    fn enabled(&self, p: &mut Problems, key: &str) -> Option<Enabled> {
        match self.get(key)? {
            Value::Bool(true) => Some(Enabled::Yes),
            Value::Bool(false) => Some(Enabled::No),
            Value::String(s) if s == "observe" => Some(Enabled::Observe),
            Value::String(s) => {
                p.add(
                    &self.at(key),
                    format!("expected true, false or observe, got {s:?}"),
                );
                None
            }
            other => {
                p.add(
                    &self.at(key),
                    format!("expected true, false or observe, got {}", kind(other)),
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

pub(super) fn check_config(p: &mut Problems, tree: &Value, files: &mut Files) -> AdminConfig {
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
    let schedules = check_schedules(p, &top, files);
    // A schedule that is written but invalid has its own error already.
    let written = Map::open(
        &mut Problems::default(),
        top.at("schedules"),
        top.get("schedules"),
        &[],
    );
    let known = |p: &mut Problems, path: YamlPath, name: &str| {
        if written.get(name).is_none() {
            let names: Vec<&str> = written.entries.iter().map(|(k, _)| k.as_str()).collect();
            let defined = names.join(", ");
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
            "maxKeepAwake",
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
        max_keep_awake: m
            .parse(p, "maxKeepAwake", crate::duration::parse)
            .unwrap_or(d.max_keep_awake),
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

fn check_schedules(p: &mut Problems, top: &Map, files: &mut Files) -> BTreeMap<String, Schedule> {
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
            &["awakeHours", "sleep", "wake", "timezone", "holidays"],
        );
        if v.is_null() || m.entries.iter().all(|(k, _)| k == "holidays") {
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
        let Some(base) = parsed else { continue };
        let with = match m.get("holidays") {
            None => Some(base),
            Some(h) => check_holidays(p, m.at("holidays"), h, &base, files)
                .map(|holidays| Schedule::Holidays(Box::new(WithHolidays { base, holidays }))),
        };
        if let Some(s) = with {
            out.insert(name.clone(), s);
        }
    }
    out
}

/// `holidays: {dates, calendars, timezone, mode}` of a schedule.
fn check_holidays(
    p: &mut Problems,
    at: YamlPath,
    v: &Value,
    base: &Schedule,
    files: &mut Files,
) -> Option<Holidays> {
    let before = p.0.len();
    let m = Map::open(
        p,
        at.clone(),
        Some(v),
        &["dates", "calendars", "timezone", "mode"],
    );
    let mode = m.parse(p, "mode", HolidayMode::parse).unwrap_or_default();
    let tz = if m.get("timezone").is_some() {
        m.parse(p, "timezone", |s| schedule::parse_zone(s).map_err(|e| e.0))
    } else {
        let zones = base.zones();
        let names: Vec<&str> = zones.iter().map(|z| z.name()).collect();
        match zones[..] {
            [one] => Some(one),
            [] => {
                p.add(&at, "the schedule names no time zone: say in which one holidays are whole days with `timezone`");
                None
            }
            _ => {
                p.add(&at, format!("the schedule names more than one time zone ({}): say in which one holidays are whole days with `timezone`", names.join(", ")));
                None
            }
        }
    };
    let mut spans = Vec::new();
    for d in m
        .strings(p, "dates", |s| {
            schedule::parse_dates(s).map(|_| ()).map_err(|e| e.0)
        })
        .unwrap_or_default()
    {
        spans.extend(schedule::parse_dates(&d).ok());
    }
    let calendars = m.strings(p, "calendars", any).unwrap_or_default();
    if let (Some(Value::Sequence(items)), Some(tz)) = (m.get("calendars"), tz) {
        for (i, item) in items.iter().enumerate() {
            let Some(name) = item
                .as_str()
                .map(str::trim)
                .filter(|n| calendars.iter().any(|c| c == n))
            else {
                continue;
            };
            let at = m.at("calendars").index(i);
            let path = files.base.join(name);
            let text = match (files.read)(&path).map(String::from_utf8) {
                Ok(Ok(text)) => text,
                Ok(Err(_)) => {
                    p.add(&at, format!("{}: not UTF-8 text", path.display()));
                    continue;
                }
                Err(e) => {
                    p.add(&at, format!("cannot read {}: {e}", path.display()));
                    continue;
                }
            };
            match schedule::ical::read(&text, tz, schedule::HORIZON) {
                Ok(days) => spans.extend(days.spans),
                Err(e) => p.add(&at, format!("{}:{}: {}", path.display(), e.line, e.message)),
            }
        }
    }
    if p.0.len() > before {
        return None;
    }
    Some(Holidays::new(tz?, mode, spans))
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
                "abandonAfter",
                "deleteAfter",
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
        let abandon_after = m.parse(p, "abandonAfter", crate::duration::parse);
        let delete_after = m.parse(p, "deleteAfter", crate::duration::parse);
        if delete_after.is_some() && m.get("abandonAfter").is_none() {
            p.add(
                &at.key("deleteAfter"),
                "deleteAfter needs abandonAfter in the same policy: only a namespace marked abandoned is deleted",
            );
        }
        out.push(Policy {
            name,
            match_labels,
            match_expressions,
            enabled: m.enabled(p, "enabled"),
            idle_after: m.parse(p, "idleAfter", IdleAfter::parse),
            schedule: m.parse(p, "schedule", schedule_name),
            wake_on: m.parse(p, "wakeOn", WakeOn::parse),
            wake_page: m.parse(p, "wakePage", WakePage::parse),
            abandon_after,
            delete_after,
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
            "maxConnections",
            "maxHeldBodyBytes",
            "allowEncodedSlashes",
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
        max_connections: m.count(p, "maxConnections").unwrap_or(d.max_connections),
        max_held_body_bytes: m
            .count(p, "maxHeldBodyBytes")
            .unwrap_or(d.max_held_body_bytes),
        allow_encoded_slashes: m
            .bool(p, "allowEncodedSlashes")
            .unwrap_or(d.allow_encoded_slashes),
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
