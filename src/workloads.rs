//! Workloads through the API: a scaler pass reads every managed kind of a
//! namespace and applies [`crate::scaler`]'s steps one guarded patch at a
//! time; `siesta status` reads them without changing anything.
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::scaler::{
    Pass, Report, Step, Workload, account, account_potential, patch_for, sleep_step, wake_step,
};

/// Run one pass over every managed kind of a namespace, the four kinds at once.
pub async fn run(client: &kube::Client, namespace: &str, pass: Pass) -> kube::Result<Report> {
    let (d, s, r, c) = futures::try_join!(
        pass_kind::<Deployment>(client, namespace, pass),
        pass_kind::<StatefulSet>(client, namespace, pass),
        pass_kind::<ReplicaSet>(client, namespace, pass),
        pass_kind::<CronJob>(client, namespace, pass),
    )?;
    Ok(Report::merge([d, s, r, c]))
}

/// Read a namespace's workloads without changing anything (for `siesta status`).
pub async fn inspect(client: &kube::Client, namespace: &str) -> kube::Result<Report> {
    let mut report = Report::default();
    inspect_kind::<Deployment>(client, namespace, &mut report).await?;
    inspect_kind::<StatefulSet>(client, namespace, &mut report).await?;
    inspect_kind::<ReplicaSet>(client, namespace, &mut report).await?;
    inspect_kind::<CronJob>(client, namespace, &mut report).await?;
    Ok(report)
}

/// What a sleep pass would stop now, read without changing anything
/// (observe mode's potential savings): requests of the running replicas of
/// every workload a sleep pass would scale to zero.
pub async fn potential(client: &kube::Client, namespace: &str) -> kube::Result<Report> {
    let (d, s) = futures::try_join!(
        potential_kind::<Deployment>(client, namespace),
        potential_kind::<StatefulSet>(client, namespace),
    )?;
    let r = potential_kind::<ReplicaSet>(client, namespace).await?;
    Ok(Report::merge([d, s, r]))
}

async fn potential_kind<K: Workload>(client: &kube::Client, ns: &str) -> kube::Result<Report> {
    let mut report = Report::default();
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    for obj in api.list(&ListParams::default()).await? {
        account_potential(&obj.item(), &mut report);
    }
    Ok(report)
}

async fn inspect_kind<K: Workload>(
    client: &kube::Client,
    ns: &str,
    report: &mut Report,
) -> kube::Result<()> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    for obj in api.list(&ListParams::default()).await? {
        account(&obj.item(), report);
    }
    Ok(())
}

async fn pass_kind<K: Workload>(
    client: &kube::Client,
    ns: &str,
    pass: Pass,
) -> kube::Result<Report> {
    let mut report = Report::default();
    let report = &mut report;
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    for obj in api.list(&ListParams::default()).await? {
        let mut item = obj.item();
        for attempt in 1..=5 {
            let step = match pass {
                Pass::Sleep => sleep_step(&item),
                Pass::Wake => wake_step(&item),
            };
            let Some(patch) = patch_for(&item, &step) else {
                break;
            };
            match api.patch(&item.name, &pp, &Patch::Merge(&patch)).await {
                Ok(updated) => {
                    if matches!(step, Step::Sleep { .. } | Step::Restore { .. }) {
                        *report.changed.entry(K::NAME).or_default() += 1;
                    }
                    if let (Step::Sleep { .. }, Some(agent)) = (&step, &item.agent)
                        && agent.pause_annotation().is_some()
                    {
                        *report.paused.entry(agent.to_string()).or_default() += 1;
                    }
                    // Someone else's change; a lone pause given back is not one.
                    if matches!(step, Step::Release)
                        || (matches!(step, Step::DropRecord) && item.record.is_some())
                    {
                        report
                            .conflicts
                            .push((item.reference.clone(), item.scaled_by.clone()));
                    }
                    item = updated.item();
                    break;
                }
                // Changed since we read it: read again and decide again.
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => {
                    item = api.get(&item.name).await?.item();
                }
                Err(kube::Error::Api(e)) if e.code == 404 => break,
                Err(e) => return Err(e),
            }
        }
        if let Some(Err(v)) = &item.record {
            report.unreadable.push((item.reference.clone(), v.clone()));
        }
        let managed = !item.excluded && !item.owned;
        if managed && pass == Pass::Wake && item.running > 0 && !item.ready {
            report.not_ready += 1;
        }
        account(&item, report);
    }
    Ok(std::mem::take(report))
}
