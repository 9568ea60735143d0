//! Renders the Helm chart charts/kolbak with `helm template` and checks the manifests: every
//! component is there, RBAC grants exactly what each component uses, the default
//! DispatcherPool is a valid one, and values reach the manifests.
//!
//! helm comes from `HELM`, or `scripts/helm.sh path` (the pinned version installed by
//! `scripts/helm.sh install`). Without it the tests print a note and pass — except in CI
//! (`CI=true`), where a missing helm fails them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kolbak_crds::DispatcherPool;
use serde::Deserialize;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The helm binary, or `None` (after a note) when it is missing outside CI.
fn helm() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HELM") {
        return Some(PathBuf::from(path));
    }
    let found = Command::new(repo().join("scripts/helm.sh"))
        .arg("path")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "helm is missing; run scripts/helm.sh install (CI=true: chart tests may not skip)"
        );
        eprintln!("note: helm is not installed (scripts/helm.sh install); chart test skipped");
    }
    found
}

/// The rendered manifests (CRDs included) for the extra `args`.
fn render(helm: &Path, args: &[&str]) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let output = Command::new(helm)
        .current_dir(repo())
        .args([
            "template",
            "kolbak",
            "charts/kolbak",
            "--namespace",
            "kolbak",
        ])
        .args(["--kube-version", "1.35.0", "--include-crds"])
        .args(args)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "helm template failed: {stderr}");
    let text = String::from_utf8(output.stdout)?;
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document)?;
        if !value.is_null() {
            documents.push(serde_json::to_value(value)?);
        }
    }
    Ok(documents)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value, String> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .ok_or_else(|| format!("no {kind} {name}"))
}

fn kinds(docs: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for doc in docs {
        *counts
            .entry(doc["kind"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    counts
}

/// A role's rules as (group, resource, verbs, resourceNames) per resource.
fn rules(role: &Value) -> BTreeSet<(String, String, Vec<String>, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        let mut list: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        list.sort();
        list
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.insert((
                    group.clone(),
                    resource,
                    strings(&rule["verbs"]),
                    strings(&rule["resourceNames"]),
                ));
            }
        }
    }
    out
}

