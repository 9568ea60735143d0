//! Writing a custom resource's status (server-side apply on the `status` subresource, field
//! manager `kolbak-operator`) and publishing the Events that go with it.
//!
//! The status body holds only the fields the operator owns. Fields written by others — the
//! delivery health a dispatcher reports, an ApiKey's `lastAccessedAt` — are left out, so server-
//! side apply neither takes them over nor removes them.

use std::fmt::Debug;

use kube::api::{Api, Patch};
use kube::runtime::events::Event;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{Context, error_chain};
use crate::error::{Error, Result};
use crate::owned::{apply_params, describe, namespace};

/// Applies `status` to `obj`'s status subresource.
pub async fn apply<K, S>(ctx: &Context, obj: &K, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize,
{
    let status = serde_json::to_value(status).map_err(|source| Error::Serialization {
        what: format!("status of {}", describe(obj)),
        source,
    })?;
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace(obj)?);
    api.patch_status(&obj.name_any(), &apply_params(), &Patch::Apply(&body))
        .await
        .map_err(Error::kube(format!("apply status of {}", describe(obj))))?;
    Ok(())
}

/// Publishes `events` about `obj`. Events are informational: a failure is logged, not
/// returned, so it never fails (and repeats) a reconcile whose real work succeeded.
pub async fn publish<K>(ctx: &Context, obj: &K, events: impl IntoIterator<Item = Event>)
where
    K: Resource<DynamicType = ()>,
{
    let reference = obj.object_ref(&());
    for event in events {
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(
                object = %describe(obj),
                reason = %event.reason,
                error = %error_chain(&error),
                "cannot publish Event"
            );
        }
    }
}
