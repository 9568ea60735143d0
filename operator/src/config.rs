//! Settings of `kolbak operator`, loaded like every Kolbak component: defaults, then an optional
//! TOML file, then `KOLBAK_*` environment variables (`KOLBAK_` + the field name in upper case),
//! then flags — see [`kolbak_core::config::load`].

use std::net::SocketAddr;

use kolbak_core::config::{Settings, from_text};
use kolbak_core::{Error as CoreError, Result as CoreResult};
use kolbak_crds::validation::{is_dns_label, is_dns_subdomain};
use serde::{Deserialize, Serialize};

/// Image the dispatcher Deployments run when neither the pool nor the configuration names one.
pub const DEFAULT_DISPATCHER_IMAGE: &str =
    concat!("ghcr.io/kolbak/kolbak:", env!("CARGO_PKG_VERSION"));

/// Default name of the leader-election Lease.
pub const DEFAULT_LEASE_NAME: &str = "kolbak-operator";

/// Operator settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct OperatorConfig {
    /// Namespace whose WebhookSubscriptions, ApiKeys and DispatcherPools the operator reconciles
    /// (`KOLBAK_OPERATOR_NAMESPACE`). Unset or empty: every namespace. Default: every namespace.
    pub operator_namespace: Option<String>,

    /// Accept `http://` callback URLs (`KOLBAK_ALLOW_HTTP_CALLBACKS`). When `false`, a
    /// WebhookSubscription with an `http://` URL is reported `Valid=False`
    /// (reason `InsecureCallbackUrl`). For local testing only. Default `false`.
    #[serde(with = "from_text")]
    pub allow_http_callbacks: bool,

    /// Container image of the dispatcher Deployments when a DispatcherPool sets no
    /// `spec.image` (`KOLBAK_DISPATCHER_IMAGE`). Default `ghcr.io/kolbak/kolbak:<version>`.
    pub dispatcher_image: String,

    /// ServiceAccount the dispatcher Pods run as (`KOLBAK_DISPATCHER_SERVICE_ACCOUNT`); it must
    /// exist in each pool's namespace and may read WebhookSubscriptions and Secrets. Unset: the
    /// namespace's `default` ServiceAccount.
    pub dispatcher_service_account: Option<String>,

    /// Secret, in each pool's namespace, whose keys are added to the dispatchers' environment
    /// (`KOLBAK_DISPATCHER_CREDENTIALS_SECRET`): Kafka and Cassandra credentials as `KOLBAK_*`
    /// variables. Its values are not part of the config hash: changing them does not restart
    /// the dispatchers. Unset: none.
    pub dispatcher_credentials_secret: Option<String>,

    /// Kafka bootstrap servers passed to the dispatchers as `KOLBAK_KAFKA_BROKERS`
    /// (`KOLBAK_KAFKA_BROKERS`), e.g. `kafka-0.kafka:9092,kafka-1.kafka:9092`. Unset: not passed.
    pub kafka_brokers: Option<String>,

    /// Cassandra contact points passed to the dispatchers as `KOLBAK_CASSANDRA_NODES`
    /// (`KOLBAK_CASSANDRA_NODES`), e.g. `cassandra-0.cassandra:9042`. Unset: not passed.
    pub cassandra_nodes: Option<String>,

    /// Let dispatchers deliver to loopback, private and link-local addresses
    /// (`KOLBAK_ALLOW_PRIVATE_TARGETS`, passed on to every pool). For local testing only.
    /// Default `false`.
    #[serde(with = "from_text")]
    pub allow_private_targets: bool,

    /// Name of the `coordination.k8s.io/v1` Lease used for leader election
    /// (`KOLBAK_LEASE_NAME`). Default `kolbak-operator`.
    pub lease_name: String,

    /// Namespace of the Lease (`KOLBAK_LEASE_NAMESPACE`). Unset: the namespace the operator
    /// runs in (from its ServiceAccount, or the kubeconfig's current namespace).
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease (`KOLBAK_LEASE_IDENTITY`); must differ between
    /// replicas. Unset: the `HOSTNAME` environment variable (the Pod name), or a random one.
    pub lease_identity: Option<String>,

    /// Address of the `/healthz`, `/readyz` and `/metrics` endpoints (`KOLBAK_LISTEN`).
    /// Default `127.0.0.1:8080`; the Helm chart sets `0.0.0.0:8080`.
    #[serde(with = "from_text")]
    pub listen: SocketAddr,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            operator_namespace: None,
            allow_http_callbacks: false,
            dispatcher_image: DEFAULT_DISPATCHER_IMAGE.to_owned(),
            dispatcher_service_account: None,
            dispatcher_credentials_secret: None,
            kafka_brokers: None,
            cassandra_nodes: None,
            allow_private_targets: false,
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            lease_namespace: None,
            lease_identity: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

impl OperatorConfig {
    /// The namespace to watch, or `None` for every namespace.
    pub fn watch_namespace(&self) -> Option<&str> {
        non_empty(self.operator_namespace.as_deref())
    }

    /// The Kafka brokers to pass to dispatchers, if configured.
    pub fn kafka_brokers(&self) -> Option<&str> {
        non_empty(self.kafka_brokers.as_deref())
    }

    /// The Cassandra contact points to pass to dispatchers, if configured.
    pub fn cassandra_nodes(&self) -> Option<&str> {
        non_empty(self.cassandra_nodes.as_deref())
    }

