//! Lease election steps against a scripted API server (time is paused and advanced by hand or
//! automatically, so the 15 s lease duration takes no real time).

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::config::OperatorConfig;
use crate::test_support::{ApiServer, context, run, run_within};

/// Time limit of the tests that run on paused (virtual) time.
const VIRTUAL_LIMIT: Duration = Duration::from_secs(120);

type TestResult = Result<(), Box<dyn std::error::Error>>;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kolbak/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kolbak/leases/kolbak-operator";

fn elector() -> (LeaderElector, ApiServer) {
    let (ctx, server) = context(OperatorConfig::default());
    let settings = LeaseSettings::new("kolbak-operator", "kolbak", "me");
    (LeaderElector::new(ctx.client.clone(), settings), server)
}

fn lease(holder: Option<&str>, resource_version: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "kolbak-operator", "namespace": "kolbak", "resourceVersion": resource_version},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "leaseTransitions": transitions,
            "acquireTime": "2025-01-31T12:00:00.000000Z",
            "renewTime": "2025-01-31T12:00:05.000000Z",
        },
    })
}

async fn answer_get(server: &mut ApiServer, lease: &Value) {
    let (_, responder) = server.expect(Method::GET, LEASE).await;
    responder.json(200, lease);
}

#[tokio::test]
async fn creates_a_missing_lease() -> TestResult {
    let (mut elector, mut server) = elector();
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, LEASE).await;
        responder.not_found();
        let (created, responder) = server.expect(Method::POST, LEASES).await;
        let spec = &created.body["spec"];
        assert_eq!(spec["holderIdentity"], "me");
        assert_eq!(spec["leaseDurationSeconds"], 15);
        assert_eq!(spec["leaseTransitions"], 0);
        assert!(spec["acquireTime"].is_string() && spec["renewTime"].is_string());
        assert!(created.query.contains("fieldManager=kolbak-operator"));
        responder.json(201, &created.body);
    };
    assert!(run(elector.try_acquire_or_renew(), scenario).await?);
    Ok(())
}

#[tokio::test]
async fn losing_the_create_race_is_not_leading() -> TestResult {
    let (mut elector, mut server) = elector();
    let scenario = async move {
        let (_, responder) = server.expect(Method::GET, LEASE).await;
        responder.not_found();
        let (_, responder) = server.expect(Method::POST, LEASES).await;
        responder.already_exists();
    };
    assert!(!run(elector.try_acquire_or_renew(), scenario).await?);
    Ok(())
}

