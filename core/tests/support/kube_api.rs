//! Shared by the tests against a real Kubernetes API server (`scripts/kube.sh up`, or any
//! cluster): a client from `KUBECONFIG`, the Kolbak CRDs installed and Established, and a fresh
//! namespace per test.
//!
//! Without `KUBECONFIG` a test fails under `CI=true` and otherwise prints a note and passes
//! without running.

#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// Result of a test.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A client for the API server named by `KUBECONFIG`; `None` (outside CI) when it is unset.
pub async fn client() -> Result<Option<Client>, Box<dyn std::error::Error>> {
    if std::env::var_os("KUBECONFIG").is_none() {
        let message = "no KUBECONFIG: start a real API server with `eval \"$(scripts/kube.sh \
                       up)\"` and export KUBECONFIG, or point it at any cluster";
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            return Err(message.into());
        }
        eprintln!("note: skipping: {message}");
        return Ok(None);
    }
    let client = Client::try_default().await?;
    install_crds(&client).await?;
    Ok(Some(client))
}

/// Applies the generated CRDs and waits until the API server serves them.
pub async fn install_crds(client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("kolbak-tests").force();
    for crd in kolbak_crds::crds() {
        let name = format!("{}.{}", crd.spec.names.plural, crd.spec.group);
        api.patch(&name, &params, &Patch::Apply(&crd)).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let current = api.get(&name).await?;
            let established = current
                .status
                .and_then(|status| status.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("CRD {name} not Established within 30 s").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// A new namespace `<prefix>-<random>`, labelled `kolbak.io/test=true`. Tests leave theirs in
/// place (to read after a failure); `kubectl delete namespace -l kolbak.io/test=true` clears
/// them.
pub async fn namespace(
    client: &Client,
    prefix: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let name = format!("{prefix}-{:08x}", rand::random::<u32>());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "kolbak.io/test": "true" } }
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(name)
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
