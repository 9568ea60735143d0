//! The state every reconcile shares: the Kubernetes client, the configuration, the metrics, the
//! event recorder and the per-object error backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, Resource};

use crate::backoff::ErrorBackoff;
use crate::config::OperatorConfig;
use crate::error::{Error, Result};
use crate::metrics::ReconcileMetrics;
use crate::owned::{FIELD_MANAGER, object_key};

/// Shared by the three controllers; one per operator process.
pub struct Context {
    /// Client for the Kubernetes API server.
    pub client: Client,
    /// The operator's settings.
    pub config: OperatorConfig,
    /// Reconcile counters and durations.
    pub metrics: ReconcileMetrics,
    /// Publishes Kubernetes Events about reconciled objects (reporting controller
    /// `kolbak-operator`).
    pub recorder: Recorder,
    /// Per-object delays after failed reconciles.
    pub backoff: ErrorBackoff,
}

impl Context {
    /// A context whose Events name `instance` (the Lease identity) as reporting instance.
    pub fn new(
        client: Client,
        config: OperatorConfig,
        metrics: ReconcileMetrics,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            backoff: ErrorBackoff::default(),
        }
    }

    /// Runs one reconcile of `obj`: records its duration and result, and forgets the object's
    /// past failures when it succeeds.
    pub async fn instrument<K, F>(&self, obj: &K, reconcile: F) -> Result<Action>
    where
        K: Resource<DynamicType = ()>,
        F: Future<Output = Result<Action>>,
    {
        let started = Instant::now();
        let result = reconcile.await;
        self.metrics
            .observe(kind_name::<K>(), started.elapsed(), &result);
        if result.is_ok() {
            self.backoff.reset(&object_key(obj));
        }
        result
    }
}

/// The error policy of every controller: logs the failure and retries the object after its
/// exponential backoff delay.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = object_key(obj.as_ref());
    let delay = ctx.backoff.record_failure(&key);
    tracing::warn!(
        object = %key,
        retry_in = ?delay,
        error = %error_chain(error),
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// `error: source: source…` in one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The kind of `K` as a `'static` label: one of the three custom resources, or `other`.
fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "WebhookSubscription" => "WebhookSubscription",
        "ApiKey" => "ApiKey",
        "DispatcherPool" => "DispatcherPool",
        _ => "other",
    }
}
