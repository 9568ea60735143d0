//! End-to-end tests of the `kolbak` binary: real processes, real sockets, real files. They
//! start `kolbak standalone`, drive it over HTTP, stop it with SIGTERM or SIGKILL, and check
//! what survived.

mod harness;

use std::path::Path;
use std::process::Command;

use harness::{Server, TestResult, free_port};
use serde_json::{Value, json};

async fn token(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    secret: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let reply: Value = http
        .post(format!("{base}/v1/auth"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(reply["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_owned())
}

#[tokio::test]
async fn the_whole_flow_survives_a_graceful_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let http = reqwest::Client::new();
    let server = Server::start(dir.path(), port)?;
    let secret = server
        .printed_secret()
        .ok_or("admin credentials were not printed on first start")?;
    let base = server.base.clone();

    let admin = token(&http, &base, "admin", &secret).await?;
    let key: Value = http
        .post(format!("{base}/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "producer", "scopes": ["write:events", "read:webhooks"]}))
        .send()
        .await?
        .json()
        .await?;
    let key_value = key["data"]["key"].as_str().ok_or("no key")?.to_owned();
    let hook = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(&admin)
        .json(&json!({"callback_url": "https://example.com/hook", "event": "order.*"}))
        .send()
        .await?;
    assert_eq!(hook.status(), 201);
    let event = http
        .post(format!("{base}/v1/events"))
        .header("x-api-key", &key_value)
        .json(&json!({"id": "evt-graceful", "event": "order.created", "payload": {"n": 1}}))
        .send()
        .await?;
    assert_eq!(event.status(), 202);

    let status = server.terminate()?;
    assert!(
        status.success(),
        "SIGTERM should end kolbak cleanly, got {status}"
    );

    // Second start: nothing is printed again, and the old token still works.
    let server = Server::start(dir.path(), port)?;
    assert_eq!(
        server.printed_secret(),
        None,
        "credentials must be shown only once"
    );
    // The old client's pooled connections died with the first process.
    let http = reqwest::Client::new();
    let hooks: Value = http
        .get(format!("{base}/v1/webhooks"))
        .bearer_auth(&admin)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(hooks["pagination"]["total"], 1);
    let again = http
        .post(format!("{base}/v1/events"))
        .header("x-api-key", &key_value)
        .json(&json!({"id": "evt-graceful", "event": "order.created", "payload": {"n": 1}}))
        .send()
        .await?;
    let again: Value = again.json().await?;
    assert_eq!(again["data"]["duplicate"], true);
    server.terminate()?;
    Ok(())
}

#[tokio::test]
async fn every_202_survives_sigkill() -> TestResult {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let http = reqwest::Client::new();
    let server = Server::start(dir.path(), port)?;
    let secret = server.printed_secret().ok_or("no credentials printed")?;
    let admin = token(&http, &server.base, "admin", &secret).await?;
    let mut accepted = Vec::new();
    for i in 0..50 {
        let reply = http
            .post(format!("{}/v1/events", server.base))
            .bearer_auth(&admin)
            .json(&json!({"id": format!("evt-{i}"), "event": "a.b", "payload": {"i": i}}))
            .send()
            .await?;
        if reply.status() == 202 {
            accepted.push(format!("evt-{i}"));
        }
    }
    assert_eq!(accepted.len(), 50);
    server.kill()?;

    // Every accepted event is on disk (still queued, or already fanned out into deliveries).
    let store = kolbak_core::SqliteStore::open(&dir.path().join("kolbak.db"))?;
    for id in &accepted {
        let event = kolbak_core::Queue::get_event(&store, id).await?;
        assert_eq!(event.map(|e| e.event.id), Some(id.clone()));
    }
    Ok(())
}

#[test]
fn invalid_settings_exit_non_zero_naming_the_setting() -> TestResult {
    let dir = tempfile::tempdir()?;
    for (name, value) in [
        ("KOLBAK_LISTEN", "not-an-address"),
        ("KOLBAK_MAX_PAYLOAD_BYTES", "huge"),
        ("KOLBAK_JWT_SECRET", "short"),
        ("KOLBAK_TOKEN_TTL", "forever"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_kolbak"))
            .arg("standalone")
            .env("KOLBAK_DATA_DIR", dir.path())
            .env(name, value)
            .output()?;
        assert!(!output.status.success(), "{name}={value} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    Ok(())
}

#[test]
fn crdgen_writes_what_the_chart_holds() -> TestResult {
    let dir = tempfile::tempdir()?;
    let status = Command::new(env!("CARGO_BIN_EXE_kolbak"))
        .args(["crdgen", "--out"])
        .arg(dir.path())
        .status()?;
    assert!(status.success());
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/kolbak/crds");
    let mut written = 0;
    for entry in std::fs::read_dir(dir.path())? {
        let entry = entry?;
        let committed = std::fs::read_to_string(chart.join(entry.file_name()))?;
        assert_eq!(
            std::fs::read_to_string(entry.path())?,
            committed,
            "{:?} drifted",
            entry.file_name()
        );
        written += 1;
    }
    assert_eq!(written, 3);
    Ok(())
}