#[tokio::test]
async fn renews_its_own_lease() -> TestResult {
    let (mut elector, mut server) = elector();
    let scenario = async move {
        answer_get(&mut server, &lease(Some("me"), "5", 3)).await;
        let (update, responder) = server.expect(Method::PUT, LEASE).await;
        let body = &update.body;
        assert_eq!(
            body["metadata"]["resourceVersion"], "5",
            "guarded by resourceVersion"
        );
        assert_eq!(body["spec"]["holderIdentity"], "me");
        assert_eq!(
            body["spec"]["leaseTransitions"], 3,
            "a renewal is no transition"
        );
        assert_eq!(body["spec"]["acquireTime"], "2025-01-31T12:00:00.000000Z");
        assert_ne!(body["spec"]["renewTime"], "2025-01-31T12:00:05.000000Z");
        responder.json(200, body);
    };
    assert!(run(elector.try_acquire_or_renew(), scenario).await?);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn waits_out_a_live_holder_then_takes_over() -> TestResult {
    let (mut elector, mut server) = elector();
    let (step, mut steps) = tokio::sync::mpsc::channel::<()>(1);
    let scenario = async move {
        // First look at the other holder's record (version 5): not expired.
        answer_get(&mut server, &lease(Some("other"), "5", 1)).await;
        let _ = step.send(()).await;
        // Ten seconds later it has renewed (version 6): the clock starts again.
        answer_get(&mut server, &lease(Some("other"), "6", 1)).await;
        let _ = step.send(()).await;
        // Ten more seconds: version 6 is only 10 s old.
        answer_get(&mut server, &lease(Some("other"), "6", 1)).await;
        let _ = step.send(()).await;
        // 16 s after version 6 was first seen: expired, take it over.
        answer_get(&mut server, &lease(Some("other"), "6", 1)).await;
        let (update, responder) = server.expect(Method::PUT, LEASE).await;
        let spec = &update.body["spec"];
        assert_eq!(spec["holderIdentity"], "me");
        assert_eq!(spec["leaseTransitions"], 2);
        assert_eq!(update.body["metadata"]["resourceVersion"], "6");
        responder.json(200, &update.body);
    };
    let attempts = async {
        let mut results = Vec::new();
        for wait in [10, 10, 6] {
            results.push(elector.try_acquire_or_renew().await?);
            steps.recv().await;
            tokio::time::advance(Duration::from_secs(wait)).await;
        }
        results.push(elector.try_acquire_or_renew().await?);
        Ok::<_, Error>(results)
    };
    assert_eq!(
        run_within(VIRTUAL_LIMIT, attempts, scenario).await?,
        [false, false, false, true]
    );
    Ok(())
}

#[tokio::test]
async fn takes_a_released_lease_at_once() -> TestResult {
    let (mut elector, mut server) = elector();
    let scenario = async move {
        answer_get(&mut server, &lease(None, "9", 4)).await;
        let (update, responder) = server.expect(Method::PUT, LEASE).await;
        assert_eq!(update.body["spec"]["holderIdentity"], "me");
        assert_eq!(update.body["spec"]["leaseTransitions"], 5);
        responder.conflict();
    };
    // Another standby was faster: 409, not leading, no error.
    assert!(!run(elector.try_acquire_or_renew(), scenario).await?);
    Ok(())
}

#[tokio::test]
async fn release_clears_the_holder() -> TestResult {
    let (mut elector, mut server) = elector();
    let scenario = async move {
        answer_get(&mut server, &lease(Some("me"), "5", 1)).await;
        let (update, responder) = server.expect(Method::PUT, LEASE).await;
        assert!(update.body["spec"].get("holderIdentity").is_none());
        assert_eq!(update.body["spec"]["leaseDurationSeconds"], 1);
        responder.json(200, &update.body);
    };
    run(elector.release(), scenario).await?;
    Ok(())
}

#[tokio::test]
async fn release_leaves_another_holder_alone() -> TestResult {
    let (mut elector, mut server) = elector();
    let scenario = async move {
        answer_get(&mut server, &lease(Some("other"), "5", 1)).await;
    };
    run(elector.release(), scenario).await?;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn hold_ends_when_another_holder_shows_up() -> TestResult {
    let (mut elector, mut server) = elector();
    let scenario = async move {
        answer_get(&mut server, &lease(Some("me"), "5", 1)).await;
        let (update, responder) = server.expect(Method::PUT, LEASE).await;
        responder.json(200, &update.body);
        answer_get(&mut server, &lease(Some("other"), "7", 2)).await;
    };
    let lost = run_within(VIRTUAL_LIMIT, elector.hold(), scenario).await;
    assert!(matches!(lost, Error::LeadershipLost { .. }), "{lost}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn hold_ends_after_the_renew_deadline_without_renewal() -> TestResult {
    let (mut elector, mut server) = elector();
    let scenario = async move {
        // Renewals every 2 s all fail; after the 6th (12 s > 10 s deadline) it gives up.
        for _ in 0..6 {
            let (_, responder) = server.expect(Method::GET, LEASE).await;
            responder.json(500, &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500}));
        }
    };
    let lost = run_within(VIRTUAL_LIMIT, elector.hold(), scenario).await;
    assert!(matches!(lost, Error::LeadershipLost { .. }), "{lost}");
    Ok(())
}
