//! Rendering pools into ConfigMaps and Deployments.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use kolbak_core::config::{env_map, load};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn pool(spec: DispatcherPoolSpec) -> DispatcherPool {
    let mut pool = DispatcherPool::new("critical", spec);
    pool.metadata.namespace = Some("kolbak".into());
    pool.metadata.uid = Some("uid-critical".into());
    pool
}

fn rendered(
    spec: DispatcherPoolSpec,
    config: &OperatorConfig,
) -> Result<Rendered, Box<dyn std::error::Error>> {
    let pool = pool(spec);
    let settings = settings(&pool.spec, config)?;
    Ok(render(&pool, settings, config)?)
}

fn container(rendered: &Rendered) -> Result<&Container, &'static str> {
    rendered
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .ok_or("no container")
}

fn hash_of(rendered: &Rendered) -> Option<String> {
    rendered
        .deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH_ANNOTATION)
        .cloned()
}

#[test]
fn default_pool_settings_are_the_dispatcher_defaults() -> TestResult {
    let env = settings(&DispatcherPoolSpec::default(), &OperatorConfig::default())?;
    assert_eq!(env["KOLBAK_RETRY_SCHEDULE"], "5s,5m,30m,2h,5h,10h,10h");
    assert_eq!(env["KOLBAK_DELIVERY_TIMEOUT"], "15s");
    assert_eq!(env["KOLBAK_MAX_IN_FLIGHT"], "256");
    assert_eq!(env["KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION"], "16");
    assert_eq!(env["KOLBAK_ALLOW_PRIVATE_TARGETS"], "false");
    assert!(!env.contains_key("KOLBAK_KAFKA_BROKERS"));
    let read_back: DispatcherConfig = load(None, env.clone(), &BTreeMap::<String, String>::new())?;
    assert_eq!(read_back, DispatcherConfig::default());
    Ok(())
}

#[test]
fn settings_read_back_exactly_by_the_dispatcher() -> TestResult {
    let spec = DispatcherPoolSpec {
        concurrency: 64,
        per_endpoint: kolbak_crds::PerEndpointLimits {
            max_in_flight: 4,
            rate_limit_per_second: None,
        },
        retry_schedule: vec!["1s".into(), "1.5h".into(), "250ms".into()],
        delivery_timeout: "5s".into(),
        ..DispatcherPoolSpec::default()
    };
    let config = OperatorConfig {
        allow_private_targets: true,
        kafka_brokers: Some("kafka:9092".into()),
        cassandra_nodes: Some("cassandra:9042".into()),
        ..OperatorConfig::default()
    };
    let env = settings(&spec, &config)?;
    assert_eq!(env["KOLBAK_KAFKA_BROKERS"], "kafka:9092");
    assert_eq!(env["KOLBAK_CASSANDRA_NODES"], "cassandra:9042");
    // What `kolbak dispatcher` reads from this environment:
    let dispatcher: DispatcherConfig = load(None, env, &env_map(&[]))?;
    assert_eq!(
        dispatcher.retry_schedule,
        [
            Duration::from_secs(1),
            Duration::from_secs(5400),
            Duration::from_millis(250)
        ]
    );
    assert_eq!(dispatcher.delivery_timeout, Duration::from_secs(5));
    assert_eq!(dispatcher.max_in_flight, 64);
    assert_eq!(dispatcher.max_in_flight_per_subscription, 4);
    assert!(dispatcher.allow_private_targets);
    Ok(())
}

#[test]
fn settings_the_dispatcher_would_reject_are_refused() {
    let refused = |spec: DispatcherPoolSpec| settings(&spec, &OperatorConfig::default()).err();
    let timeout = refused(DispatcherPoolSpec {
        delivery_timeout: "10m".into(),
        ..DispatcherPoolSpec::default()
    });
    assert!(timeout.is_some_and(|m| m.contains("KOLBAK_DELIVERY_TIMEOUT")));
    let per_endpoint = refused(DispatcherPoolSpec {
        concurrency: 2,
        ..DispatcherPoolSpec::default()
    });
    assert!(per_endpoint.is_some_and(|m| m.contains("KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION")));
    let replicas = refused(DispatcherPoolSpec {
        replicas: kolbak_crds::PoolReplicas { min: 3, max: 2 },
        ..DispatcherPoolSpec::default()
    });
    assert!(replicas.is_some_and(|m| m.contains("spec.replicas.max")));
}

