//! Every manifest in examples/ deserializes into the Kolbak custom resource types without
//! unknown fields; the valid ones pass the schema rules and the operator's checks, and
//! `invalid-subscription.yaml` is accepted by the schema but refused by the operator.

use std::path::{Path, PathBuf};

use kolbak_crds::{ApiKey, DispatcherPool, WebhookSubscription};
use kolbak_operator::OperatorConfig;
use kolbak_operator::pool_render;
use kolbak_operator::subscription::validate;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The one document of `file` as JSON.
fn document(file: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(examples_dir().join(file))?;
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text)?;
    Ok(serde_json::to_value(yaml)?)
}

/// `value` as `T`, checking that nothing in it was ignored (a misspelt field would be).
fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, Box<dyn std::error::Error>> {
    let object = T::deserialize(value)?;
    let round_trip = serde_json::to_value(&object)?;
    assert_subset(value, &round_trip, "");
    Ok(object)
}

/// Asserts every field of `part` is in `whole` with the same value.
fn assert_subset(part: &Value, whole: &Value, path: &str) {
    match (part, whole) {
        (Value::Object(fields), Value::Object(all)) => {
            for (key, value) in fields {
                let Some(other) = all.get(key) else {
                    panic!("{path}.{key} is not a field of the type (misspelt?)");
                };
                assert_subset(value, other, &format!("{path}.{key}"));
            }
        }
        (Value::Array(items), Value::Array(all)) => {
            assert_eq!(items.len(), all.len(), "{path}");
            for (i, (item, other)) in items.iter().zip(all).enumerate() {
                assert_subset(item, other, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(part, whole, "{path}"),
    }
}

#[test]
fn every_example_is_covered() -> TestResult {
    let mut files: Vec<String> = std::fs::read_dir(examples_dir())?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "apikey.yaml",
            "dispatcherpool.yaml",
            "invalid-subscription.yaml",
            "subscription.yaml"
        ]
    );
    Ok(())
}

#[test]
fn subscription_is_valid() -> TestResult {
    let sub: WebhookSubscription = typed(&document("subscription.yaml")?)?;
    sub.spec.validate()?;
    assert_eq!(validate(&sub.spec, false), Ok(()));
    assert!(sub.spec.secret_ref.is_none(), "shows the generated secret");
    Ok(())
}

#[test]
fn api_key_is_valid() -> TestResult {
    let key: ApiKey = typed(&document("apikey.yaml")?)?;
    key.spec.validate()?;
    assert_eq!(key.spec.scopes, [kolbak_crds::Scope::WriteEvents]);
    Ok(())
}

#[test]
fn dispatcher_pool_is_valid_and_accepted_by_dispatchers() -> TestResult {
    let pool: DispatcherPool = typed(&document("dispatcherpool.yaml")?)?;
    pool.spec.validate()?;
    let settings = pool_render::settings(&pool.spec, &OperatorConfig::default())?;
    assert_eq!(settings["KOLBAK_RETRY_SCHEDULE"], "5s,30s,5m,30m,2h,6h");
    Ok(())
}

#[test]
fn invalid_subscription_passes_the_schema_but_not_the_operator() -> TestResult {
    let sub: WebhookSubscription = typed(&document("invalid-subscription.yaml")?)?;
    // The API server accepts it (the schema's rules hold)...
    sub.spec.validate()?;
    // ...and the operator reports it Valid=False.
    let invalid = validate(&sub.spec, false).err().ok_or("must be invalid")?;
    assert_eq!(invalid.reason, "InsecureCallbackUrl");
    // Only because of the scheme: with http allowed it is fine.
    assert_eq!(validate(&sub.spec, true), Ok(()));
    Ok(())
}
