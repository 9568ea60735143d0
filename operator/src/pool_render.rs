//! Rendering a DispatcherPool into the objects that run it: a ConfigMap with the pool's
//! dispatcher settings as `KOLBAK_*` variables, and a Deployment `kolbak-dispatcher-<pool>`
//! running `kolbak dispatcher --pool <pool>` with that ConfigMap as its environment.
//!
//! The settings go through the dispatcher's own [`DispatcherConfig`] — built from the pool,
//! checked with its `validate()`, written out with its serialization — so the variable names
//! and formats are exactly the ones a dispatcher reads, and a pool the dispatchers would reject
//! is reported `Valid=False` instead of crash-looping. The pod template carries the annotation
//! `kolbak.io/config-hash`, a hash of the ConfigMap's data: any settings change changes the pod
//! template and so rolls the Deployment.
//!
//! Replicas are `spec.replicas.min`; scaling up to `spec.replicas.max` (a
//! HorizontalPodAutoscaler) is not managed yet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource,
    HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretEnvSource, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kolbak_core::config::Settings;
use kolbak_crds::{DispatcherPool, DispatcherPoolSpec};
use kolbak_dispatcher::DispatcherConfig;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::config::OperatorConfig;
use crate::error::Result;
use crate::owned::{APP_NAME, COMPONENT_LABEL, NAME_LABEL, labels, owner_reference};

/// `app.kubernetes.io/component` of dispatcher objects.
pub const COMPONENT: &str = "dispatcher";
/// Label naming the pool on its ConfigMap, Deployment and Pods.
pub const POOL_LABEL: &str = "kolbak.io/pool";
/// Port of the dispatcher's `/healthz`, `/readyz` and `/metrics`.
pub const PROBE_PORT: i32 = 8080;

/// Pod-template annotation holding the hash of the pool's settings.
pub const CONFIG_HASH_ANNOTATION: &str = "kolbak.io/config-hash";
/// Name of the dispatcher container.
pub const CONTAINER_NAME: &str = "dispatcher";

/// Name of the Deployment (and ConfigMap) that runs the pool `pool`.
pub fn deployment_name(pool: &str) -> String {
    format!("kolbak-dispatcher-{pool}")
}

/// Resources of a dispatcher container when the pool sets none: requests 100m CPU and 128Mi
/// memory, limit 512Mi memory.
pub fn default_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect::<BTreeMap<_, _>>()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "100m"), ("memory", "128Mi")])),
        limits: Some(quantities(&[("memory", "512Mi")])),
        ..ResourceRequirements::default()
    }
}

/// The pool's dispatcher settings as `KOLBAK_*` variables, plus the Kafka and Cassandra
/// connection settings from the operator's configuration.
///
/// # Errors
/// What is wrong, when the spec breaks a schema rule or the dispatchers would reject the
/// resulting settings (e.g. a delivery timeout outside 1 s – 5 min).
pub fn settings(
    spec: &DispatcherPoolSpec,
    config: &OperatorConfig,
) -> Result<BTreeMap<String, String>, String> {
    spec.validate().map_err(|error| error.to_string())?;
    let retry_schedule = spec.retry_delays().map_err(|error| error.to_string())?;
    let delivery_timeout = spec.delivery_timeout().map_err(|error| error.to_string())?;
    // Every field is set today; the update keeps this compiling, with defaults, when the
    // dispatcher gains settings that pools do not control.
    #[allow(clippy::needless_update)]
    let dispatcher = DispatcherConfig {
        retry_schedule,
        delivery_timeout,
        allow_private_targets: config.allow_private_targets,
        max_in_flight: usize::try_from(spec.concurrency).unwrap_or(usize::MAX),
        max_in_flight_per_subscription: usize::try_from(spec.per_endpoint.max_in_flight)
            .unwrap_or(usize::MAX),
        rate_limit_per_subscription: spec.per_endpoint.rate_limit_per_second.unwrap_or(0),
        ..DispatcherConfig::default()
    };
    dispatcher
        .validate()
        .map_err(|error| format!("dispatchers would reject this pool: {error}"))?;
    let serde_json::Value::Object(fields) = serde_json::to_value(&dispatcher)
        .map_err(|error| format!("cannot render the dispatcher settings: {error}"))?
    else {
        return Err("cannot render the dispatcher settings: not a map".to_owned());
    };
    let mut env: BTreeMap<String, String> = fields
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            (format!("KOLBAK_{}", name.to_ascii_uppercase()), text)
        })
        .collect();
    // The probe and metrics port the Deployment's probes and Prometheus use.
    env.insert("KOLBAK_LISTEN".to_owned(), format!("0.0.0.0:{PROBE_PORT}"));
    if let Some(brokers) = config.kafka_brokers() {
        env.insert("KOLBAK_KAFKA_BROKERS".to_owned(), brokers.to_owned());
    }
    if let Some(nodes) = config.cassandra_nodes() {
        env.insert("KOLBAK_CASSANDRA_NODES".to_owned(), nodes.to_owned());
    }
    Ok(env)
}

