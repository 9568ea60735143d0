//! The `DispatcherPool` custom resource (`dpool`): a group of dispatcher replicas with its own
//! concurrency, per-endpoint limits, retry schedule and delivery timeout, which the operator turns
//! into a Deployment.

use std::time::Duration;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::condition::Condition;
use crate::duration::{DURATION_MAX_LENGTH, DURATION_PATTERN};

/// Default `spec.retrySchedule`: the delay before each retry.
pub const DEFAULT_RETRY_SCHEDULE: [&str; 7] = ["5s", "5m", "30m", "2h", "5h", "10h", "10h"];

/// Default `spec.deliveryTimeout`.
pub const DEFAULT_DELIVERY_TIMEOUT: &str = "15s";

/// Default `spec.concurrency`.
pub const DEFAULT_CONCURRENCY: u32 = 256;

/// Default `spec.perEndpoint.maxInFlight`.
pub const DEFAULT_PER_ENDPOINT_MAX_IN_FLIGHT: u32 = 16;

/// Most entries accepted in `spec.retrySchedule`.
pub const RETRY_SCHEDULE_MAX_ITEMS: usize = 50;

/// Desired state of a DispatcherPool: how many dispatchers, and how they deliver.
// kube's `printcolumn(...)` groups repeat keys such as `type_`; clippy mistakes them for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kolbak.io",
    version = "v1alpha1",
    kind = "DispatcherPool",
    namespaced,
    status = "DispatcherPoolStatus",
    derive = "PartialEq",
    shortname = "dpool",
    category = "kolbak",
    doc = "DispatcherPool is a group of Kolbak dispatcher replicas that deliver the events of the \
           WebhookSubscriptions naming it in spec.pool. The operator runs each pool as a \
           Deployment with its own Kafka consumer group, so a slow or failing endpoint in one \
           pool never delays deliveries in another. The Helm chart installs a pool named \
           `default`.",
    printcolumn(
        name = "Min",
        type_ = "integer",
        json_path = ".spec.replicas.min",
        description = "Minimum number of dispatcher replicas"
    ),
    printcolumn(
        name = "Max",
        type_ = "integer",
        json_path = ".spec.replicas.max",
        description = "Maximum number of dispatcher replicas"
    ),
    printcolumn(
        name = "Concurrency",
        type_ = "integer",
        json_path = ".spec.concurrency",
        description = "Deliveries in flight per replica, at most"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the pool's Deployment is available"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Dispatcher replicas that are ready",
        priority = 1
    ),
    printcolumn(
        name = "Deployment",
        type_ = "string",
        json_path = ".status.deployment",
        description = "Deployment that runs the pool",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::kubernetes_compat)]
pub struct DispatcherPoolSpec {
    /// How many dispatcher replicas (Pods) run this pool. Default: exactly one.
    #[serde(default)]
    pub replicas: PoolReplicas,

    /// Maximum number of deliveries one replica has in flight at the same time, across all
    /// endpoints. Higher values deliver more in parallel at the cost of memory and connections.
    /// Minimum 1. Default: 256.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1))]
    pub concurrency: u32,

    /// Limits applied to each subscription's endpoint, so that one endpoint cannot take the
    /// whole pool. A WebhookSubscription can override them with its own `maxInFlight` and
    /// `rateLimitPerSecond`.
    #[serde(default)]
    pub per_endpoint: PerEndpointLimits,

