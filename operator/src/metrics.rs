//! The operator's Prometheus metrics, registered in the process's
//! [`MetricsRegistry`] under the `kolbak_` prefix:
//!
//! - `kolbak_operator_reconciles_total{kind, result}`: reconciles by custom resource kind and
//!   `result` (`success` or `error`);
//! - `kolbak_operator_reconcile_errors_total{kind, error}`: failed reconciles by kind and error
//!   label (see [`Error::metric_label`](crate::Error::metric_label));
//! - `kolbak_operator_reconcile_duration_seconds{kind}`: reconcile duration histogram.

use std::time::Duration;

use kolbak_core::telemetry::MetricsRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;

use crate::Error;

/// Histogram buckets for reconcile durations, in seconds.
const DURATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

/// Counters and the duration histogram of every reconcile.
#[derive(Clone, Debug)]
pub struct ReconcileMetrics {
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: HistogramFamily,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        fn histogram() -> Histogram {
            Histogram::new(DURATION_BUCKETS)
        }
        Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(histogram),
        }
    }
}

impl ReconcileMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &MetricsRegistry) -> Self {
        let metrics = Self::default();
        registry.register(|r| {
            r.register(
                "operator_reconciles",
                "Reconciles by custom resource kind and result",
                metrics.reconciles.clone(),
            );
            r.register(
                "operator_reconcile_errors",
                "Failed reconciles by custom resource kind and error",
                metrics.errors.clone(),
            );
            r.register_with_unit(
                "operator_reconcile_duration",
                "Reconcile duration by custom resource kind",
                Unit::Seconds,
                metrics.duration.clone(),
            );
        });
        metrics
    }

    /// Records one reconcile of a `kind` object that took `elapsed` and ended with `result`.
    pub fn observe<T>(&self, kind: &'static str, elapsed: Duration, result: &Result<T, Error>) {
        self.duration
            .get_or_create(&KindLabels { kind })
            .observe(elapsed.as_secs_f64());
        let outcome = if result.is_ok() { "success" } else { "error" };
        self.reconciles
            .get_or_create(&ResultLabels {
                kind,
                result: outcome,
            })
            .inc();
        if let Err(error) = result {
            self.errors
                .get_or_create(&ErrorLabels {
                    kind,
                    error: error.metric_label(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_counts_errors_and_durations() -> Result<(), Box<dyn std::error::Error>> {
        let registry = MetricsRegistry::default();
        let metrics = ReconcileMetrics::register(&registry);
        metrics.observe::<()>("WebhookSubscription", Duration::from_millis(20), &Ok(()));
        metrics.observe::<()>(
            "ApiKey",
            Duration::from_millis(3),
            &Err(Error::MissingField {
                object: "ApiKey a/b".into(),
                field: "metadata.uid",
            }),
        );
        let text = registry.encode()?;
        for line in [
            r#"kolbak_operator_reconciles_total{kind="WebhookSubscription",result="success"} 1"#,
            r#"kolbak_operator_reconciles_total{kind="ApiKey",result="error"} 1"#,
            r#"kolbak_operator_reconcile_errors_total{kind="ApiKey",error="missing_field"} 1"#,
            r#"kolbak_operator_reconcile_duration_seconds_count{kind="WebhookSubscription"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        Ok(())
    }
}
