//! The DispatcherPool controller: keeps a ConfigMap and a Deployment per pool (rendered by
//! [`crate::pool_render`]) applied with server-side apply, and reports the Deployment's ready
//! replicas in the pool's status.
//!
//! Conditions: `Valid` (the spec passed the schema rules and the dispatchers accept the
//! resulting settings; reason `InvalidSpec` otherwise) and `Ready` (the Deployment has at least
//! `spec.replicas.min` ready replicas; reasons `MinimumReplicasReady`, `ReplicasNotReady`,
//! `NotValid`). An invalid pool leaves its existing Deployment untouched. The controller also
//! watches the Deployments it owns, so a change in ready replicas updates the status.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kolbak_crds::condition::{READY, VALID};
use kolbak_crds::{DispatcherPool, DispatcherPoolStatus};
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use crate::conditions::ConditionSet;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::owned::{apply_params, is_being_deleted, namespace};
use crate::pool_render::{deployment_name, render, settings};
use crate::status;
use crate::subscription::RESYNC;

/// Reconciles one DispatcherPool (the controller's reconcile function).
///
/// # Errors
/// A failed API request; the controller retries with per-object backoff.
pub async fn reconcile(pool: Arc<DispatcherPool>, ctx: Arc<Context>) -> Result<Action> {
    ctx.instrument(pool.as_ref(), reconcile_pool(&pool, &ctx))
        .await
}

async fn reconcile_pool(pool: &DispatcherPool, ctx: &Context) -> Result<Action> {
    if is_being_deleted(pool) {
        return Ok(Action::await_change());
    }
    let ns = namespace(pool)?;
    let generation = pool.meta().generation;
    let current = pool.status.clone().unwrap_or_default();
    let mut conditions = ConditionSet::new(&current.conditions, generation);
    let mut status = DispatcherPoolStatus {
        observed_generation: generation,
        ready_replicas: current.ready_replicas,
        deployment: current.deployment.clone(),
        ..DispatcherPoolStatus::default()
    };
    let action = match settings(&pool.spec, &ctx.config) {
        Err(message) => {
            conditions.set(VALID, false, "InvalidSpec", message);
            conditions.set(
                READY,
                false,
                "NotValid",
                "the spec is not valid; see the Valid condition",
            );
            Action::await_change()
        }
        Ok(settings) => {
            conditions.set(VALID, true, "SpecValid", "");
            let rendered = render(pool, settings, &ctx.config)?;
            let name = deployment_name(&pool.name_any());
            let params = apply_params();
            let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
            config_maps
                .patch(&name, &params, &Patch::Apply(&rendered.config_map))
                .await
                .map_err(Error::kube(format!("apply ConfigMap {ns}/{name}")))?;
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
            let applied = deployments
                .patch(&name, &params, &Patch::Apply(&rendered.deployment))
                .await
                .map_err(Error::kube(format!("apply Deployment {ns}/{name}")))?;
            let ready = applied
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0);
            let wanted = pool.spec.replicas.min;
            let message = format!("{ready} of at least {wanted} dispatcher replicas ready");
            if ready >= wanted {
                conditions.set(READY, true, "MinimumReplicasReady", message);
            } else {
                conditions.set(READY, false, "ReplicasNotReady", message);
            }
            status.ready_replicas = Some(ready);
            status.deployment = Some(name);
            Action::requeue(RESYNC)
        }
    };
    status.conditions = conditions.conditions().to_vec();
    if conditions.changed()
        || current.observed_generation != status.observed_generation
        || current.ready_replicas != status.ready_replicas
        || current.deployment != status.deployment
    {
        status::apply(ctx, pool, &status).await?;
    }
    status::publish(ctx, pool, conditions.events()).await;
    Ok(action)
}

#[cfg(test)]
mod tests;