    /// Delay before each retry of a failed delivery, in order: the first entry is the wait after
    /// the first failed attempt, the second after the second, and so on, so the list length is
    /// the number of retries. After the last retry fails, the delivery is marked `failed` and
    /// moved to the dead-letter queue, from which it can be replayed. An empty list means no
    /// retries. Each delay gets up to ±20% random jitter, and a `Retry-After` answer from the
    /// endpoint is honoured within these bounds. Durations are a number and a unit (`ms`, `s`,
    /// `m`, `h`), e.g. `5s`, `30m`, `1h30m`. At most 50 entries.
    /// Default: [5s, 5m, 30m, 2h, 5h, 10h, 10h], about 27.5 hours in total.
    #[serde(default = "default_retry_schedule")]
    #[schemars(
        length(max = RETRY_SCHEDULE_MAX_ITEMS),
        inner(length(min = 1, max = DURATION_MAX_LENGTH), pattern(DURATION_PATTERN))
    )]
    pub retry_schedule: Vec<String>,

    /// How long one delivery attempt may take, from connecting to receiving the response,
    /// before it is abandoned as a timeout (which is retried). A number and a unit, e.g. `15s`,
    /// `500ms`, `1m`; must be more than zero. Default: `15s`.
    #[serde(default = "default_delivery_timeout")]
    #[schemars(length(min = 1, max = DURATION_MAX_LENGTH), pattern(DURATION_PATTERN))]
    pub delivery_timeout: String,

    /// CPU and memory requests and limits for each dispatcher container, in the usual Kubernetes
    /// format, e.g. `{requests: {cpu: 250m, memory: 128Mi}, limits: {memory: 512Mi}}`. When
    /// omitted, the operator's defaults apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Container image for this pool's dispatchers, e.g. `ghcr.io/kolbak/kolbak:0.1.0`. When
    /// omitted, the operator uses the Kolbak image it is configured with; set it only to test or
    /// pin a specific build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
}

/// Bounds on the number of dispatcher replicas of a pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.max >= self.min",
    "message": "replicas.max must be greater than or equal to replicas.min"
}]))]
#[schemars(transform = crate::schema::kubernetes_compat)]
pub struct PoolReplicas {
    /// Fewest replicas to run. Minimum 1. Default: 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub min: u32,

    /// Most replicas to run; at least `min`. Equal to `min` for a fixed size. Default: 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub max: u32,
}

/// Limits that apply to each endpoint (subscription) a pool delivers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::kubernetes_compat)]
pub struct PerEndpointLimits {
    /// Maximum number of deliveries to one endpoint in progress at the same time. Minimum 1.
    /// Default: 16.
    #[serde(default = "default_per_endpoint_max_in_flight")]
    #[schemars(range(min = 1))]
    pub max_in_flight: u32,

    /// Maximum number of requests per second sent to one endpoint, retries included. Minimum 1.
    /// When omitted, there is no rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate_limit_per_second: Option<u32>,
}

/// Observed state of a DispatcherPool, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::kubernetes_compat)]
pub struct DispatcherPoolStatus {
    /// Current state as standard conditions. `Valid`: the spec passed the checks the API server
    /// cannot make. `Ready`: the pool's Deployment exists and has at least `replicas.min`
    /// ready replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` the operator last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Number of dispatcher replicas that are ready to deliver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<u32>,

    /// Name of the Deployment, in this namespace, that runs the pool's dispatchers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
}

impl Default for PoolReplicas {
    fn default() -> Self {
        Self { min: 1, max: 1 }
    }
}

impl Default for PerEndpointLimits {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_PER_ENDPOINT_MAX_IN_FLIGHT,
            rate_limit_per_second: None,
        }
    }
}

impl Default for DispatcherPoolSpec {
    fn default() -> Self {
        Self {
            replicas: PoolReplicas::default(),
            concurrency: DEFAULT_CONCURRENCY,
            per_endpoint: PerEndpointLimits::default(),
            retry_schedule: default_retry_schedule(),
            delivery_timeout: default_delivery_timeout(),
            resources: None,
            image: None,
        }
    }
}

fn one() -> u32 {
    1
}

fn default_concurrency() -> u32 {
    DEFAULT_CONCURRENCY
}

fn default_per_endpoint_max_in_flight() -> u32 {
    DEFAULT_PER_ENDPOINT_MAX_IN_FLIGHT
}

