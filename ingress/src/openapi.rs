//! The OpenAPI document's frame: title, version, tags and security schemes. Paths and schemas
//! come from the handlers' annotations, so the document cannot drift from the routes.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API's OpenAPI frame.
#[derive(OpenApi)]
#[openapi(
    info(title = "Kolbak", description = "Kubernetes-native webhook delivery: publish events, manage subscriptions and API keys."),
    modifiers(&Security),
    tags(
        (name = "auth", description = "OAuth2 client credentials"),
        (name = "keys", description = "API keys"),
        (name = "webhooks", description = "Webhook subscriptions"),
        (name = "events", description = "Publishing events"),
        (name = "deliveries", description = "The delivery log and manual retries"),
        (name = "health", description = "Probes, metrics and this document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Access token from POST /v1/auth"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "An API key (kbk_…)",
            ))),
        );
    }
}