    /// The credentials Secret to add to dispatcher environments, if configured.
    pub fn dispatcher_credentials_secret(&self) -> Option<&str> {
        non_empty(self.dispatcher_credentials_secret.as_deref())
    }

    /// The dispatcher ServiceAccount, if configured.
    pub fn dispatcher_service_account(&self) -> Option<&str> {
        non_empty(self.dispatcher_service_account.as_deref())
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// A configuration error naming the variable.
fn invalid(variable: &str, reason: &str) -> CoreError {
    CoreError::Configuration(format!("{variable} {reason}"))
}

impl Settings for OperatorConfig {
    /// Checks names and values; errors name the environment variable.
    fn validate(&self) -> CoreResult<()> {
        if let Some(namespace) = self.watch_namespace()
            && !is_dns_label(namespace)
        {
            return Err(invalid(
                "KOLBAK_OPERATOR_NAMESPACE",
                "must be a namespace name (lowercase letters, digits and '-')",
            ));
        }
        if self.dispatcher_image.trim().is_empty() {
            return Err(invalid("KOLBAK_DISPATCHER_IMAGE", "must not be empty"));
        }
        for (variable, value) in [
            (
                "KOLBAK_DISPATCHER_SERVICE_ACCOUNT",
                self.dispatcher_service_account(),
            ),
            (
                "KOLBAK_DISPATCHER_CREDENTIALS_SECRET",
                self.dispatcher_credentials_secret(),
            ),
        ] {
            if value.is_some_and(|name| !is_dns_subdomain(name)) {
                return Err(invalid(variable, "must be a valid object name"));
            }
        }
        if !is_dns_subdomain(&self.lease_name) {
            return Err(invalid("KOLBAK_LEASE_NAME", "must be a valid object name"));
        }
        if non_empty(self.lease_namespace.as_deref()).is_some_and(|ns| !is_dns_label(ns)) {
            return Err(invalid(
                "KOLBAK_LEASE_NAMESPACE",
                "must be a namespace name (lowercase letters, digits and '-')",
            ));
        }
        if self
            .lease_identity
            .as_deref()
            .is_some_and(|id| id.trim().is_empty() || id.len() > 253)
        {
            return Err(invalid(
                "KOLBAK_LEASE_IDENTITY",
                "must be 1 to 253 characters",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kolbak_core::config::{env_map, load};
    use std::collections::BTreeMap;

    fn load_env(pairs: &[(&str, &str)]) -> CoreResult<OperatorConfig> {
        load(None, env_map(pairs), &BTreeMap::<String, String>::new())
    }

    #[test]
    fn defaults_are_valid() {
        let config = OperatorConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.watch_namespace(), None);
        assert!(!config.allow_http_callbacks);
        assert!(
            config
                .dispatcher_image
                .starts_with("ghcr.io/kolbak/kolbak:")
        );
        assert_eq!(config.lease_name, "kolbak-operator");
    }

    #[test]
    fn environment_sets_every_field() {
        let config = load_env(&[
            ("KOLBAK_OPERATOR_NAMESPACE", "shop"),
            ("KOLBAK_ALLOW_HTTP_CALLBACKS", "true"),
            ("KOLBAK_DISPATCHER_IMAGE", "registry.local/kolbak:dev"),
            ("KOLBAK_DISPATCHER_SERVICE_ACCOUNT", "kolbak-dispatcher"),
            ("KOLBAK_DISPATCHER_CREDENTIALS_SECRET", "kolbak-credentials"),
            ("KOLBAK_KAFKA_BROKERS", "kafka:9092"),
            ("KOLBAK_CASSANDRA_NODES", "cassandra:9042"),
            ("KOLBAK_ALLOW_PRIVATE_TARGETS", "true"),
            ("KOLBAK_LEASE_NAME", "my-lease"),
            ("KOLBAK_LEASE_NAMESPACE", "kolbak"),
            ("KOLBAK_LEASE_IDENTITY", "pod-1"),
            ("KOLBAK_LISTEN", "0.0.0.0:9000"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.watch_namespace(), Some("shop"));
        assert!(config.allow_http_callbacks);
        assert_eq!(config.dispatcher_image, "registry.local/kolbak:dev");
        assert_eq!(
            config.dispatcher_service_account(),
            Some("kolbak-dispatcher")
        );
        assert_eq!(
            config.dispatcher_credentials_secret(),
            Some("kolbak-credentials")
        );
        assert_eq!(config.kafka_brokers(), Some("kafka:9092"));
        assert_eq!(config.cassandra_nodes(), Some("cassandra:9042"));
        assert!(config.allow_private_targets);
        assert_eq!(config.lease_name, "my-lease");
        assert_eq!(config.lease_namespace.as_deref(), Some("kolbak"));
        assert_eq!(config.lease_identity.as_deref(), Some("pod-1"));
        assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
    }

    #[test]
    fn empty_namespace_means_all() {
        let config =
            load_env(&[("KOLBAK_OPERATOR_NAMESPACE", "")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.watch_namespace(), None);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("KOLBAK_OPERATOR_NAMESPACE", "Not_A_Namespace"),
            ("KOLBAK_ALLOW_HTTP_CALLBACKS", "maybe"),
            ("KOLBAK_DISPATCHER_IMAGE", " "),
            ("KOLBAK_DISPATCHER_CREDENTIALS_SECRET", "a/b"),
            ("KOLBAK_LEASE_NAME", "UPPER"),
            ("KOLBAK_LISTEN", "nowhere"),
        ] {
            let message = load_env(&[(name, value)])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(name), "{name}: {message}");
        }
    }
}
