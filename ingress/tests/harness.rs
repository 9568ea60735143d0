//! In-process API test harness: the real router over a real SQLite store in a temp directory,
//! driven with `tower::ServiceExt::oneshot` (no sockets).

#![allow(
    dead_code,
    reason = "each test file uses a different part of the harness"
)]
#![allow(missing_docs, reason = "test support code")]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kolbak_core::SqliteStore;
use kolbak_core::telemetry::MetricsRegistry;
use kolbak_ingress::{AdminClient, ApiConfig, AppState, Backends, router};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ADMIN_ID: &str = "admin";
pub const ADMIN_SECRET: &str = "admin-secret-for-tests";
pub const JWT_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How a request authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Bearer(String),
    ApiKey(String),
}

/// A response, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
    pub fn data(&self) -> &Value {
        &self.json["data"]
    }
}

pub struct Api {
    pub router: Router,
    pub store: Arc<SqliteStore>,
    pub admin: String,
    _dir: tempfile::TempDir,
}

impl Api {
    pub async fn new() -> Self {
        Self::with_config(ApiConfig {
            rate_limit_per_second: 0,
            ..ApiConfig::default()
        })
        .await
    }

    pub async fn with_config(config: ApiConfig) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("kolbak.db"))
                .unwrap_or_else(|e| panic!("open: {e}")),
        );
        let state = AppState::new(
            config,
            Backends {
                registry: store.clone(),
                queue: store.clone(),
                delivery_log: store.clone(),
                manual_retries: kolbak_ingress::ManualRetries::Polled,
            },
            AdminClient::new(ADMIN_ID, ADMIN_SECRET),
            JWT_SECRET,
            MetricsRegistry::default(),
        );
        let mut api = Self {
            router: router(state),
            store,
            admin: String::new(),
            _dir: dir,
        };
        api.admin = api.token(ADMIN_ID, ADMIN_SECRET, None).await;
        api
    }

    pub fn admin(&self) -> Auth {
        Auth::Bearer(self.admin.clone())
    }

    /// Sends a raw request.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|e| panic!("router failed: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    /// Sends JSON (or nothing) with the given credentials.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        builder = match auth {
            Auth::None => builder,
            Auth::Bearer(token) => builder.header("authorization", format!("Bearer {token}")),
            Auth::ApiKey(key) => builder.header("x-api-key", key),
        };
        let body = match body {
            Some(value) => {
                builder = builder.header("content-type", "application/json");
                Body::from(value.to_string())
            }
            None => Body::empty(),
        };
        self.send(
            builder
                .body(body)
                .unwrap_or_else(|e| panic!("request: {e}")),
        )
        .await
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Reply {
        self.call(Method::GET, path, auth, None).await
    }

    pub async fn post(&self, path: &str, auth: &Auth, body: Value) -> Reply {
        self.call(Method::POST, path, auth, Some(body)).await
    }

    /// Form-encoded token request; returns the reply.
    pub async fn token_reply(&self, client_id: &str, secret: &str, scope: Option<&str>) -> Reply {
        let mut form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            encode(client_id),
            encode(secret)
        );
        if let Some(scope) = scope {
            form.push_str(&format!("&scope={}", encode(scope)));
        }
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/auth")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap_or_else(|e| panic!("request: {e}"));
        self.send(request).await
    }

    /// An access token for the client; panics when refused.
    pub async fn token(&self, client_id: &str, secret: &str, scope: Option<&str>) -> String {
        let reply = self.token_reply(client_id, secret, scope).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.json["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Creates an API key with `scopes`; returns (id, key).
    pub async fn key(&self, scopes: &[&str]) -> (String, String) {
        let reply = self
            .post(
                "/v1/keys",
                &self.admin(),
                json!({"name": "test key", "scopes": scopes}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        (
            reply.data()["id"].as_str().unwrap_or_default().to_owned(),
            reply.data()["key"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Creates a webhook; returns its data (with the secret).
    pub async fn webhook(&self, event: &str) -> Value {
        let reply = self
            .post(
                "/v1/webhooks",
                &self.admin(),
                json!({"callback_url": "https://example.com/hook", "event": event}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.data().clone()
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