fn default_retry_schedule() -> Vec<String> {
    DEFAULT_RETRY_SCHEDULE.map(str::to_owned).to_vec()
}

fn default_delivery_timeout() -> String {
    DEFAULT_DELIVERY_TIMEOUT.to_owned()
}

impl DispatcherPoolSpec {
    /// `spec.retrySchedule` as durations: the delay before retry 1, 2, ….
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the first entry that is not a valid duration.
    pub fn retry_delays(&self) -> Result<Vec<Duration>, Error> {
        self.retry_schedule
            .iter()
            .enumerate()
            .map(|(i, text)| {
                crate::duration::parse(text).map_err(|reason| {
                    Error::invalid(
                        format!("spec.retrySchedule[{i}]"),
                        format!("{text:?}: {reason}"),
                    )
                })
            })
            .collect()
    }

    /// `spec.deliveryTimeout` as a duration.
    ///
    /// # Errors
    /// [`Error::InvalidField`] when it is not a valid duration or is zero.
    pub fn delivery_timeout(&self) -> Result<Duration, Error> {
        let text = &self.delivery_timeout;
        let timeout = crate::duration::parse(text).map_err(|reason| {
            Error::invalid("spec.deliveryTimeout", format!("{text:?}: {reason}"))
        })?;
        if timeout.is_zero() {
            return Err(Error::invalid(
                "spec.deliveryTimeout",
                "must be more than zero",
            ));
        }
        Ok(timeout)
    }

    /// Checks the rules the CRD schema makes the API server enforce, plus a positive
    /// `deliveryTimeout`, for specs that do not pass through it (standalone mode).
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the first offending field.
    pub fn validate(&self) -> Result<(), Error> {
        let PoolReplicas { min, max } = self.replicas;
        if min == 0 {
            return Err(Error::invalid("spec.replicas.min", "must be at least 1"));
        }
        if max < min {
            return Err(Error::invalid(
                "spec.replicas.max",
                "must be greater than or equal to replicas.min",
            ));
        }
        if self.concurrency == 0 {
            return Err(Error::invalid("spec.concurrency", "must be at least 1"));
        }
        if self.per_endpoint.max_in_flight == 0 {
            return Err(Error::invalid(
                "spec.perEndpoint.maxInFlight",
                "must be at least 1",
            ));
        }
        if self.per_endpoint.rate_limit_per_second == Some(0) {
            return Err(Error::invalid(
                "spec.perEndpoint.rateLimitPerSecond",
                "must be at least 1",
            ));
        }
        if self.retry_schedule.len() > RETRY_SCHEDULE_MAX_ITEMS {
            return Err(Error::invalid(
                "spec.retrySchedule",
                "must have at most 50 entries",
            ));
        }
        self.retry_delays()?;
        self.delivery_timeout()?;
        if self.image.as_ref().is_some_and(String::is_empty) {
            return Err(Error::invalid("spec.image", "must not be empty"));
        }
        Ok(())
    }
}