#[test]
fn deployment_runs_the_pool() -> TestResult {
    let config = OperatorConfig {
        dispatcher_image: "registry.local/kolbak:1.2.3".into(),
        dispatcher_service_account: Some("kolbak-dispatcher".into()),
        dispatcher_credentials_secret: Some("kolbak-credentials".into()),
        ..OperatorConfig::default()
    };
    let spec = DispatcherPoolSpec {
        replicas: kolbak_crds::PoolReplicas { min: 2, max: 5 },
        ..DispatcherPoolSpec::default()
    };
    let out = rendered(spec, &config)?;
    let deployment = &out.deployment;
    assert_eq!(
        deployment.metadata.name.as_deref(),
        Some("kolbak-dispatcher-critical")
    );
    assert_eq!(deployment.metadata.namespace.as_deref(), Some("kolbak"));
    let owner = deployment
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .ok_or("owner")?;
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("DispatcherPool", Some(true))
    );
    let spec = deployment.spec.as_ref().ok_or("spec")?;
    assert_eq!(spec.replicas, Some(2), "replicas = spec.replicas.min");
    let selector = spec.selector.match_labels.as_ref().ok_or("selector")?;
    assert_eq!(selector["app.kubernetes.io/name"], "kolbak");
    assert_eq!(selector["app.kubernetes.io/component"], "dispatcher");
    assert_eq!(selector["kolbak.io/pool"], "critical");
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .ok_or("labels")?;
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let pod = spec.template.spec.as_ref().ok_or("pod")?;
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("kolbak-dispatcher")
    );
    assert_eq!(pod.termination_grace_period_seconds, Some(45));

    let container = container(&out)?;
    assert_eq!(
        container.image.as_deref(),
        Some("registry.local/kolbak:1.2.3")
    );
    assert_eq!(container.command, Some(vec!["kolbak".to_owned()]));
    assert_eq!(
        container.args,
        Some(vec![
            "dispatcher".to_owned(),
            "--pool".to_owned(),
            "critical".to_owned()
        ])
    );
    let env_from = container.env_from.as_ref().ok_or("envFrom")?;
    assert_eq!(
        env_from[0].config_map_ref.as_ref().map(|c| c.name.as_str()),
        Some("kolbak-dispatcher-critical")
    );
    assert_eq!(
        env_from[1].secret_ref.as_ref().map(|s| s.name.as_str()),
        Some("kolbak-credentials")
    );
    assert_eq!(container.resources, Some(default_resources()));

    assert_eq!(out.config_map.metadata.name, deployment.metadata.name);
    let data = out.config_map.data.as_ref().ok_or("data")?;
    assert_eq!(hash_of(&out), Some(config_hash(data)));
    Ok(())
}

#[test]
fn pool_image_and_resources_win() -> TestResult {
    let resources: ResourceRequirements = serde_json::from_value(serde_json::json!({
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }))?;
    let spec = DispatcherPoolSpec {
        image: Some("registry.local/kolbak:pinned".into()),
        resources: Some(resources.clone()),
        ..DispatcherPoolSpec::default()
    };
    let out = rendered(spec, &OperatorConfig::default())?;
    let container = container(&out)?;
    assert_eq!(
        container.image.as_deref(),
        Some("registry.local/kolbak:pinned")
    );
    assert_eq!(container.resources, Some(resources));
    assert_eq!(
        container.env_from.as_ref().map(Vec::len),
        Some(1),
        "no credentials Secret"
    );
    Ok(())
}

#[test]
fn settings_changes_change_the_config_hash() -> TestResult {
    let config = OperatorConfig::default();
    let base = hash_of(&rendered(DispatcherPoolSpec::default(), &config)?);
    let same = hash_of(&rendered(DispatcherPoolSpec::default(), &config)?);
    assert_eq!(base, same, "rendering is deterministic");
    let faster = hash_of(&rendered(
        DispatcherPoolSpec {
            delivery_timeout: "5s".into(),
            ..DispatcherPoolSpec::default()
        },
        &config,
    )?);
    assert_ne!(base, faster);
    let new_brokers = hash_of(&rendered(
        DispatcherPoolSpec::default(),
        &OperatorConfig {
            kafka_brokers: Some("kafka-2:9092".into()),
            ..OperatorConfig::default()
        },
    )?);
    assert_ne!(base, new_brokers);
    // Replicas are not settings: scaling does not restart the dispatchers.
    let bigger = hash_of(&rendered(
        DispatcherPoolSpec {
            replicas: kolbak_crds::PoolReplicas { min: 3, max: 3 },
            ..DispatcherPoolSpec::default()
        },
        &config,
    )?);
    assert_eq!(base, bigger);
    assert_eq!(base.map(|h| h.len()), Some(16));
    Ok(())
}
