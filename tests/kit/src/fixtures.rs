//! Workload fixtures (Deployments, StatefulSets, CronJobs with requests) and
//! reading, scaling and watching the objects of a namespace.
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::eventually;

fn pod_template(app: &str, cpu: &str, memory: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".into(), app.into())])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.invalid/app:1".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity(memory.into())),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([("app".into(), app.into())])),
        ..Default::default()
    }
}

/// A Deployment fixture: `deployment("web").replicas(3).requests("250m", "128Mi")`.
#[derive(Clone)]
pub struct Workload {
    pub name: String,
    pub replicas: i32,
    pub cpu: String,
    pub memory: String,
    pub annotations: BTreeMap<String, String>,
}

pub fn workload(name: &str) -> Workload {
    Workload {
        name: name.into(),
        replicas: 1,
        cpu: "100m".into(),
        memory: "64Mi".into(),
        annotations: BTreeMap::new(),
    }
}

impl Workload {
    pub fn replicas(mut self, n: i32) -> Self {
        self.replicas = n;
        self
    }
    pub fn requests(mut self, cpu: &str, memory: &str) -> Self {
        self.cpu = cpu.into();
        self.memory = memory.into();
        self
    }
    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.annotations.insert(k.into(), v.into());
        self
    }
    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name.clone()),
            annotations: Some(self.annotations.clone()),
            ..Default::default()
        }
    }
    pub fn deployment(&self) -> Deployment {
        Deployment {
            metadata: self.meta(),
            spec: Some(DeploymentSpec {
                replicas: Some(self.replicas),
                selector: selector(&self.name),
                template: pod_template(&self.name, &self.cpu, &self.memory),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    pub fn statefulset(&self) -> StatefulSet {
        StatefulSet {
            metadata: self.meta(),
            spec: Some(StatefulSetSpec {
                replicas: Some(self.replicas),
                selector: selector(&self.name),
                template: pod_template(&self.name, &self.cpu, &self.memory),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    pub fn cronjob(&self, suspend: bool) -> CronJob {
        CronJob {
            metadata: self.meta(),
            spec: CronJobSpec {
                schedule: "*/5 * * * *".into(),
                suspend: Some(suspend),
                job_template: JobTemplateSpec {
                    spec: Some(k8s_openapi::api::batch::v1::JobSpec {
                        template: PodTemplateSpec {
                            spec: Some(PodSpec {
                                restart_policy: Some("Never".into()),
                                ..pod_template(&self.name, &self.cpu, &self.memory)
                                    .spec
                                    .unwrap()
                            }),
                            ..Default::default()
                        },
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

pub async fn create<K>(client: &kube::Client, ns: &str, obj: &K) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), obj)
        .await
        .expect("create workload")
}

pub async fn replicas_of<K>(client: &kube::Client, ns: &str, name: &str) -> Option<i32>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    let v = serde_json::to_value(
        Api::<K>::namespaced(client.clone(), ns)
            .get(name)
            .await
            .ok()?,
    )
    .ok()?;
    v["spec"]["replicas"].as_i64().map(|n| n as i32)
}

pub async fn annotation_of<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Option<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let obj = Api::<K>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    obj.meta().annotations.as_ref()?.get(key).cloned()
}

pub async fn scale<K>(client: &kube::Client, ns: &str, name: &str, replicas: i32)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("scale");
}

/// Events on an object, newest last: (reason, message).
pub async fn events_for(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String)> {
    use k8s_openapi::api::events::v1::Event;
    let list = Api::<Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Wait until a workload has this many replicas (a sleep or wake pass runs just
/// after the namespace's state annotation changes).
pub async fn replicas_become<K>(client: &kube::Client, ns: &str, name: &str, want: i32)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize,
{
    eventually(
        &format!("{ns}/{name} at {want} replicas"),
        Duration::from_secs(15),
        || async { replicas_of::<K>(client, ns, name).await == Some(want) },
    )
    .await;
}
