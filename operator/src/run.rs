//! The operator's entry point, [`run`]: probes and metrics, leader election, then the
//! controllers while this replica leads.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use kolbak_core::telemetry::MetricsRegistry;
use kube::Client;
use tokio::net::TcpListener;

use crate::config::OperatorConfig;
use crate::context::{Context, error_chain};
use crate::controllers::{self, Shutdown};
use crate::error::{Error, Result};
use crate::leader::{LeaderElector, LeaseSettings};
use crate::metrics::ReconcileMetrics;
use kolbak_core::probes;

/// Runs the operator until `shutdown` resolves.
///
/// Serves `/healthz`, `/readyz` and `/metrics` on `config.listen` at once; registers the
/// reconcile metrics in `metrics`; waits to acquire the leader Lease; checks that the CRDs are
/// installed; then runs the WebhookSubscription, ApiKey and DispatcherPool controllers. On
/// shutdown it lets running reconciles finish and releases the Lease so a standby takes over at
/// once.
///
/// # Errors
/// [`Error::Listener`] when `config.listen` cannot be bound; [`Error::CrdMissing`] when a
/// custom resource is not served; [`Error::LeadershipLost`] when the Lease could not be renewed
/// (the process should exit and be restarted).
pub async fn run(
    config: OperatorConfig,
    client: Client,
    metrics: MetricsRegistry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let shutdown: Shutdown = shutdown.boxed().shared();
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listener {
            address: config.listen,
            source,
        })?;
    let probes = tokio::spawn(probes::serve(
        listener,
        metrics.clone(),
        probes::always_ready(),
        shutdown.clone(),
    ));
    let reconcile_metrics = ReconcileMetrics::register(&metrics);

    let settings = LeaseSettings::new(
        config.lease_name.clone(),
        config
            .lease_namespace
            .clone()
            .filter(|ns| !ns.trim().is_empty())
            .unwrap_or_else(|| client.default_namespace().to_owned()),
        identity(&config),
    );
    tracing::info!(
        lease = %format!("{}/{}", settings.namespace, settings.name),
        identity = %settings.identity,
        namespace = config.watch_namespace().unwrap_or("<all>"),
        "operator starting; waiting for the leader Lease"
    );
    let mut elector = LeaderElector::new(client.clone(), settings.clone());
    let result = if elector.acquire(shutdown.clone()).await {
        tracing::info!("leading: starting the controllers");
        let ctx = Arc::new(Context::new(
            client,
            config,
            reconcile_metrics,
            Some(settings.identity.clone()),
        ));
        let led = lead(ctx, &mut elector, shutdown.clone()).await;
        if let Err(error) = elector.release().await {
            tracing::warn!(error = %error_chain(&error), "cannot release the leader Lease");
        }
        led
    } else {
        Ok(())
    };
    probes.abort();
    result
}

/// Runs the controllers while renewing the Lease.
async fn lead(ctx: Arc<Context>, elector: &mut LeaderElector, shutdown: Shutdown) -> Result<()> {
    controllers::check_crds(&ctx.client, ctx.config.watch_namespace()).await?;
    tokio::select! {
        () = controllers::run(ctx, shutdown) => {
            tracing::info!("controllers stopped");
            Ok(())
        }
        lost = elector.hold() => {
            tracing::error!(error = %lost, "stopping the controllers");
            Err(lost)
        }
    }
}

/// The Lease identity: configured, else `HOSTNAME` (the Pod name), else made up.
fn identity(config: &OperatorConfig) -> String {
    config
        .lease_identity
        .clone()
        .filter(|id| !id.trim().is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            format!("kolbak-operator-{}-{nanos}", std::process::id())
        })
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::test_support::{context, run as run_scenario};

    fn config() -> OperatorConfig {
        OperatorConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            lease_identity: Some("operator-0".into()),
            ..OperatorConfig::default()
        }
    }

    #[tokio::test]
    async fn standby_stops_on_shutdown() -> Result<(), Box<dyn std::error::Error>> {
        let (ctx, mut server) = context(OperatorConfig::default());
        let scenario = async move {
            // The Lease is in the client's namespace and held by a live replica.
            let (_, responder) = server
                .expect(
                    Method::GET,
                    "/apis/coordination.k8s.io/v1/namespaces/default/leases/kolbak-operator",
                )
                .await;
            responder.json(
                200,
                &json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": "kolbak-operator", "namespace": "default", "resourceVersion": "1"},
                    "spec": {"holderIdentity": "operator-1", "leaseDurationSeconds": 15},
                }),
            );
        };
        // Shutdown is already requested: after one look at the Lease it returns, never leading.
        let outcome = run_scenario(
            run(
                config(),
                ctx.client.clone(),
                MetricsRegistry::default(),
                async {},
            ),
            scenario,
        )
        .await;
        outcome?;
        Ok(())
    }

    #[tokio::test]
    async fn leader_without_crds_stops_and_releases_the_lease()
    -> Result<(), Box<dyn std::error::Error>> {
        let (ctx, mut server) = context(OperatorConfig::default());
        let lease = "/apis/coordination.k8s.io/v1/namespaces/default/leases/kolbak-operator";
        let scenario = async move {
            let (_, responder) = server.expect(Method::GET, lease).await;
            responder.not_found();
            let (created, responder) = server
                .expect(
                    Method::POST,
                    "/apis/coordination.k8s.io/v1/namespaces/default/leases",
                )
                .await;
            assert_eq!(created.body["spec"]["holderIdentity"], "operator-0");
            let mut stored = created.body.clone();
            stored["metadata"]["resourceVersion"] = json!("1");
            responder.json(201, &stored);
            let (list, responder) = server
                .expect(Method::GET, "/apis/kolbak.io/v1alpha1/webhooksubscriptions")
                .await;
            assert!(list.query.contains("limit=1"), "{list:?}");
            responder.not_found();
            // Released on the way out.
            let (_, responder) = server.expect(Method::GET, lease).await;
            responder.json(200, &stored);
            let (released, responder) = server.expect(Method::PUT, lease).await;
            assert!(released.body["spec"].get("holderIdentity").is_none());
            responder.json(200, &released.body);
        };
        let outcome = run_scenario(
            run(
                config(),
                ctx.client.clone(),
                MetricsRegistry::default(),
                std::future::pending(),
            ),
            scenario,
        )
        .await;
        let Err(Error::CrdMissing { resource, .. }) = outcome else {
            panic!("expected CrdMissing, got {outcome:?}");
        };
        assert_eq!(resource, "webhooksubscriptions.kolbak.io");
        Ok(())
    }
}
