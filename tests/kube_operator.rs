//! The custom resources and `kolbak operator` against a real kube-apiserver
//! (`scripts/kube.sh up`): the API server enforces the generated schemas and serves the printer
//! columns, and the operator (a real process, leader-elected on a Lease) reconciles
//! WebhookSubscriptions, ApiKeys and DispatcherPools into owned Secrets and Deployments with
//! status conditions and Events; deleting them lets garbage collection (the test control
//! plane's kube-controller-manager) remove what they own and nothing else. The operator runs
//! as its ServiceAccount under the chart's Roles, and each component's identity is refused
//! what its Role does not grant. Without
//! `KUBECONFIG` the tests print a note and pass, except with `CI=true`, where they fail.

#[path = "support/chart_rbac.rs"]
mod chart_rbac;
#[path = "support/cluster.rs"]
mod cluster;
mod harness;
#[path = "../core/tests/support/kube_api.rs"]
mod kube_api;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster::Process;
use harness::TestResult;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kolbak_core::KeyHash;
use kolbak_crds::{
    ApiKey, ApiKeySpec, DispatcherPool, DispatcherPoolSpec, Scope, WebhookSubscription,
    WebhookSubscriptionSpec,
};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long garbage collection may take to remove what a deleted object owned.
const GC_WAIT: Duration = Duration::from_secs(60);

/// The status of condition `kind` in `conditions`, with its reason.
fn condition(conditions: &[kolbak_crds::Condition], kind: &str) -> Option<(String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (format!("{:?}", c.status), c.reason.clone()))
}

fn rejected(result: Result<impl std::fmt::Debug, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 422)
}

#[tokio::test]
async fn the_api_server_enforces_the_schemas_and_serves_the_printer_columns() -> TestResult {
    let Some(client) = kube_api::client().await? else {
        return Ok(());
    };
    let ns = kube_api::namespace(&client, "kolbak-schema").await?;
    let wsubs: Api<WebhookSubscription> = Api::namespaced(client.clone(), &ns);
    let create = PostParams::default();
    let with = |edit: &dyn Fn(&mut WebhookSubscriptionSpec)| {
        let mut spec = WebhookSubscriptionSpec::new("https://hooks.example.com/x", "order.*");
        edit(&mut spec);
        WebhookSubscription::new("bad", spec)
    };
    assert!(rejected(
        wsubs
            .create(&create, &with(&|s| s.callback_url = "ftp://x".into()))
            .await
    ));
    assert!(rejected(
        wsubs
            .create(&create, &with(&|s| s.event = "a b".into()))
            .await
    ));
    assert!(rejected(
        wsubs
            .create(&create, &with(&|s| s.pool = "Bad_Pool".into()))
            .await
    ));
    assert!(rejected(
        wsubs
            .create(&create, &with(&|s| s.max_in_flight = Some(0)))
            .await
    ));
    let akeys: Api<ApiKey> = Api::namespaced(client.clone(), &ns);
    let no_scopes = ApiKey::new(
        "bad",
        ApiKeySpec {
            name: "x".into(),
            description: None,
            scopes: vec![],
        },
    );
    assert!(rejected(akeys.create(&create, &no_scopes).await));
    let unknown_scope: Value = json!({
        "apiVersion": "kolbak.io/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "bad"}, "spec": {"name": "x", "scopes": ["admin"]}
    });
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::discovery::ApiResource::erase::<ApiKey>(&()),
    );
    assert!(rejected(
        raw.create(&create, &serde_json::from_value(unknown_scope)?)
            .await
    ));

    // A valid object, read back through the Table format `kubectl get` uses.
    wsubs
        .create(
            &create,
            &WebhookSubscription::new(
                "orders",
                WebhookSubscriptionSpec::new("https://hooks.example.com/orders", "order.*"),
            ),
        )
        .await?;
    let table = table(
        &client,
        &format!("/apis/kolbak.io/v1alpha1/namespaces/{ns}/webhooksubscriptions"),
    )
    .await?;
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .ok_or("no columns")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for wanted in ["Name", "URL", "Event", "Active", "Ready", "Age"] {
        assert!(
            columns.contains(&wanted),
            "{wanted} missing from {columns:?}"
        );
    }
    let cells = &table["rows"][0]["cells"];
    let url = columns.iter().position(|c| *c == "URL").ok_or("no URL")?;
    assert_eq!(cells[url], "https://hooks.example.com/orders");
    let active = columns
        .iter()
        .position(|c| *c == "Active")
        .ok_or("no Active")?;
    assert_eq!(cells[active], true);
    Ok(())
}

