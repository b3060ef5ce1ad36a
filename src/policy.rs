//! Layering: a namespace's own annotations, over the first admin policy whose
//! selector matches its labels, over the admin defaults. Pure.
use std::collections::BTreeMap;

use crate::annotations::{Overrides, WakePage};
use crate::config::AdminConfig;
use crate::decide::Policy;

/// The settings in force for a namespace, or every reason they cannot be known
/// (for example a schedule name that the admin config does not define).
pub fn effective(
    config: &AdminConfig,
    labels: &BTreeMap<String, String>,
    own: &Overrides,
) -> Result<Policy, Vec<String>> {
    let policy = config.policy_for(labels);
    let enabled = own
        .enabled
        .or(policy.and_then(|p| p.enabled))
        .unwrap_or(false);
    let idle_after = own
        .idle_after
        .or(policy.and_then(|p| p.idle_after))
        .unwrap_or(config.defaults.idle_after);
    let wake_on = own
        .wake_on
        .or(policy.and_then(|p| p.wake_on))
        .unwrap_or(config.defaults.wake_on);
    let mut errors = Vec::new();
    // Inline awake hours beat a named schedule of the same namespace.
    let schedule = match (&own.awake_hours, &own.schedule) {
        (Some(inline), _) => Some(inline.clone()),
        (None, Some(name)) => match config.schedules.get(name) {
            Some(s) => Some(s.clone()),
            None => {
                errors.push(format!(
                    "annotation {}: no schedule named {name:?} in the admin config",
                    crate::annotations::SCHEDULE
                ));
                None
            }
        },
        (None, None) => policy
            .and_then(|p| p.schedule.as_ref())
            .and_then(|name| config.schedules.get(name))
            .cloned(),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Policy {
        enabled,
        idle_after,
        schedule,
        wake_on,
        keep_awake_until: own.keep_awake_until,
    })
}

/// What a browser sees while the namespace wakes.
pub fn wake_page(
    config: &AdminConfig,
    labels: &BTreeMap<String, String>,
    own: &Overrides,
) -> WakePage {
    own.wake_page
        .or(config.policy_for(labels).and_then(|p| p.wake_page))
        .unwrap_or(config.defaults.wake_page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::{IdleAfter, WakeOn};
    use crate::config::Policy as AdminPolicy;
    use crate::schedule::Schedule;
    use std::time::Duration;

    fn config() -> AdminConfig {
        let mut c = AdminConfig::default();
        c.schedules.insert("nights".into(), Schedule::Never);
        c.policies.push(AdminPolicy {
            name: "dev".into(),
            match_labels: BTreeMap::from([("env".into(), "dev".into())]),
            enabled: Some(true),
            idle_after: Some(IdleAfter::After(Duration::from_secs(3600))),
            schedule: Some("nights".into()),
            wake_on: Some(WakeOn {
                api: false,
                http: true,
            }),
            wake_page: Some(WakePage::Never),
        });
        c
    }

    #[test]
    fn annotations_beat_policy_beats_defaults() {
        let dev = BTreeMap::from([("env".to_string(), "dev".to_string())]);
        let p = effective(&config(), &dev, &Overrides::default()).unwrap();
        assert!(p.enabled);
        assert_eq!(p.idle_after, IdleAfter::After(Duration::from_secs(3600)));
        assert_eq!(p.schedule, Some(Schedule::Never));
        let own = Overrides {
            idle_after: Some(IdleAfter::Off),
            enabled: Some(false),
            ..Default::default()
        };
        let p = effective(&config(), &dev, &own).unwrap();
        assert!(!p.enabled);
        assert_eq!(p.idle_after, IdleAfter::Off);
        let p = effective(&config(), &BTreeMap::new(), &Overrides::default()).unwrap();
        assert!(!p.enabled, "nothing is opted in by default");
        assert_eq!(p.idle_after, config().defaults.idle_after);
        assert_eq!(
            wake_page(&config(), &dev, &Overrides::default()),
            WakePage::Never
        );
    }

    #[test]
    fn an_unknown_schedule_name_is_an_error() {
        let own = Overrides {
            schedule: Some("weekends".into()),
            ..Default::default()
        };
        let err = effective(&config(), &BTreeMap::new(), &own).unwrap_err();
        assert!(err[0].contains("weekends"), "{err:?}");
    }
}
