//! Resource requests of pods, as the scheduler counts them: the larger of the
//! sum of the app containers (plus restartable init containers, i.e. sidecars)
//! and the largest init container, plus pod overhead.
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Parse a Kubernetes quantity (`100m`, `1.5`, `128Mi`, `1G`, `1e3`) as a number.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let (num, suffix) = if suffix.starts_with(['e', 'E']) && suffix.len() > 1 {
        (q, "")
    } else {
        (num, suffix)
    };
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    let v = n * mult;
    v.is_finite().then_some(v)
}

fn requests(c: &Container) -> (f64, f64) {
    let get = |k: &str| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(k))
            .and_then(|Quantity(q)| quantity(q))
            .unwrap_or(0.0)
    };
    (get("cpu"), get("memory"))
}

/// CPU cores and memory bytes one pod of this spec requests.
pub fn pod_requests(spec: &PodSpec) -> (f64, f64) {
    let add = |a: (f64, f64), b: (f64, f64)| (a.0 + b.0, a.1 + b.1);
    let mut app = spec.containers.iter().map(requests).fold((0.0, 0.0), add);
    let mut init_peak: (f64, f64) = (0.0, 0.0);
    let mut sidecars = (0.0, 0.0);
    for c in spec.init_containers.iter().flatten() {
        let r = requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars = add(sidecars, r);
        } else {
            // an init container runs beside the sidecars started before it
            let with = add(r, sidecars);
            init_peak = (init_peak.0.max(with.0), init_peak.1.max(with.1));
        }
    }
    app = add(app, sidecars);
    let mut total = (app.0.max(init_peak.0), app.1.max(init_peak.1));
    if let Some(overhead) = &spec.overhead {
        let get = |k: &str| {
            overhead
                .get(k)
                .and_then(|Quantity(q)| quantity(q))
                .unwrap_or(0.0)
        };
        total = add(total, (get("cpu"), get("memory")));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn container(cpu: &str, mem: &str) -> Container {
        Container {
            name: "c".into(),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity(cpu.into())),
                    ("memory".to_string(), Quantity(mem.into())),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("100m"), Some(0.1));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("128Mi"), Some(134_217_728.0));
        assert_eq!(quantity("1G"), Some(1e9));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("banana"), None);
    }

    #[test]
    fn init_containers_count_as_the_scheduler_counts_them() {
        let mut spec = PodSpec {
            containers: vec![container("100m", "64Mi"), container("200m", "64Mi")],
            ..Default::default()
        };
        assert_eq!(pod_requests(&spec), (0.30000000000000004, 134_217_728.0));
        // a big init container raises the peak; app containers do not add to it
        spec.init_containers = Some(vec![container("1", "32Mi")]);
        assert_eq!(pod_requests(&spec), (1.0, 134_217_728.0));
        // a sidecar (restartable init container) adds to the app containers
        let mut sidecar = container("100m", "64Mi");
        sidecar.restart_policy = Some("Always".into());
        spec.init_containers = Some(vec![sidecar]);
        assert!((pod_requests(&spec).0 - 0.4).abs() < 1e-9);
    }
}
