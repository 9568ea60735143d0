//! The whole cluster path with the Kubernetes registry: a real kube-apiserver
//! (`scripts/kube.sh up`), a real Kafka broker, a real Cassandra node, `kolbak ingress` and one
//! `kolbak dispatcher` per DispatcherPool (run here as processes: the test API server has no
//! kubelet), and a real HTTP receiver. A subscription created over REST and one applied as a
//! custom resource (as `kubectl apply` would) both receive signed deliveries, each from its
//! own pool's dispatcher only (every process acting as its ServiceAccount under the chart's
//! Roles), and the REST objects are custom resources a kubectl read sees.
//! Without the services the test prints a note and passes, except with `CI=true`, where it
//! fails.

#[path = "support/chart_rbac.rs"]
mod chart_rbac;
#[path = "support/cluster.rs"]
mod cluster;
mod harness;
#[path = "../core/tests/support/kube_api.rs"]
mod kube_api;

use std::time::Duration;

use cluster::{Process, broker_up, brokers, cassandra_nodes, migrated_keyspace, service_up};
use harness::{Client, Receiver, TestResult};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kolbak_core::SigningSecret;
use kolbak_core::id::new_id;
use kolbak_crds::{ApiKey, SecretKeyRef, WebhookSubscription, WebhookSubscriptionSpec};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const EVENTS: usize = 8;
const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn rest_and_kubectl_subscriptions_are_delivered_by_their_pools() -> TestResult {
    let Some(kube) = kube_api::client().await? else {
        return Ok(());
    };
    if !broker_up(&brokers())
        || !service_up(
            "Cassandra node",
            &cassandra_nodes(),
            "scripts/cassandra.sh up",
        )
    {
        return Ok(());
    }
    let namespace = kube_api::namespace(&kube, "kolbak-e2e").await?;
    let env = [
        ("KOLBAK_REGISTRY", "kube".to_owned()),
        ("KOLBAK_KUBE_NAMESPACE", namespace.clone()),
        ("KOLBAK_KAFKA_TOPIC_PREFIX", format!("test.{}.", new_id())),
        ("KOLBAK_KAFKA_PARTITIONS", "2".to_owned()),
        ("KOLBAK_CASSANDRA_KEYSPACE", migrated_keyspace()?),
        ("KOLBAK_DELIVERY_LOG", "cassandra".to_owned()),
        ("KOLBAK_KAFKA_SESSION_TIMEOUT", "6s".to_owned()),
        ("KOLBAK_HEALTH_REPORT_INTERVAL", "1s".to_owned()),
    ];
    let dir = tempfile::tempdir()?;
    // Every process acts as its ServiceAccount with the chart's Role: the test proves the
    // grants are enough.
    let identities = chart_rbac::install(&kube, &namespace, dir.path()).await?;
    let as_ingress = identities.ingress.to_string_lossy().into_owned();
    let as_dispatcher = identities.dispatcher.to_string_lossy().into_owned();
    let ingress = Process::start(
        "ingress",
        "ingress",
        dir.path(),
        true,
        &with(&env, &[("KUBECONFIG", as_ingress.as_str())]),
    )?;
    ingress.wait_ready().await?;
    let api = Client::admin(&ingress.base).await?;
    let receiver = Receiver::start().await?;

    // Over REST: a WebhookSubscription named by its id, in pool `default`.
    let (rest_id, rest_secret) = api
        .subscribe(json!({"callback_url": receiver.url("rest"), "event": "order.*"}))
        .await?;
    let wsubs: Api<WebhookSubscription> = Api::namespaced(kube.clone(), &namespace);
    assert_eq!(
        wsubs.get(&rest_id).await?.spec.callback_url,
        receiver.url("rest")
    );

    // As kubectl would: pool `critical`, signing secret from the team's own Secret.
    let team_secret = SigningSecret::generate();
    let mut secret = Secret::default();
    secret.metadata.name = Some("critical-hooks".into());
    secret.data = Some(
        [(
            "secret".to_owned(),
            ByteString(team_secret.expose().as_bytes().to_vec()),
        )]
        .into(),
    );
    Api::<Secret>::namespaced(kube.clone(), &namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    let mut spec = WebhookSubscriptionSpec::new(receiver.url("kubectl"), "order.created");
    spec.pool = "critical".into();
    spec.secret_ref = Some(SecretKeyRef {
        name: "critical-hooks".into(),
        key: "secret".into(),
    });
    wsubs
        .create(
            &PostParams::default(),
            &WebhookSubscription::new("critical-orders", spec),
        )
        .await?;
    // The ingress's watch shows kubectl's object shortly after.
    let wanted = vec![rest_id.clone(), "critical-orders".to_owned()];
    let listed = kube_api::eventually(TIMEOUT, || async {
        let listed = api.get("/v1/webhooks").await.ok()?;
        let ids: Vec<String> = listed["data"]
            .as_array()?
            .iter()
            .filter_map(|w| w["id"].as_str().map(str::to_owned))
            .collect();
        (ids == wanted).then_some(ids)
    })
    .await;
    assert_eq!(listed, Some(wanted));

    // An API key created over REST authenticates at once with x-api-key.
    let (status, created) = api
        .post(
            "/v1/keys",
            json!({"name": "producer", "scopes": ["write:events"]}),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let key = created["data"]["key"].as_str().ok_or("no key")?.to_owned();
    let key_id = created["data"]["id"].as_str().ok_or("no key id")?;
    let akeys: Api<ApiKey> = Api::namespaced(kube.clone(), &namespace);
    let stored = serde_json::to_string(&akeys.get(key_id).await?)?;
    assert!(
        !stored.contains(&key),
        "the key leaked into the ApiKey object"
    );

    let default_pool = Process::start(
        "dispatcher",
        "dispatcher-default",
        dir.path(),
        true,
        &with(
            &env,
            &[
                ("KOLBAK_POOL", "default"),
                ("KUBECONFIG", as_dispatcher.as_str()),
            ],
        ),
    )?;
    let critical_pool = Process::start(
        "dispatcher",
        "dispatcher-critical",
        dir.path(),
        true,
        &with(
            &env,
            &[
                ("KOLBAK_POOL", "critical"),
                ("KUBECONFIG", as_dispatcher.as_str()),
            ],
        ),
    )?;

    // Ready once their registry listed every subscription (probe port, as in a pod).
    default_pool.wait_ready().await?;
    critical_pool.wait_ready().await?;

    let http = reqwest::Client::new();
    for n in 0..EVENTS {
        let response = http
            .post(format!("{}/v1/events", ingress.base))
            .header("x-api-key", &key)
            .json(&json!({"id": format!("e2e-{n}"), "event": "order.created", "payload": n}))
            .send()
            .await?;
        assert_eq!(response.status().as_u16(), 202);
    }

    let rest = receiver.wait_for("rest", EVENTS, TIMEOUT).await?;
    let kubectl = receiver.wait_for("kubectl", EVENTS, TIMEOUT).await?;
    let rest_secret = SigningSecret::parse(&rest_secret)?;
    for (calls, secret) in [(&rest, &rest_secret), (&kubectl, &team_secret)] {
        for call in calls.iter() {
            let id = call.header("webhook-id");
            let timestamp: i64 = call.header("webhook-timestamp").parse()?;
            let expected = kolbak_dispatcher::sign(id, timestamp, &call.body, &[secret]);
            assert_eq!(call.header("webhook-signature"), expected);
        }
    }
    // Each pool delivers only its own subscriptions: no event arrives twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received("rest").len(), EVENTS);
    assert_eq!(receiver.received("kubectl").len(), EVENTS);

    // The delivery log shows one successful delivery per subscription.
    let deliveries = api
        .wait_for_deliveries("e2e-0", TIMEOUT, |items| {
            items.len() == 2 && items.iter().all(|d| d["status"] == "success")
        })
        .await?;
    let mut subscriptions: Vec<&str> = deliveries
        .iter()
        .filter_map(|d| d["subscription_id"].as_str())
        .collect();
    subscriptions.sort_unstable();
    let mut expected = vec![rest_id.as_str(), "critical-orders"];
    expected.sort_unstable();
    assert_eq!(subscriptions, expected);

    // Each subscription's status shows its delivery health, written by its dispatcher.
    for name in [rest_id.as_str(), "critical-orders"] {
        let status = kube_api::eventually(TIMEOUT, || async {
            let status = wsubs.get(name).await.ok()?.status?;
            status.last_delivery_at.is_some().then_some(status)
        })
        .await
        .ok_or(format!("{name}: no delivery health in status"))?;
        assert_eq!(
            status.last_delivery_outcome,
            Some(kolbak_crds::DeliveryOutcome::Success)
        );
        assert_eq!(status.consecutive_failures, Some(0));
    }

    // Each dispatcher's /metrics counts its own pool's attempts.
    let metrics = reqwest::get(format!("{}/metrics", default_pool.base))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains(&format!(
            "kolbak_delivery_attempts_total{{outcome=\"success\"}} {EVENTS}"
        )),
        "{metrics}"
    );

    // A kubectl-style read sees both subscriptions and the key, by name.
    let names: Vec<String> = wsubs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert!(names.contains(&rest_id) && names.contains(&"critical-orders".to_owned()));
    Ok(())
}

/// `env` as borrowed pairs, followed by `extra`.
fn with<'a>(
    env: &'a [(&'static str, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    all
}
