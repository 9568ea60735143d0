//! Wiring the three kube-runtime controllers: what each watches, and running them until
//! shutdown.
//!
//! - WebhookSubscriptions, and the signing Secrets they own (label-selected, so only the
//!   operator's Secrets are cached);
//! - ApiKeys, and the key Secrets they own;
//! - DispatcherPools, and the ConfigMaps and Deployments they own (a Deployment's ready
//!   replicas changing triggers a status update).
//!
//! Everything is watched in `KOLBAK_OPERATOR_NAMESPACE`, or in all namespaces when unset.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use futures::future::{BoxFuture, Shared};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kolbak_crds::{ApiKey, DispatcherPool, WebhookSubscription};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{self, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::context::{Context, error_chain, error_policy};
use crate::error::{Error, Result};
use crate::owned::selector;
use crate::{api_key, pool, pool_render, signing_secret, subscription};

/// A shutdown signal every controller can wait on.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// `Api<K>` in `namespace`, or across all namespaces.
fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Checks that the API server serves the three custom resources, so a missing CRD is one
/// clear error at start instead of endless watch failures.
///
/// # Errors
/// [`Error::CrdMissing`] for the first one missing; [`Error::Kube`] for other failures.
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<()> {
    check::<WebhookSubscription>(client, namespace, "webhooksubscriptions.kolbak.io").await?;
    check::<ApiKey>(client, namespace, "apikeys.kolbak.io").await?;
    check::<DispatcherPool>(client, namespace, "dispatcherpools.kolbak.io").await
}

async fn check<K>(client: &Client, namespace: Option<&str>, resource: &'static str) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    match api::<K>(client, namespace)
        .list(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Err(Error::CrdMissing {
            resource,
            source: kube::Error::Api(status),
        }),
        Err(source) => Err(Error::Kube {
            action: format!("list {resource}"),
            source,
        }),
    }
}

/// Runs the three controllers until `shutdown` resolves and their running reconciles finish.
pub async fn run(ctx: Arc<Context>, shutdown: Shutdown) {
    let client = ctx.client.clone();
    let ns = ctx.config.watch_namespace().map(str::to_owned);
    let ns = ns.as_deref();
    let owned = |component: &str| watcher::Config::default().labels(&selector(component));

    let subscriptions = Controller::new(
        api::<WebhookSubscription>(&client, ns),
        watcher::Config::default(),
    )
    .owns(api::<Secret>(&client, ns), owned(signing_secret::COMPONENT))
    .graceful_shutdown_on(shutdown.clone())
    .run(
        subscription::reconcile,
        error_policy::<WebhookSubscription>,
        ctx.clone(),
    )
    .for_each(log_outcome);

    let api_keys = Controller::new(api::<ApiKey>(&client, ns), watcher::Config::default())
        .owns(api::<Secret>(&client, ns), owned(api_key::COMPONENT))
        .graceful_shutdown_on(shutdown.clone())
        .run(api_key::reconcile, error_policy::<ApiKey>, ctx.clone())
        .for_each(log_outcome);

    let pools = Controller::new(
        api::<DispatcherPool>(&client, ns),
        watcher::Config::default(),
    )
    .owns(api::<ConfigMap>(&client, ns), owned(pool_render::COMPONENT))
    .owns(
        api::<Deployment>(&client, ns),
        owned(pool_render::COMPONENT),
    )
    .graceful_shutdown_on(shutdown)
    .run(pool::reconcile, error_policy::<DispatcherPool>, ctx)
    .for_each(log_outcome);

    futures::join!(subscriptions, api_keys, pools);
}

/// Logs what a controller reports: reconcile failures were logged by the error policy already;
/// watch and queue failures are logged here (kube-runtime retries them with backoff).
async fn log_outcome<K, E>(outcome: std::result::Result<K, controller::Error<E, watcher::Error>>)
where
    E: std::error::Error + 'static,
{
    match outcome {
        Ok(_) => {}
        Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(error) => tracing::warn!(error = %error_chain(&error), "controller error"),
    }
}
