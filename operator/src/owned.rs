//! Conventions for the objects the operator writes: its field manager, the labels it puts on
//! what it creates, owner references that let Kubernetes garbage-collect them, and naming.
//!
//! Every Secret, ConfigMap and Deployment the operator creates carries a controller
//! `ownerReference` to its WebhookSubscription, ApiKey or DispatcherPool, so deleting the custom
//! resource deletes them: no finalizer is needed, because no state lives outside Kubernetes.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::PatchParams;
use kube::{Resource, ResourceExt};

use crate::error::{Error, Result};

/// Field manager of every write the operator makes (server-side apply and creates).
pub const FIELD_MANAGER: &str = "kolbak-operator";

/// `app.kubernetes.io/name` of everything Kolbak runs.
pub const APP_NAME: &str = "kolbak";

/// Label key marking the objects the operator manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Label key naming an object's role, e.g. `dispatcher`, `signing-secret`, `api-key`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// Label key of the application name.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

/// Standard labels of an object the operator creates for `component`.
pub fn labels(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), APP_NAME.to_owned()),
        (COMPONENT_LABEL.to_owned(), component.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
    ])
}

/// Label selector matching the objects the operator created for `component`, for watches.
pub fn selector(component: &str) -> String {
    format!("{MANAGED_BY_LABEL}={FIELD_MANAGER},{COMPONENT_LABEL}={component}")
}

/// Server-side apply parameters: Kolbak's field manager, taking over conflicting fields.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// `Kind namespace/name`, for messages.
pub fn describe<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{} {}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Key of `obj` in the per-object backoff: kind, namespace and name.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    describe(obj)
}

/// The namespace of a namespaced object.
pub fn namespace<K: Resource<DynamicType = ()>>(obj: &K) -> Result<String> {
    obj.namespace().ok_or_else(|| Error::MissingField {
        object: describe(obj),
        field: "metadata.namespace",
    })
}

/// A controller owner reference to `obj` (which must have been read from the API server, so
/// that it has a uid).
pub fn owner_reference<K: Resource<DynamicType = ()>>(obj: &K) -> Result<OwnerReference> {
    obj.controller_owner_ref(&())
        .ok_or_else(|| Error::MissingField {
            object: describe(obj),
            field: "metadata.uid",
        })
}

/// Whether `obj` is being deleted. The operator leaves such objects alone: their owned objects
/// go with them.
pub fn is_being_deleted<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}
