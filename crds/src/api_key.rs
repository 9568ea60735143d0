//! The `ApiKey` custom resource (`akey`): a credential for the Kolbak REST API, its [`Scope`]s,
//! and the non-secret facts about the generated key that its status exposes.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::condition::Condition;

/// Longest accepted display name, in characters.
pub const NAME_MAX_LENGTH: usize = 128;

/// Longest accepted `description`, in characters.
pub const DESCRIPTION_MAX_LENGTH: usize = 1024;

/// Desired state of an ApiKey: who it is for and what it may do.
// kube's `printcolumn(...)` groups repeat keys such as `type_`; clippy mistakes them for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kolbak.io",
    version = "v1alpha1",
    kind = "ApiKey",
    namespaced,
    status = "ApiKeyStatus",
    derive = "PartialEq",
    shortname = "akey",
    category = "kolbak",
    doc = "ApiKey is a credential for the Kolbak REST API, limited to the scopes in spec.scopes. \
           The operator generates the key itself and stores it in a Secret in the same namespace, \
           named in status.secretName; the ApiKey object only ever shows a hash and a short \
           prefix of it. Present the key in the x-api-key header, or exchange it for a bearer \
           token at POST /v1/auth. Deleting the ApiKey revokes the key.",
    printcolumn(
        name = "Name",
        type_ = "string",
        json_path = ".spec.name",
        description = "Display name"
    ),
    printcolumn(
        name = "Scopes",
        type_ = "string",
        json_path = ".spec.scopes",
        description = "Operations the key may perform"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the key has been generated and is accepted"
    ),
    printcolumn(
        name = "Prefix",
        type_ = "string",
        json_path = ".status.keyPrefix",
        description = "First characters of the key, to recognise it",
        priority = 1
    ),
    printcolumn(
        name = "Last Used",
        type_ = "date",
        json_path = ".status.lastAccessedAt",
        description = "When the key was last used",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::kubernetes_compat)]
pub struct ApiKeySpec {
    /// Display name of the key, e.g. `billing-service (production)`. Shown in listings; it does
    /// not need to be unique. 1 to 128 characters.
    #[schemars(length(min = 1, max = NAME_MAX_LENGTH))]
    pub name: String,

    /// Free text for humans, e.g. the owner and the purpose of the key. At most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DESCRIPTION_MAX_LENGTH))]
    pub description: Option<String>,

    /// What the key may do; at least one, each listed once. `read:webhooks` / `write:webhooks`:
    /// list and read / create, change and delete webhook subscriptions. `read:keys` /
    /// `write:keys`: the same for API keys (`write:webhooks` also rotates signing secrets).
    /// `write:events`: publish events (POST /v1/events). `read:deliveries`: read the delivery log
    /// and retry deliveries.
    #[schemars(length(min = 1), extend("x-kubernetes-list-type" = "set"))]
    pub scopes: Vec<Scope>,
}

/// A permission an API key can carry: `read:webhooks`, `write:webhooks`, `read:keys`,
/// `write:keys`, `write:events` or `read:deliveries`.
// The same type is the REST API's scope and the scope in access tokens: one list of
// permissions, whichever way a key was created.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    utoipa::ToSchema,
)]
pub enum Scope {
    /// `read:webhooks`: list and read webhook subscriptions.
    #[serde(rename = "read:webhooks")]
    ReadWebhooks,
    /// `write:webhooks`: create, change and delete webhook subscriptions and rotate their secrets.
    #[serde(rename = "write:webhooks")]
    WriteWebhooks,
    /// `read:keys`: list and read API keys.
    #[serde(rename = "read:keys")]
    ReadKeys,
    /// `write:keys`: create, change and delete API keys.
    #[serde(rename = "write:keys")]
    WriteKeys,
    /// `write:events`: publish events.
    #[serde(rename = "write:events")]
    WriteEvents,
    /// `read:deliveries`: read the delivery log and retry deliveries.
    #[serde(rename = "read:deliveries")]
    ReadDeliveries,
}

impl Scope {
    /// Every scope, in documentation order.
    pub const ALL: [Scope; 6] = [
        Scope::ReadWebhooks,
        Scope::WriteWebhooks,
        Scope::ReadKeys,
        Scope::WriteKeys,
        Scope::WriteEvents,
        Scope::ReadDeliveries,
    ];

    /// The scope as written in manifests, tokens and the REST API, e.g. `read:webhooks`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ReadWebhooks => "read:webhooks",
            Scope::WriteWebhooks => "write:webhooks",
            Scope::ReadKeys => "read:keys",
            Scope::WriteKeys => "write:keys",
            Scope::WriteEvents => "write:events",
            Scope::ReadDeliveries => "read:deliveries",
        }
    }

    /// Parses a wire name; `None` for an unknown scope (see [`str::parse`] for an error).
    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == text)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scope::parse(text).ok_or_else(|| {
            Error::invalid(
                "scope",
                format!(
                    "{text:?} is not one of read:webhooks, write:webhooks, read:keys, \
                         write:keys, write:events, read:deliveries"
                ),
            )
        })
    }
}

