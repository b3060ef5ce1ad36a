//! Workloads through the API: a scaler pass reads every managed kind of a
//! namespace and applies [`crate::scaler`]'s steps one guarded patch at a
//! time, group by group in wake order (a wake restores one group per
//! [`scaler::next_wake`], a sleep goes in reverse order; the workloads of one
//! group are patched at once); `siesta status` reads them without changing
//! anything.
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::scaler::{
    self, Item, Pass, Report, Step, WakeGroup, Workload, account, account_potential, patch_for,
    sleep_step, wake_step,
};

/// Where an ordered wake stands: the group restored last and since when (as
/// recorded on the namespace), updated by [`run`] when it restores another.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub started: Option<WakeGroup>,
    /// The whole wake took too long: restore everything left at once.
    pub all_at_once: bool,
    /// How long one group is waited for before the next one starts anyway.
    pub group_timeout: Duration,
    pub now: DateTime<Utc>,
}

/// Run one pass over every managed kind of a namespace.
pub async fn run(
    client: &kube::Client,
    namespace: &str,
    pass: Pass,
    progress: &mut Progress,
) -> kube::Result<Report> {
    let mut items = list_all(client, namespace).await?;
    let mut report = Report::default();
    match pass {
        Pass::Sleep => {
            for group in scaler::sleep_groups(&items) {
                apply_group(client, namespace, pass, &mut items, &group, &mut report).await?;
            }
        }
        Pass::Wake => {
            // Each round restores one group; a group that is ready at once
            // (CronJobs, zero replicas) lets the next go in the same pass.
            for _ in 0..=items.len() {
                let next = scaler::next_wake(
                    &items,
                    progress.started,
                    progress.now,
                    progress.group_timeout,
                    progress.all_at_once,
                );
                if let Some(done) = progress.started.filter(|s| next.group != Some(s.order)) {
                    let seconds = (progress.now - done.since).as_seconds_f64();
                    tracing::info!(
                        namespace,
                        group = done.order,
                        seconds,
                        given_up = next.given_up,
                        "wake group done"
                    );
                }
                report.wake_group = next.group;
                report.not_ready = next.not_ready;
                report.given_up = next.given_up;
                if next.apply.is_empty() {
                    break;
                }
                if let Some(order) = next.group
                    && progress.started.map(|s| s.order) != Some(order)
                {
                    tracing::info!(
                        namespace,
                        group = order,
                        workloads = next.apply.len(),
                        "wake group restoring"
                    );
                    progress.started = Some(WakeGroup {
                        order,
                        since: progress.now,
                    });
                }
                apply_group(
                    client,
                    namespace,
                    pass,
                    &mut items,
                    &next.apply,
                    &mut report,
                )
                .await?;
            }
        }
    }
    for item in &items {
        if let Some(Err(v)) = &item.record {
            report.unreadable.push((item.reference.clone(), v.clone()));
        }
        if let Some(v) = &item.bad_order {
            report.bad_orders.push((item.reference.clone(), v.clone()));
        }
        account(item, &mut report);
    }
    Ok(report)
}

async fn list<K: Workload>(client: &kube::Client, ns: &str) -> kube::Result<Vec<Item>> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .iter()
        .map(Workload::item)
        .collect())
}

/// Apply the pass's step to these items, all at once, and note what changed.
async fn apply_group(
    client: &kube::Client,
    ns: &str,
    pass: Pass,
    items: &mut [Item],
    group: &[usize],
    report: &mut Report,
) -> kube::Result<()> {
    let results = futures::future::try_join_all(
        group
            .iter()
            .map(|&i| apply_one(client, ns, pass, items[i].clone())),
    )
    .await?;
    for (&i, (item, step)) in group.iter().zip(results) {
        let was = &items[i];
        if matches!(step, Some(Step::Sleep { .. } | Step::Restore { .. })) {
            *report.changed.entry(item.kind).or_default() += 1;
        }
        if let (Some(Step::Sleep { .. }), Some(agent)) = (&step, &was.agent)
            && agent.pause_annotation().is_some()
        {
            *report.paused.entry(agent.to_string()).or_default() += 1;
        }
        // Someone else's change; a lone pause given back is not one.
        if matches!(step, Some(Step::Release))
            || (matches!(step, Some(Step::DropRecord)) && was.record.is_some())
        {
            report
                .conflicts
                .push((was.reference.clone(), was.scaled_by.clone()));
        }
        items[i] = item;
    }
    Ok(())
}

async fn apply_one(
    client: &kube::Client,
    ns: &str,
    pass: Pass,
    item: Item,
) -> kube::Result<(Item, Option<Step>)> {
    match item.kind {
        Deployment::NAME => apply_kind::<Deployment>(client, ns, pass, item).await,
        StatefulSet::NAME => apply_kind::<StatefulSet>(client, ns, pass, item).await,
        ReplicaSet::NAME => apply_kind::<ReplicaSet>(client, ns, pass, item).await,
        _ => apply_kind::<CronJob>(client, ns, pass, item).await,
    }
}

/// One workload's step as a guarded patch; on a conflict read it again and
/// decide again. The item as it is now, and the step that was written.
async fn apply_kind<K: Workload>(
    client: &kube::Client,
    ns: &str,
    pass: Pass,
    mut item: Item,
) -> kube::Result<(Item, Option<Step>)> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams {
        field_manager: Some(crate::FIELD_MANAGER.into()),
        ..Default::default()
    };
    for attempt in 1..=5 {
        let step = match pass {
            Pass::Sleep => sleep_step(&item),
            Pass::Wake => wake_step(&item),
        };
        let Some(patch) = patch_for(&item, &step) else {
            return Ok((item, None));
        };
        match api.patch(&item.name, &pp, &Patch::Merge(&patch)).await {
            Ok(updated) => return Ok((updated.item(), Some(step))),
            // Changed since we read it: read again and decide again.
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 5 => {
                item = api.get(&item.name).await?.item();
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok((item, None)),
            Err(e) => return Err(e),
        }
    }
    Ok((item, None))
}

/// Read a namespace's workloads without changing anything (for `siesta status`).
pub async fn inspect(client: &kube::Client, namespace: &str) -> kube::Result<Report> {
    let mut report = Report::default();
    for item in list_all(client, namespace).await? {
        account(&item, &mut report);
    }
    Ok(report)
}

/// What a sleep pass would stop now, read without changing anything
/// (observe mode's potential savings): requests of the running replicas of
/// every workload a sleep pass would scale to zero.
pub async fn potential(client: &kube::Client, namespace: &str) -> kube::Result<Report> {
    let mut report = Report::default();
    for item in list_all(client, namespace).await? {
        account_potential(&item, &mut report);
    }
    Ok(report)
}

/// Every managed kind's workloads of a namespace, the four kinds at once.
async fn list_all(client: &kube::Client, namespace: &str) -> kube::Result<Vec<Item>> {
    let (d, s, r, c) = futures::try_join!(
        list::<Deployment>(client, namespace),
        list::<StatefulSet>(client, namespace),
        list::<ReplicaSet>(client, namespace),
        list::<CronJob>(client, namespace),
    )?;
    Ok([d, s, r, c].into_iter().flatten().collect())
}
