//! The chart's RBAC on a real API server: renders the ServiceAccounts, Roles and RoleBindings
//! of `charts/kolbak` for one namespace (`operator.watchNamespace` set, so every grant is
//! namespaced), applies them, and writes a kubeconfig per component that impersonates its
//! ServiceAccount. A process started with such a kubeconfig has exactly the permissions the
//! chart gives that component in a cluster.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::Value;

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

/// A kubeconfig per component, each acting as the component's ServiceAccount.
pub struct Identities {
    /// The operator's.
    pub operator: PathBuf,
    /// The ingress's.
    pub ingress: PathBuf,
    /// The dispatchers'.
    pub dispatcher: PathBuf,
    /// The dispatchers' ServiceAccount name (the operator names it in pool Deployments).
    pub dispatcher_account: String,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// helm from `HELM` or `scripts/helm.sh path`; a missing helm is an error (the caller already
/// found a real API server, so the suite is meant to run).
fn helm() -> Fallible<PathBuf> {
    if let Some(path) = std::env::var_os("HELM") {
        return Ok(PathBuf::from(path));
    }
    let output = Command::new(repo().join("scripts/helm.sh"))
        .arg("path")
        .output()?;
    if !output.status.success() {
        return Err("helm is missing; run scripts/helm.sh install".into());
    }
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

/// Applies the chart's RBAC for `namespace` and writes the impersonating kubeconfigs to `dir`.
pub async fn install(client: &Client, namespace: &str, dir: &Path) -> Fallible<Identities> {
    let output = Command::new(helm()?)
        .current_dir(repo())
        .args([
            "template",
            "kolbak",
            "charts/kolbak",
            "--namespace",
            namespace,
        ])
        .args(["--kube-version", "1.35.0"])
        .args(["--set", &format!("operator.watchNamespace={namespace}")])
        .args(["--show-only", "templates/operator-rbac.yaml"])
        .args(["--show-only", "templates/ingress-rbac.yaml"])
        .args(["--show-only", "templates/dispatcher-rbac.yaml"])
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let mut accounts = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&String::from_utf8(output.stdout)?) {
        let value: Value = serde_json::to_value(serde_yaml::Value::deserialize(document)?)?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_json::from_value(value.clone())?;
        let (group, version) = match value["apiVersion"].as_str().unwrap_or("v1").split_once('/') {
            Some((group, version)) => (group.to_owned(), version.to_owned()),
            None => (
                String::new(),
                value["apiVersion"].as_str().unwrap_or("v1").to_owned(),
            ),
        };
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        let resource = ApiResource {
            api_version: value["apiVersion"].as_str().unwrap_or("v1").to_owned(),
            group,
            version,
            plural: format!("{}s", kind.to_ascii_lowercase()),
            kind: kind.clone(),
        };
        let name = object.metadata.name.clone().unwrap_or_default();
        let object_namespace = object
            .metadata
            .namespace
            .clone()
            .unwrap_or(namespace.to_owned());
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &object_namespace, &resource);
        api.patch(
            &name,
            &PatchParams::apply("kolbak-tests").force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| format!("apply {kind} {name}: {e}"))?;
        if kind == "ServiceAccount" {
            let component = value["metadata"]["labels"]["app.kubernetes.io/component"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            accounts.push((component, name));
        }
    }
    let account = |component: &str| -> Fallible<String> {
        accounts
            .iter()
            .find(|(c, _)| c == component)
            .map(|(_, name)| name.clone())
            .ok_or_else(|| format!("the chart renders no {component} ServiceAccount").into())
    };
    let dispatcher_account = account("dispatcher")?;
    Ok(Identities {
        operator: kubeconfig_as(dir, namespace, &account("operator")?)?,
        ingress: kubeconfig_as(dir, namespace, &account("ingress")?)?,
        dispatcher: kubeconfig_as(dir, namespace, &dispatcher_account)?,
        dispatcher_account,
    })
}

/// A copy of `KUBECONFIG` whose user acts as the ServiceAccount `namespace/account`.
fn kubeconfig_as(dir: &Path, namespace: &str, account: &str) -> Fallible<PathBuf> {
    let source = std::env::var("KUBECONFIG").map_err(|_| "KUBECONFIG is not set")?;
    let mut config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(source)?)?;
    let users = config["users"]
        .as_sequence_mut()
        .ok_or("kubeconfig without users")?;
    for user in users {
        user["user"]["as"] = format!("system:serviceaccount:{namespace}:{account}").into();
    }
    let path = dir.join(format!("kubeconfig-{account}"));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    Ok(path)
}