/// Observed state of an ApiKey, written by Kolbak. Never contains the key itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::kubernetes_compat)]
pub struct ApiKeyStatus {
    /// Current state as standard conditions. `SecretReady`: the key has been generated and
    /// stored. `Ready`: the key is accepted by the API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` the operator last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// SHA-256 of the key, as 64 lowercase hex digits. Lets the API check a presented key
    /// without storing it; the key cannot be recovered from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[0-9a-f]{64}$"))]
    pub key_hash: Option<String>,

    /// The first few characters of the key. Not secret: it helps to tell which key a client
    /// uses, e.g. in logs, without revealing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,

    /// Name of the Secret, in this namespace, that holds the key. Read it with
    /// `kubectl get secret <name> -o jsonpath='{.data}'`; the value is base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// When the key was last used to authenticate (RFC 3339, UTC). Unset if it never was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accessed_at: Option<DateTime<Utc>>,
}

impl ApiKeySpec {
    /// Checks the rules the CRD schema makes the API server enforce, for specs that do not pass
    /// through it (standalone mode, the REST API).
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the first offending field.
    pub fn validate(&self) -> Result<(), Error> {
        if self.name.is_empty() || self.name.chars().count() > NAME_MAX_LENGTH {
            return Err(Error::invalid(
                "spec.name",
                "must be 1 to 128 characters long",
            ));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > DESCRIPTION_MAX_LENGTH)
        {
            return Err(Error::invalid(
                "spec.description",
                "must be at most 1024 characters",
            ));
        }
        if self.scopes.is_empty() {
            return Err(Error::invalid(
                "spec.scopes",
                "must list at least one scope",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(duplicate) = self.scopes.iter().find(|scope| !seen.insert(**scope)) {
            return Err(Error::invalid(
                "spec.scopes",
                format!("lists {duplicate} more than once"),
            ));
        }
        Ok(())
    }

    /// Whether the key carries `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

impl ApiKeyStatus {
    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        crate::condition::is_true(&self.conditions, crate::condition::READY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn scopes_serialize_exactly_as_documented() -> Result<(), serde_json::Error> {
        let json = serde_json::to_value(Scope::ALL)?;
        assert_eq!(
            json,
            serde_json::json!([
                "read:webhooks",
                "write:webhooks",
                "read:keys",
                "write:keys",
                "write:events",
                "read:deliveries"
            ])
        );
        for scope in Scope::ALL {
            assert_eq!(serde_json::to_value(scope)?, scope.as_str());
            assert_eq!(scope.as_str().parse::<Scope>().ok(), Some(scope));
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert!("admin".parse::<Scope>().is_err());
        assert_eq!(Scope::parse("admin"), None);
        Ok(())
    }

    #[test]
    fn manifest_deserializes() -> Result<(), Box<dyn std::error::Error>> {
        let key: ApiKey = serde_yaml::from_str(
            r#"
apiVersion: kolbak.io/v1alpha1
kind: ApiKey
metadata:
  name: billing
spec:
  name: billing-service
  scopes: ["write:events", "read:deliveries"]
status:
  keyHash: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
  keyPrefix: kbk_9f86
  secretName: billing-api-key
"#,
        )?;
        assert_eq!(key.spec.scopes, [Scope::WriteEvents, Scope::ReadDeliveries]);
        assert!(key.spec.allows(Scope::WriteEvents));
        assert!(!key.spec.allows(Scope::WriteKeys));
        key.spec.validate()?;
        let status = key.status.ok_or("status missing")?;
        assert_eq!(status.secret_name.as_deref(), Some("billing-api-key"));
        assert!(!status.is_ready());
        Ok(())
    }

    #[test]
    fn unknown_scope_is_rejected() {
        let parsed: Result<ApiKeySpec, _> = serde_yaml::from_str("name: x\nscopes: [\"admin\"]\n");
        assert!(parsed.is_err());
    }

    #[test]
    fn validate_rejects_empty_and_duplicate_scopes() {
        let mut spec = ApiKeySpec {
            name: "ci".into(),
            description: None,
            scopes: vec![],
        };
        assert!(spec.validate().is_err());
        spec.scopes = vec![Scope::ReadKeys, Scope::ReadKeys];
        assert!(spec.validate().is_err());
        spec.scopes = vec![Scope::ReadKeys];
        assert!(spec.validate().is_ok());
        spec.name = String::new();
        assert!(spec.validate().is_err());
    }

    #[test]
    fn crd_has_names_and_columns() {
        let crd = ApiKey::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("apikeys.kolbak.io"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["akey".to_owned()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["kolbak".to_owned()]));
        let names: Vec<&str> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority.is_none())
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["Name", "Scopes", "Ready", "Age"]);
    }
}
