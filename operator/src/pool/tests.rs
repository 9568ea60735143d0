//! DispatcherPool reconciles against a scripted API server.

use http::Method;
use kolbak_crds::DispatcherPoolSpec;
use serde_json::{Value, json};

use super::*;
use crate::config::OperatorConfig;
use crate::pool_render::CONFIG_HASH_ANNOTATION;
use crate::test_support::{
    ApiServer, assert_no_finalizer, assert_server_side_apply, context, run, with_status,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const CONFIG_MAP_PATH: &str = "/api/v1/namespaces/kolbak/configmaps/kolbak-dispatcher-default";
const DEPLOYMENT_PATH: &str =
    "/apis/apps/v1/namespaces/kolbak/deployments/kolbak-dispatcher-default";
const STATUS_PATH: &str =
    "/apis/kolbak.io/v1alpha1/namespaces/kolbak/dispatcherpools/default/status";

fn pool(spec: DispatcherPoolSpec) -> DispatcherPool {
    let mut pool = DispatcherPool::new("default", spec);
    pool.metadata.namespace = Some("kolbak".into());
    pool.metadata.uid = Some("uid-default".into());
    pool.metadata.generation = Some(1);
    pool
}

fn condition<'a>(body: &'a Value, type_: &str) -> &'a Value {
    body["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

/// Answers the ConfigMap and Deployment applies (the Deployment reporting `ready` ready
/// replicas) and returns both request bodies.
async fn expect_applies(server: &mut ApiServer, ready: i32) -> (Value, Value) {
    let (config_map, responder) = server.expect(Method::PATCH, CONFIG_MAP_PATH).await;
    assert_server_side_apply(&config_map);
    responder.json(200, &config_map.body);
    let (deployment, responder) = server.expect(Method::PATCH, DEPLOYMENT_PATH).await;
    assert_server_side_apply(&deployment);
    let mut answer = deployment.body.clone();
    answer["status"] = json!({ "replicas": ready, "readyReplicas": ready });
    responder.json(200, &answer);
    assert_no_finalizer(&[&config_map, &deployment]);
    (config_map.body, deployment.body)
}

fn config_hash(deployment: &Value) -> String {
    deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn pool_becomes_a_config_map_and_a_deployment() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig {
        dispatcher_image: "registry.local/kolbak:1.0.0".into(),
        kafka_brokers: Some("kafka:9092".into()),
        ..OperatorConfig::default()
    });
    let resources =
        json!({"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}});
    let pool = pool(DispatcherPoolSpec {
        replicas: kolbak_crds::PoolReplicas { min: 2, max: 4 },
        resources: Some(serde_json::from_value(resources.clone())?),
        ..DispatcherPoolSpec::default()
    });
    let expected = pool.clone();
    let scenario = async move {
        let (config_map, deployment) = expect_applies(&mut server, 0).await;
        assert_eq!(config_map["kind"], "ConfigMap");
        assert_eq!(
            config_map["data"]["KOLBAK_RETRY_SCHEDULE"],
            "5s,5m,30m,2h,5h,10h,10h"
        );
        assert_eq!(config_map["data"]["KOLBAK_KAFKA_BROKERS"], "kafka:9092");
        assert_eq!(
            config_map["metadata"]["ownerReferences"][0]["kind"],
            "DispatcherPool"
        );

        assert_eq!(deployment["kind"], "Deployment");
        assert_eq!(
            deployment["metadata"]["ownerReferences"][0]["uid"],
            "uid-default"
        );
        let labels = &deployment["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "kolbak");
        assert_eq!(labels["app.kubernetes.io/component"], "dispatcher");
        assert_eq!(labels["kolbak.io/pool"], "default");
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 2);
        let container = &spec["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "registry.local/kolbak:1.0.0");
        assert_eq!(
            container["args"],
            json!(["dispatcher", "--pool", "default"])
        );
        assert_eq!(
            container["envFrom"][0]["configMapRef"]["name"],
            "kolbak-dispatcher-default"
        );
        assert_eq!(container["resources"], resources);
        assert_eq!(config_hash(&deployment).len(), 16);

        let (status, responder) = server.expect(Method::PATCH, STATUS_PATH).await;
        assert_server_side_apply(&status);
        assert_eq!(
            status.body["status"]["deployment"],
            "kolbak-dispatcher-default"
        );
        assert_eq!(status.body["status"]["readyReplicas"], 0);
        assert_eq!(status.body["status"]["observedGeneration"], 1);
        assert_eq!(condition(&status.body, VALID)["status"], "True");
        assert_eq!(condition(&status.body, READY)["reason"], "ReplicasNotReady");
        responder.json(200, &with_status(&expected, &status.body["status"]));
        server
            .expect_events("kolbak", &["SpecValid", "ReplicasNotReady"])
            .await;
    };
    let action = run(reconcile(Arc::new(pool), ctx), scenario).await?;
    assert_eq!(action, Action::requeue(RESYNC));
    Ok(())
}

#[tokio::test]
async fn ready_replicas_make_the_pool_ready() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let mut pool = pool(DispatcherPoolSpec::default());
    let mut conditions = crate::conditions::ConditionSet::new(&[], Some(1));
    conditions.set(VALID, true, "SpecValid", "");
    conditions.set(
        READY,
        false,
        "ReplicasNotReady",
        "0 of at least 1 dispatcher replicas ready",
    );
    pool.status = Some(DispatcherPoolStatus {
        conditions: conditions.conditions().to_vec(),
        observed_generation: Some(1),
        ready_replicas: Some(0),
        deployment: Some("kolbak-dispatcher-default".into()),
    });
    let expected = pool.clone();
    let scenario = async move {
        expect_applies(&mut server, 1).await;
        let (status, responder) = server.expect(Method::PATCH, STATUS_PATH).await;
        assert_eq!(status.body["status"]["readyReplicas"], 1);
        assert_eq!(condition(&status.body, READY)["status"], "True");
        assert_eq!(
            condition(&status.body, READY)["reason"],
            "MinimumReplicasReady"
        );
        responder.json(200, &with_status(&expected, &status.body["status"]));
        // Only Ready flipped.
        let event = server.expect_event("kolbak").await;
        assert_eq!(event["reason"], "MinimumReplicasReady");
        assert_eq!(event["type"], "Normal");
    };
    run(reconcile(Arc::new(pool), ctx), scenario).await?;
    Ok(())
}

/// Reconciles `pool` once against a server reporting it ready and returns the applied
/// Deployment.
async fn applied_deployment(pool: DispatcherPool) -> Result<Value, Box<dyn std::error::Error>> {
    let (ctx, mut server) = context(OperatorConfig::default());
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let expected = pool.clone();
    let scenario = async move {
        let (_, deployment) = expect_applies(&mut server, 1).await;
        let (status, responder) = server.expect(Method::PATCH, STATUS_PATH).await;
        responder.json(200, &with_status(&expected, &status.body["status"]));
        server
            .expect_events("kolbak", &["SpecValid", "MinimumReplicasReady"])
            .await;
        let _ = sender.send(deployment);
    };
    run(reconcile(Arc::new(pool), ctx), scenario).await?;
    Ok(receiver.await?)
}

#[tokio::test]
async fn settings_change_rolls_the_deployment() -> TestResult {
    let before = applied_deployment(pool(DispatcherPoolSpec::default())).await?;
    let mut changed = pool(DispatcherPoolSpec {
        retry_schedule: vec!["1s".into(), "10s".into()],
        ..DispatcherPoolSpec::default()
    });
    changed.metadata.generation = Some(2);
    let after = applied_deployment(changed).await?;
    assert_ne!(
        config_hash(&before),
        config_hash(&after),
        "a new pod-template annotation makes the Deployment roll"
    );
    assert_eq!(
        before["spec"]["selector"], after["spec"]["selector"],
        "selector is stable"
    );
    Ok(())
}

#[tokio::test]
async fn invalid_pool_leaves_the_deployment_alone() -> TestResult {
    let (ctx, mut server) = context(OperatorConfig::default());
    let pool = pool(DispatcherPoolSpec {
        delivery_timeout: "10m".into(),
        ..DispatcherPoolSpec::default()
    });
    let expected = pool.clone();
    let scenario = async move {
        // No ConfigMap or Deployment apply: straight to the status.
        let (status, responder) = server.expect(Method::PATCH, STATUS_PATH).await;
        let valid = condition(&status.body, VALID);
        assert_eq!(valid["status"], "False");
        assert_eq!(valid["reason"], "InvalidSpec");
        assert!(
            valid["message"]
                .as_str()
                .unwrap_or_default()
                .contains("KOLBAK_DELIVERY_TIMEOUT")
        );
        responder.json(200, &with_status(&expected, &status.body["status"]));
        server
            .expect_events("kolbak", &["InvalidSpec", "NotValid"])
            .await;
    };
    let action = run(reconcile(Arc::new(pool), ctx), scenario).await?;
    assert_eq!(action, Action::await_change());
    Ok(())
}

#[tokio::test]
async fn pool_being_deleted_is_left_alone() -> TestResult {
    let (ctx, _server) = context(OperatorConfig::default());
    let mut pool = pool(DispatcherPoolSpec::default());
    pool.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let action = run(reconcile(Arc::new(pool), ctx), async {}).await?;
    assert_eq!(action, Action::await_change());
    Ok(())
}