/// Hash of the settings (first 16 hex digits of a SHA-256 over the sorted entries).
pub fn config_hash(settings: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (name, value) in settings {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    let digest = hex::encode(hasher.finalize());
    digest[..16].to_owned()
}

/// The objects that run a pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The pool's settings, named like the Deployment.
    pub config_map: ConfigMap,
    /// The dispatchers.
    pub deployment: Deployment,
}

/// Renders `pool` with its `settings` (from [`settings`]).
///
/// # Errors
/// [`Error::MissingField`](crate::Error::MissingField) when `pool` has no uid or namespace (it was not read from the API).
pub fn render(
    pool: &DispatcherPool,
    settings: BTreeMap<String, String>,
    config: &OperatorConfig,
) -> Result<Rendered> {
    let pool_name = pool.name_any();
    let name = deployment_name(&pool_name);
    let namespace = Some(crate::owned::namespace(pool)?);
    let owner = owner_reference(pool)?;
    let selector = BTreeMap::from([
        (NAME_LABEL.to_owned(), APP_NAME.to_owned()),
        (COMPONENT_LABEL.to_owned(), COMPONENT.to_owned()),
        (POOL_LABEL.to_owned(), pool_name.clone()),
    ]);
    let mut object_labels = labels(COMPONENT);
    object_labels.insert(POOL_LABEL.to_owned(), pool_name.clone());
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace,
        labels: Some(object_labels.clone()),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    };
    let hash = config_hash(&settings);
    let config_map = ConfigMap {
        metadata: metadata.clone(),
        data: Some(settings),
        ..ConfigMap::default()
    };

    let mut env_from = vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: name.clone(),
            optional: Some(false),
        }),
        ..EnvFromSource::default()
    }];
    if let Some(secret) = config.dispatcher_credentials_secret() {
        env_from.push(EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: secret.to_owned(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        });
    }
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(
            pool.spec
                .image
                .clone()
                .unwrap_or_else(|| config.dispatcher_image.clone()),
        ),
        command: Some(vec!["kolbak".to_owned()]),
        args: Some(vec![
            "dispatcher".to_owned(),
            "--pool".to_owned(),
            pool_name.clone(),
        ]),
        env_from: Some(env_from),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: PROBE_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(http_probe("/healthz", 10)),
        readiness_probe: Some(http_probe("/readyz", 5)),
        resources: Some(
            pool.spec
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let grace_seconds = pool
        .spec
        .delivery_timeout()
        .map_or(45, |timeout| timeout.as_secs().saturating_add(30).min(330));
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(object_labels),
            annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash)])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            service_account_name: config.dispatcher_service_account().map(str::to_owned),
            termination_grace_period_seconds: i64::try_from(grace_seconds).ok(),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            ..PodSpec::default()
        }),
    };
    let replicas = i32::try_from(pool.spec.replicas.min).unwrap_or(i32::MAX);
    let deployment = Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            revision_history_limit: Some(3),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    };
    Ok(Rendered {
        config_map,
        deployment,
    })
}

/// An HTTP GET probe of `path` on the probe port, every `period` seconds.
fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

#[cfg(test)]
mod tests;