impl DispatcherPoolStatus {
    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        crate::condition::is_true(&self.conditions, crate::condition::READY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn empty_spec_gets_documented_defaults() -> Result<(), Box<dyn std::error::Error>> {
        let pool: DispatcherPool = serde_yaml::from_str(
            "apiVersion: kolbak.io/v1alpha1\nkind: DispatcherPool\nmetadata:\n  name: default\nspec: {}\n",
        )?;
        assert_eq!(pool.spec, DispatcherPoolSpec::default());
        assert_eq!(pool.spec.replicas, PoolReplicas { min: 1, max: 1 });
        assert_eq!(pool.spec.concurrency, 256);
        assert_eq!(pool.spec.per_endpoint.max_in_flight, 16);
        assert_eq!(pool.spec.per_endpoint.rate_limit_per_second, None);
        assert_eq!(
            pool.spec.retry_schedule,
            ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
        );
        assert_eq!(
            pool.spec.retry_delays()?,
            [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000].map(Duration::from_secs)
        );
        assert_eq!(pool.spec.delivery_timeout()?, Duration::from_secs(15));
        pool.spec.validate()?;
        Ok(())
    }

    #[test]
    fn full_manifest_deserializes() -> Result<(), Box<dyn std::error::Error>> {
        let pool: DispatcherPool = serde_yaml::from_str(
            r#"
apiVersion: kolbak.io/v1alpha1
kind: DispatcherPool
metadata:
  name: critical
  namespace: kolbak
spec:
  replicas: {min: 2, max: 6}
  concurrency: 64
  perEndpoint: {maxInFlight: 4, rateLimitPerSecond: 20}
  retrySchedule: [1s, 10s, 1m30s]
  deliveryTimeout: 5s
  resources:
    requests: {cpu: 250m, memory: 128Mi}
    limits: {memory: 512Mi}
  image: ghcr.io/kolbak/kolbak:dev
status:
  readyReplicas: 2
  deployment: kolbak-dispatcher-critical
"#,
        )?;
        let spec = &pool.spec;
        assert_eq!(spec.replicas, PoolReplicas { min: 2, max: 6 });
        assert_eq!(spec.per_endpoint.rate_limit_per_second, Some(20));
        assert_eq!(spec.retry_delays()?, [1, 10, 90].map(Duration::from_secs));
        assert_eq!(spec.delivery_timeout()?, Duration::from_secs(5));
        let memory = spec
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .map(|q| q.0.as_str());
        assert_eq!(memory, Some("512Mi"));
        spec.validate()?;
        let status = pool.status.ok_or("status missing")?;
        assert_eq!(status.ready_replicas, Some(2));
        Ok(())
    }

    #[test]
    fn validate_rejects_bad_values() {
        let field_of = |spec: DispatcherPoolSpec| match spec.validate() {
            Err(Error::InvalidField { field, .. }) => field,
            other => format!("unexpected {other:?}"),
        };
        let ok = DispatcherPoolSpec::default();
        assert_eq!(
            field_of(DispatcherPoolSpec {
                replicas: PoolReplicas { min: 3, max: 2 },
                ..ok.clone()
            }),
            "spec.replicas.max"
        );
        assert_eq!(
            field_of(DispatcherPoolSpec {
                retry_schedule: vec!["5s".into(), "1d".into()],
                ..ok.clone()
            }),
            "spec.retrySchedule[1]"
        );
        assert_eq!(
            field_of(DispatcherPoolSpec {
                delivery_timeout: "0s".into(),
                ..ok.clone()
            }),
            "spec.deliveryTimeout"
        );
        assert_eq!(
            field_of(DispatcherPoolSpec {
                concurrency: 0,
                ..ok
            }),
            "spec.concurrency"
        );
    }

    #[test]
    fn schema_carries_defaults_and_replica_rule() -> Result<(), serde_json::Error> {
        let crd = serde_json::to_value(DispatcherPool::crd())?;
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let props = &spec["properties"];
        assert_eq!(
            props["retrySchedule"]["default"],
            serde_json::json!(DEFAULT_RETRY_SCHEDULE)
        );
        assert_eq!(props["retrySchedule"]["items"]["pattern"], DURATION_PATTERN);
        assert_eq!(props["deliveryTimeout"]["default"], "15s");
        assert_eq!(props["concurrency"]["default"], 256);
        assert_eq!(props["concurrency"]["minimum"], 1.0);
        assert_eq!(
            props["replicas"]["default"],
            serde_json::json!({"min": 1, "max": 1})
        );
        assert_eq!(
            props["replicas"]["x-kubernetes-validations"][0]["rule"],
            "self.max >= self.min"
        );
        assert_eq!(
            props["perEndpoint"]["default"],
            serde_json::json!({"maxInFlight": 16})
        );
        Ok(())
    }
}