/// GET `path` as a `meta.k8s.io/v1` Table, as `kubectl get` asks for it.
async fn table(client: &Client, path: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let request = http::Request::get(path)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())?;
    Ok(serde_json::from_str(&client.request_text(request).await?)?)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_reconciles_subscriptions_keys_and_pools() -> TestResult {
    let Some(client) = kube_api::client().await? else {
        return Ok(());
    };
    let ns = kube_api::namespace(&client, "kolbak-operator").await?;
    let dir = tempfile::tempdir()?;
    // The operator acts as its ServiceAccount with the chart's Roles.
    let identities = chart_rbac::install(&client, &ns, dir.path()).await?;
    let kubeconfig = identities.operator.to_string_lossy().into_owned();
    let operator = Process::start(
        "operator",
        "operator",
        dir.path(),
        true,
        &[
            ("KUBECONFIG", kubeconfig.as_str()),
            (
                "KOLBAK_DISPATCHER_SERVICE_ACCOUNT",
                identities.dispatcher_account.as_str(),
            ),
            ("KOLBAK_OPERATOR_NAMESPACE", ns.as_str()),
            ("KOLBAK_LEASE_NAMESPACE", ns.as_str()),
            ("KOLBAK_DISPATCHER_IMAGE", "kolbak:test"),
            ("KOLBAK_KAFKA_BROKERS", "kafka-0.kafka:9092"),
        ],
    )?;
    let create = PostParams::default();
    let wsubs: Api<WebhookSubscription> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    // A subscription without secretRef: a generated, owned Secret and Ready conditions.
    let orders = wsubs
        .create(
            &create,
            &WebhookSubscription::new(
                "orders",
                WebhookSubscriptionSpec::new("https://hooks.example.com/orders", "order.*"),
            ),
        )
        .await?;
    let secret = kube_api::eventually(TIMEOUT, || async {
        secrets.get_opt("orders-signing").await.ok().flatten()
    })
    .await
    .ok_or_else(|| format!("no signing Secret generated\n{}", operator.output()))?;
    let owner = secret
        .owner_references()
        .first()
        .cloned()
        .ok_or("no owner")?;
    assert_eq!(
        (owner.uid, owner.controller),
        (orders.uid().unwrap_or_default(), Some(true))
    );
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get("secret"))
        .ok_or("no secret key")?;
    assert!(String::from_utf8(value.0.clone())?.starts_with("whsec_"));
    let status = kube_api::eventually(TIMEOUT, || async {
        let status = wsubs.get("orders").await.ok()?.status?;
        status.is_ready().then_some(status)
    })
    .await
    .ok_or("orders never became Ready")?;
    assert_eq!(status.observed_generation, orders.meta().generation);
    assert_eq!(
        condition(&status.conditions, "Valid").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(
        condition(&status.conditions, "SecretReady").map(|c| c.0),
        Some("True".into())
    );
    assert_eq!(status.secret_name.as_deref(), Some("orders-signing"));

    // An http:// callback is refused by the operator (not the schema): Valid=False + Event.
    wsubs
        .create(
            &create,
            &WebhookSubscription::new(
                "insecure",
                WebhookSubscriptionSpec::new("http://hooks.example.com/x", "order.*"),
            ),
        )
        .await?;
    let invalid = kube_api::eventually(TIMEOUT, || async {
        let status = wsubs.get("insecure").await.ok()?.status?;
        condition(&status.conditions, "Valid").filter(|c| c.0 == "False")
    })
    .await
    .ok_or("insecure subscription not reported invalid")?;
    assert_eq!(invalid.1, "InsecureCallbackUrl");
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let warned = kube_api::eventually(TIMEOUT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("insecure")
                && e.type_.as_deref() == Some("Warning")
        })
    })
    .await;
    assert!(
        warned.is_some(),
        "no Warning Event for the invalid subscription"
    );

    // Rotation on request: the old secret stays as previous-secret.
    let before = value.0.clone();
    wsubs
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"kolbak.io/rotate-secret": "r1"}}})),
        )
        .await?;
    let rotated = kube_api::eventually(TIMEOUT, || async {
        let secret = secrets.get("orders-signing").await.ok()?;
        let data = secret.data?;
        (data.get("previous-secret").map(|v| v.0.clone()) == Some(before.clone())).then_some(data)
    })
    .await;
    assert!(rotated.is_some(), "rotation not handled");

    // An ApiKey: the key in an owned Secret, only its hash in status.
    let akeys: Api<ApiKey> = Api::namespaced(client.clone(), &ns);
    akeys
        .create(
            &create,
            &ApiKey::new(
                "ci",
                ApiKeySpec {
                    name: "CI pipeline".into(),
                    description: None,
                    scopes: vec![Scope::WriteEvents],
                },
            ),
        )
        .await?;
    let key_status = kube_api::eventually(TIMEOUT, || async {
        let status = akeys.get("ci").await.ok()?.status?;
        status.key_hash.is_some().then_some(status)
    })
    .await
    .ok_or("ApiKey never got its hash")?;
    let key_secret = secrets.get("ci-key").await?;
    let key = key_secret
        .data
        .as_ref()
        .and_then(|d| d.get("key"))
        .ok_or("no key")?;
    let key = String::from_utf8(key.0.clone())?;
    assert_eq!(key_status.key_hash, Some(KeyHash::of(&key).to_hex()));
    assert!(!serde_json::to_string(&akeys.get("ci").await?)?.contains(&key));

    // A DispatcherPool: its Deployment, rolled when the settings change.
    let pools: Api<DispatcherPool> = Api::namespaced(client.clone(), &ns);
    pools
        .create(
            &create,
            &DispatcherPool::new("critical", DispatcherPoolSpec::default()),
        )
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment = kube_api::eventually(TIMEOUT, || async {
        deployments
            .get_opt("kolbak-dispatcher-critical")
            .await
            .ok()
            .flatten()
    })
    .await
    .ok_or("no dispatcher Deployment")?;
    let hash = |d: &Deployment| -> Option<String> {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("kolbak.io/config-hash")
            .cloned()
    };
    let first_hash = hash(&deployment).ok_or("no config hash")?;
    let container = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .ok_or("no container")?;
    assert_eq!(container.image.as_deref(), Some("kolbak:test"));
    assert_eq!(
        container.args.clone().unwrap_or_default(),
        vec!["dispatcher".to_owned(), "--pool".into(), "critical".into()]
    );
    // Its settings come from the pool's ConfigMap, owned by the pool too.
    let env_from: Vec<String> = container
        .env_from
        .iter()
        .flatten()
        .filter_map(|e| e.config_map_ref.as_ref().map(|c| c.name.clone()))
        .collect();
    assert_eq!(env_from, vec!["kolbak-dispatcher-critical".to_owned()]);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let config_map = config_maps.get("kolbak-dispatcher-critical").await?;
    let settings: BTreeMap<String, String> = config_map.data.clone().unwrap_or_default();
    assert_eq!(
        settings.get("KOLBAK_KAFKA_BROKERS").map(String::as_str),
        Some("kafka-0.kafka:9092")
    );
    assert_eq!(
        config_map
            .owner_references()
            .first()
            .map(|o| o.kind.clone()),
        Some("DispatcherPool".into())
    );
    assert_eq!(
        deployment
            .owner_references()
            .first()
            .map(|o| o.kind.clone()),
        Some("DispatcherPool".into())
    );
    // Settings the dispatchers would refuse (fewer slots than one endpoint may use) are
    // reported and leave the running Deployment alone.
    let set_concurrency = |n: u32| {
        let pools = pools.clone();
        async move {
            pools
                .patch(
                    "critical",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"concurrency": n}})),
                )
                .await
        }
    };
    set_concurrency(7).await?;
    let invalid = kube_api::eventually(TIMEOUT, || async {
        let status = pools.get("critical").await.ok()?.status?;
        (status.observed_generation == Some(2))
            .then(|| condition(&status.conditions, "Valid"))
            .flatten()
    })
    .await;
    assert_eq!(invalid, Some(("False".into(), "InvalidSpec".into())));
    let untouched = deployments.get("kolbak-dispatcher-critical").await?;
    assert_eq!(hash(&untouched), Some(first_hash.clone()));
    set_concurrency(64).await?;
    let rolled = kube_api::eventually(TIMEOUT, || async {
        let d = deployments.get("kolbak-dispatcher-critical").await.ok()?;
        hash(&d).filter(|h| *h != first_hash)
    })
    .await;
    assert!(
        rolled.is_some(),
        "settings change did not roll the Deployment"
    );
    let settings = config_maps
        .get("kolbak-dispatcher-critical")
        .await?
        .data
        .unwrap_or_default();
    assert_eq!(
        settings.get("KOLBAK_MAX_IN_FLIGHT").map(String::as_str),
        Some("64")
    );

    // A subscription naming the team's own Secret: deleting it must leave that Secret alone.
    let team: Secret = serde_json::from_value(json!({
        "metadata": {"name": "team-hooks"},
        "stringData": {"secret": kolbak_core::SigningSecret::generate().expose()}
    }))?;
    secrets.create(&create, &team).await?;
    let mut spec = WebhookSubscriptionSpec::new("https://hooks.example.com/team", "order.*");
    spec.secret_ref = Some(kolbak_crds::SecretKeyRef {
        name: "team-hooks".into(),
        key: "secret".into(),
    });
    wsubs
        .create(&create, &WebhookSubscription::new("team", spec))
        .await?;
    kube_api::eventually(TIMEOUT, || async {
        wsubs
            .get("team")
            .await
            .ok()?
            .status?
            .is_ready()
            .then_some(())
    })
    .await
    .ok_or("the team subscription never became Ready")?;

    // No finalizers: deleting is immediate; garbage collection removes what each resource
    // owns and nothing else.
    for name in ["orders", "team"] {
        wsubs.delete(name, &Default::default()).await?;
        assert!(wsubs.get_opt(name).await?.is_none());
    }
    akeys.delete("ci", &Default::default()).await?;
    pools.delete("critical", &Default::default()).await?;
    let gone = kube_api::eventually(GC_WAIT, || async {
        let leftovers = [
            secrets.get_opt("orders-signing").await.ok()?.is_some(),
            secrets.get_opt("ci-key").await.ok()?.is_some(),
            deployments
                .get_opt("kolbak-dispatcher-critical")
                .await
                .ok()?
                .is_some(),
            config_maps
                .get_opt("kolbak-dispatcher-critical")
                .await
                .ok()?
                .is_some(),
        ];
        (!leftovers.contains(&true)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "owned objects outlived their owners");
    assert!(
        secrets.get_opt("team-hooks").await?.is_some(),
        "the team's Secret was deleted"
    );
    drop(operator);
    Ok(())
}

/// A client acting as the identity of `kubeconfig`.
async fn client_as(kubeconfig: &std::path::Path) -> Result<Client, Box<dyn std::error::Error>> {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(Client::try_from(config)?)
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test]
async fn each_component_is_refused_what_its_role_does_not_grant() -> TestResult {
    let Some(client) = kube_api::client().await? else {
        return Ok(());
    };
    let ns = kube_api::namespace(&client, "kolbak-rbac").await?;
    let dir = tempfile::tempdir()?;
    let identities = chart_rbac::install(&client, &ns, dir.path()).await?;
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "probe"}}))?;
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await?;

    // Dispatchers read subscriptions and Secrets; nothing about keys, no writes to Secrets.
    let dispatcher = client_as(&identities.dispatcher).await?;
    Api::<WebhookSubscription>::namespaced(dispatcher.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    Api::<Secret>::namespaced(dispatcher.clone(), &ns)
        .get("probe")
        .await?;
    assert!(forbidden(
        Api::<ApiKey>::namespaced(dispatcher.clone(), &ns)
            .list(&ListParams::default())
            .await
    ));
    assert!(forbidden(
        Api::<Secret>::namespaced(dispatcher.clone(), &ns)
            .create(&PostParams::default(), &secret)
            .await
    ));
    assert!(forbidden(
        Api::<Deployment>::namespaced(dispatcher, &ns)
            .list(&ListParams::default())
            .await
    ));

    // The ingress writes subscriptions, keys and Secrets, but deletes no Secret and runs nothing.
    let ingress = client_as(&identities.ingress).await?;
    Api::<ApiKey>::namespaced(ingress.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    assert!(forbidden(
        Api::<Secret>::namespaced(ingress.clone(), &ns)
            .delete("probe", &Default::default())
            .await
    ));
    assert!(forbidden(
        Api::<Deployment>::namespaced(ingress.clone(), &ns)
            .list(&ListParams::default())
            .await
    ));
    assert!(forbidden(
        Api::<DispatcherPool>::namespaced(ingress, &ns)
            .list(&ListParams::default())
            .await
    ));

    // The operator manages children but deletes nothing: owner references do that.
    let operator = client_as(&identities.operator).await?;
    Api::<DispatcherPool>::namespaced(operator.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    assert!(forbidden(
        Api::<Secret>::namespaced(operator.clone(), &ns)
            .delete("probe", &Default::default())
            .await
    ));
    assert!(forbidden(
        Api::<WebhookSubscription>::namespaced(operator, &ns)
            .create(
                &PostParams::default(),
                &WebhookSubscription::new(
                    "x",
                    WebhookSubscriptionSpec::new("https://example.com/x", "a"),
                ),
            )
            .await
    ));
    Ok(())
}
