//! A scripted Kubernetes API server for reconciler tests (kube's tower-test pattern): the
//! client under test talks to a `tower_test` mock service, and the test answers each request it
//! expects, asserting method, path and body. A reconcile that makes an unexpected extra request
//! waits forever for an answer, and a missing request leaves the scenario waiting; both end in
//! a timeout, so every test pins down the exact request sequence.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

use crate::config::OperatorConfig;
use crate::context::Context;
use crate::metrics::ReconcileMetrics;

/// How long a test waits for the reconcile and for the scenario.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The test's side of the mock API server.
pub struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// A request the reconcile made.
#[derive(Debug)]
pub struct Received {
    /// HTTP method.
    pub method: Method,
    /// Path, e.g. `/api/v1/namespaces/shop/secrets`.
    pub path: String,
    /// Query string (may be empty).
    pub query: String,
    /// `content-type` header (empty when absent).
    pub content_type: String,
    /// Body as JSON (`Null` when empty).
    pub body: Value,
}

/// Answers one request.
pub struct Responder(SendResponse<Response<Body>>);

/// A context whose client talks to the returned mock server.
pub fn context(config: OperatorConfig) -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Context::new(
        client,
        config,
        ReconcileMetrics::default(),
        Some("test-operator".into()),
    );
    (Arc::new(ctx), ApiServer(handle))
}

impl ApiServer {
    /// Waits for the next request and checks its method and path.
    pub async fn expect(&mut self, method: Method, path: &str) -> (Received, Responder) {
        let Some((request, send)) = self.0.next_request().await else {
            panic!("expected {method} {path}, but the client went away");
        };
        let (parts, body) = request.into_parts();
        let bytes = match body.collect_bytes().await {
            Ok(bytes) => bytes,
            Err(error) => panic!("cannot read the request body: {error}"),
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("request body is not JSON: {e}"))
        };
        let received = Received {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body,
        };
        assert_eq!(
            (&received.method, received.path.as_str()),
            (&method, path),
            "unexpected request {received:?}"
        );
        (received, Responder(send))
    }

    /// Expects an Event to be created in `namespace` and answers it; returns the Event.
    pub async fn expect_event(&mut self, namespace: &str) -> Value {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
        let (received, responder) = self.expect(Method::POST, &path).await;
        responder.json(201, &received.body);
        received.body
    }

    /// Expects one Event per reason, in order, and returns them.
    pub async fn expect_events(&mut self, namespace: &str, reasons: &[&str]) -> Vec<Value> {
        let mut events = Vec::new();
        for reason in reasons {
            let event = self.expect_event(namespace).await;
            assert_eq!(event["reason"], *reason, "event {event}");
            events.push(event);
        }
        events
    }
}

impl Responder {
    /// Answers with `status` and the JSON `body`.
    pub fn json(self, status: u16, body: &Value) {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .unwrap_or_else(|e| panic!("cannot build a response: {e}"));
        self.0.send_response(response);
    }

    /// Answers 404 NotFound, as the API server does for a missing object.
    pub fn not_found(self) {
        self.json(404, &status("NotFound", 404));
    }

    /// Answers 409 Conflict, as for a stale `resourceVersion`.
    pub fn conflict(self) {
        self.json(409, &status("Conflict", 409));
    }

    /// Answers 409 AlreadyExists, as for creating an existing object.
    pub fn already_exists(self) {
        self.json(409, &status("AlreadyExists", 409));
    }
}

/// A `metav1.Status` failure body.
fn status(reason: &str, code: u16) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("{reason} (scripted)"),
        "reason": reason,
        "code": code,
    })
}

/// Runs `reconcile` against `scenario` (which owns the [`ApiServer`]) and returns the
/// reconcile's output once both are done. Panics on a timeout, and re-raises a failed
/// assertion of the scenario.
pub async fn run<T>(
    reconcile: impl Future<Output = T>,
    scenario: impl Future<Output = ()> + Send + 'static,
) -> T {
    run_within(TIMEOUT, reconcile, scenario).await
}

/// [`run`] with a time limit for each of the two (tests on paused time need more than
/// [`run`]'s 5 s of virtual time; it costs them nothing real).
pub async fn run_within<T>(
    limit: Duration,
    reconcile: impl Future<Output = T>,
    scenario: impl Future<Output = ()> + Send + 'static,
) -> T {
    let scenario = tokio::spawn(scenario);
    let output = tokio::time::timeout(limit, reconcile).await;
    match tokio::time::timeout(limit, scenario).await {
        Ok(Ok(())) => {}
        Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Ok(Err(join)) => panic!("scenario did not finish: {join}"),
        Err(_) => panic!("scenario timed out: the reconcile made fewer requests than expected"),
    }
    output.unwrap_or_else(|_| panic!("reconcile timed out: it made more requests than expected"))
}

/// Asserts that no request in `requests` touches `metadata.finalizers`: owned objects are
/// garbage-collected through ownerReferences, the operator never adds a finalizer.
pub fn assert_no_finalizer(requests: &[&Received]) {
    for request in requests {
        assert!(
            request.body.pointer("/metadata/finalizers").is_none(),
            "request adds a finalizer: {request:?}"
        );
        assert!(
            !request.body.to_string().contains("finalizers"),
            "request mentions finalizers: {request:?}"
        );
    }
}

/// Asserts that `request` is a server-side apply by the operator's field manager.
pub fn assert_server_side_apply(request: &Received) {
    assert_eq!(
        request.content_type, "application/apply-patch+yaml",
        "{request:?}"
    );
    assert!(
        request.query.contains("fieldManager=kolbak-operator"),
        "{request:?}"
    );
    assert!(request.query.contains("force=true"), "{request:?}");
}

/// `obj` (any custom resource) as the API server would return it with `status`.
pub fn with_status(obj: &impl serde::Serialize, status: &Value) -> Value {
    let mut value = serde_json::to_value(obj).unwrap_or_default();
    value["status"] = status.clone();
    value
}

/// `data` values of a Secret body decoded from base64 to text.
pub fn secret_text(secret: &Value, key: &str) -> Option<String> {
    let encoded = secret.pointer(&format!("/data/{key}"))?.clone();
    let bytes: k8s_openapi::ByteString = serde_json::from_value(encoded).ok()?;
    String::from_utf8(bytes.0).ok()
}