fn rule(group: &str, resource: &str, verbs: &[&str]) -> (String, String, Vec<String>, Vec<String>) {
    let mut verbs: Vec<String> = verbs.iter().map(|v| (*v).to_owned()).collect();
    verbs.sort();
    (group.to_owned(), resource.to_owned(), verbs, Vec::new())
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["name"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn default_install_renders_every_component() -> TestResult {
    let Some(helm) = helm() else { return Ok(()) };
    let docs = render(&helm, &[])?;
    let expected: BTreeMap<String, usize> = [
        ("ClusterRole", 3),
        ("ClusterRoleBinding", 3),
        ("CustomResourceDefinition", 3),
        ("Deployment", 2),
        ("DispatcherPool", 1),
        ("Role", 1),
        ("RoleBinding", 1),
        ("Secret", 1),
        ("Service", 1),
        ("ServiceAccount", 3),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(kinds(&docs), expected);
    let crds: BTreeSet<&str> = of_kind(&docs, "CustomResourceDefinition")
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        crds,
        BTreeSet::from([
            "apikeys.kolbak.io",
            "dispatcherpools.kolbak.io",
            "webhooksubscriptions.kolbak.io"
        ])
    );
    for doc in &docs {
        if doc["kind"] != "CustomResourceDefinition"
            && !doc["kind"].as_str().unwrap_or("").starts_with("Cluster")
        {
            assert_eq!(
                doc["metadata"]["namespace"], "kolbak",
                "{}",
                doc["metadata"]
            );
        }
    }
    let service = named(&docs, "Service", "kolbak")?;
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/component"],
        "ingress"
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    Ok(())
}

#[test]
fn operator_rbac_is_exactly_what_it_uses() -> TestResult {
    let Some(helm) = helm() else { return Ok(()) };
    let docs = render(&helm, &[])?;
    let role = named(&docs, "ClusterRole", "kolbak-kolbak-operator")?;
    let mut expected = BTreeSet::new();
    for resource in ["webhooksubscriptions", "apikeys", "dispatcherpools"] {
        // Controller watches and the start-up check.
        expected.insert(rule("kolbak.io", resource, &["list", "watch"]));
        // Server-side apply of status; nothing else of the custom resources is written.
        expected.insert(rule("kolbak.io", &format!("{resource}/status"), &["patch"]));
    }
    // Read, generate, rotate signing and key Secrets; watch the owned ones.
    expected.insert(rule(
        "",
        "secrets",
        &["create", "get", "list", "patch", "watch"],
    ));
    // Server-side apply (create is checked when it creates) and owned-object watches.
    expected.insert(rule(
        "",
        "configmaps",
        &["create", "list", "patch", "watch"],
    ));
    expected.insert(rule(
        "apps",
        "deployments",
        &["create", "list", "patch", "watch"],
    ));
    // kube-runtime's Recorder creates Events and patches repeated ones into series.
    expected.insert(rule("events.k8s.io", "events", &["create", "patch"]));
    assert_eq!(rules(role), expected);

    let binding = named(&docs, "ClusterRoleBinding", "kolbak-kolbak-operator")?;
    assert_eq!(binding["roleRef"]["name"], "kolbak-kolbak-operator");
    assert_eq!(binding["subjects"][0]["name"], "kolbak-operator");
    assert_eq!(binding["subjects"][0]["namespace"], "kolbak");

    let lease_role = named(&docs, "Role", "kolbak-operator-leader-election")?;
    let leader = BTreeSet::from([
        rule("coordination.k8s.io", "leases", &["create"]),
        (
            "coordination.k8s.io".to_owned(),
            "leases".to_owned(),
            vec!["get".to_owned(), "update".to_owned()],
            vec!["kolbak-operator".to_owned()],
        ),
    ]);
    assert_eq!(rules(lease_role), leader);
    Ok(())
}

#[test]
fn no_role_grants_wildcards_or_deletes_secrets() -> TestResult {
    let Some(helm) = helm() else { return Ok(()) };
    let docs = render(&helm, &[])?;
    for role in of_kind(&docs, "ClusterRole")
        .into_iter()
        .chain(of_kind(&docs, "Role"))
    {
        for (group, resource, verbs, _) in rules(role) {
            let name = &role["metadata"]["name"];
            assert!(group != "*" && resource != "*", "{name}: wildcard");
            assert!(!verbs.iter().any(|v| v == "*"), "{name}: wildcard verb");
            assert!(
                !(resource == "secrets" && verbs.iter().any(|v| v == "delete")),
                "{name}: owned Secrets are garbage-collected, nobody deletes them"
            );
        }
    }
    let dispatcher = named(&docs, "ClusterRole", "kolbak-kolbak-dispatcher")?;
    assert_eq!(
        rules(dispatcher),
        BTreeSet::from([
            rule(
                "kolbak.io",
                "webhooksubscriptions",
                &["get", "list", "patch", "watch"]
            ),
            rule("kolbak.io", "webhooksubscriptions/status", &["patch"]),
            rule("", "secrets", &["get", "list", "watch"]),
        ])
    );
    Ok(())
}

#[test]
fn default_pool_is_a_valid_dispatcher_pool() -> TestResult {
    let Some(helm) = helm() else { return Ok(()) };
    let docs = render(&helm, &[])?;
    let pools = of_kind(&docs, "DispatcherPool");
    assert_eq!(pools.len(), 1);
    let pool = DispatcherPool::deserialize(pools[0])?;
    assert_eq!(pools[0]["apiVersion"], "kolbak.io/v1alpha1");
    assert_eq!(pool.metadata.name.as_deref(), Some("default"));
    assert_eq!(pool.metadata.namespace.as_deref(), Some("kolbak"));
    assert_eq!(pool.spec, kolbak_crds::DispatcherPoolSpec::default());
    pool.spec.validate()?;

    let tuned = render(
        &helm,
        &[
            "--set",
            "defaultPool.spec.concurrency=64",
            "--set",
            "defaultPool.spec.replicas.min=2",
            "--set",
            "defaultPool.spec.replicas.max=3",
        ],
    )?;
    let pool = DispatcherPool::deserialize(of_kind(&tuned, "DispatcherPool")[0])?;
    assert_eq!(pool.spec.concurrency, 64);
    assert_eq!(
        pool.spec.replicas,
        kolbak_crds::PoolReplicas { min: 2, max: 3 }
    );
    pool.spec.validate()?;

    let none = render(&helm, &["--set", "defaultPool.enabled=false"])?;
    assert!(of_kind(&none, "DispatcherPool").is_empty());
    Ok(())
}

#[test]
fn operator_deployment_is_wired_to_its_settings() -> TestResult {
    let Some(helm) = helm() else { return Ok(()) };
    let docs = render(&helm, &[])?;
    let deployment = named(&docs, "Deployment", "kolbak-operator")?;
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "kolbak-operator");
    let operator = container(deployment);
    assert_eq!(operator["image"], "ghcr.io/kolbak/kolbak:0.1.0");
    assert_eq!(operator["args"], json!(["operator"]));
    assert_eq!(env(operator, "KOLBAK_LISTEN")["value"], "0.0.0.0:8080");
    assert_eq!(env(operator, "KOLBAK_OPERATOR_NAMESPACE")["value"], "");
    assert_eq!(
        env(operator, "KOLBAK_ALLOW_HTTP_CALLBACKS")["value"],
        "false"
    );
    assert_eq!(
        env(operator, "KOLBAK_DISPATCHER_IMAGE")["value"],
        "ghcr.io/kolbak/kolbak:0.1.0"
    );
    assert_eq!(
        env(operator, "KOLBAK_DISPATCHER_SERVICE_ACCOUNT")["value"],
        "kolbak-dispatcher"
    );
    assert_eq!(env(operator, "KOLBAK_KAFKA_BROKERS")["value"], "kafka:9092");
    assert_eq!(
        env(operator, "KOLBAK_CASSANDRA_NODES")["value"],
        "cassandra:9042"
    );
    assert_eq!(
        env(operator, "KOLBAK_LEASE_IDENTITY")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env(operator, "KOLBAK_LEASE_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        env(operator, "KOLBAK_DISPATCHER_CREDENTIALS_SECRET"),
        &Value::Null
    );
    assert_eq!(operator["ports"][0]["containerPort"], 8080);
    assert_eq!(operator["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(operator["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(operator["securityContext"]["readOnlyRootFilesystem"], true);

    let ingress = container(named(&docs, "Deployment", "kolbak-ingress")?);
    assert_eq!(ingress["args"], json!(["ingress"]));
    let secret_ref = &env(ingress, "KOLBAK_ADMIN_CLIENT_SECRET")["valueFrom"]["secretKeyRef"];
    assert_eq!(secret_ref["name"], "kolbak-admin");
    let admin = named(&docs, "Secret", "kolbak-admin")?;
    assert!(admin["data"]["client-secret"].is_string() && admin["data"]["jwt-secret"].is_string());
    Ok(())
}

#[test]
fn values_override_reaches_the_manifests() -> TestResult {
    let Some(helm) = helm() else { return Ok(()) };
    let docs = render(&helm, &["-f", "charts/kolbak/ci/namespaced-values.yaml"])?;
    // Namespace-scoped: Roles in the watched namespace instead of ClusterRoles.
    assert!(of_kind(&docs, "ClusterRole").is_empty());
    assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
    let role = named(&docs, "Role", "kolbak-operator")?;
    assert_eq!(role["metadata"]["namespace"], "webhooks");
    let binding = named(&docs, "RoleBinding", "kolbak-operator")?;
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["subjects"][0]["namespace"], "kolbak");
    let dispatcher_account = named(&docs, "ServiceAccount", "kolbak-dispatcher")?;
    assert_eq!(
        dispatcher_account["metadata"]["namespace"], "webhooks",
        "where the pools run"
    );

    let deployment = named(&docs, "Deployment", "kolbak-operator")?;
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["imagePullSecrets"],
        json!([{"name": "registry-credentials"}])
    );
    let operator = container(deployment);
    let image = "registry.example.com/kolbak/kolbak:1.2.3";
    assert_eq!(operator["image"], image);
    assert_eq!(env(operator, "KOLBAK_DISPATCHER_IMAGE")["value"], image);
    assert_eq!(
        env(operator, "KOLBAK_OPERATOR_NAMESPACE")["value"],
        "webhooks"
    );
    assert_eq!(
        env(operator, "KOLBAK_ALLOW_HTTP_CALLBACKS")["value"],
        "true"
    );
    assert_eq!(
        env(operator, "KOLBAK_DISPATCHER_CREDENTIALS_SECRET")["value"],
        "kolbak-connections"
    );
    assert_eq!(
        env(operator, "KOLBAK_KAFKA_BROKERS")["value"],
        "kafka-0.kafka:9092,kafka-1.kafka:9092"
    );
    assert_eq!(
        env(operator, "KOLBAK_CASSANDRA_NODES")["value"],
        "scylla-0.scylla:9042"
    );
    assert_eq!(
        operator["resources"],
        json!({"requests": {"cpu": "200m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}})
    );

    let ingress_deployment = named(&docs, "Deployment", "kolbak-ingress")?;
    assert_eq!(ingress_deployment["spec"]["replicas"], 3);
    let ingress = container(ingress_deployment);
    assert_eq!(ingress["image"], image);
    assert_eq!(
        ingress["envFrom"][0]["secretRef"]["name"],
        "kolbak-connections"
    );
    assert_eq!(env(ingress, "KOLBAK_RATE_LIMIT_PER_SECOND")["value"], "500");
    let secret_ref = &env(ingress, "KOLBAK_JWT_SECRET")["valueFrom"]["secretKeyRef"];
    assert_eq!(secret_ref["name"], "platform-kolbak-admin");
    // The admin Secret exists already: the chart does not create one.
    assert!(of_kind(&docs, "Secret").is_empty());
    assert!(of_kind(&docs, "DispatcherPool").is_empty());
    Ok(())
}
