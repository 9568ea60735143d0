//! Permission scopes carried by API keys and access tokens.

use serde::{Deserialize, Serialize};

/// What a credential may do. The bootstrap admin holds every scope.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    /// List and read webhook subscriptions.
    #[serde(rename = "read:webhooks")]
    ReadWebhooks,
    /// Create, change, delete webhook subscriptions and rotate their secrets.
    #[serde(rename = "write:webhooks")]
    WriteWebhooks,
    /// List and read API keys.
    #[serde(rename = "read:keys")]
    ReadKeys,
    /// Create, change and delete API keys.
    #[serde(rename = "write:keys")]
    WriteKeys,
    /// Publish events.
    #[serde(rename = "write:events")]
    WriteEvents,
    /// Read the delivery log and retry deliveries.
    #[serde(rename = "read:deliveries")]
    ReadDeliveries,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 6] = [
        Scope::ReadWebhooks,
        Scope::WriteWebhooks,
        Scope::ReadKeys,
        Scope::WriteKeys,
        Scope::WriteEvents,
        Scope::ReadDeliveries,
    ];

    /// The scope's wire name, e.g. `write:events`.
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

    /// Parses a wire name; `None` for unknown scopes.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for scope in Scope::ALL {
            let json = serde_json::to_string(&scope).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", scope.as_str()));
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("admin"), None);
    }
}
