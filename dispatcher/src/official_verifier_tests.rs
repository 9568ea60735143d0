//! Consumers' view: deliveries captured on the wire verify with the official Standard Webhooks
//! Python package (`standardwebhooks`), run through `tests/verifier.py`.
//!
//! In CI (`CI=true`) a missing `python3` or package fails the test; elsewhere the test prints a
//! note and passes, so a laptop without the package can still run the suite.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use kolbak_core::SigningSecret;

use crate::config::DispatcherConfig;
use crate::sender::{WebhookSender, encode_body};
use crate::test_support::{Captured, Receiver, Reply, sample_event};

fn verifier_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verifier.py")
}

/// True when the official package can be imported; panics in CI when it cannot.
fn official_package_available() -> bool {
    let available = Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if !available {
        let message = "python3 with the `standardwebhooks` package is required \
                       (pip install standardwebhooks)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}");
        }
        eprintln!("note: skipping the official verifier test: {message}");
    }
    available
}

/// Runs the official verifier on a captured request; `Ok` when it verified, `Err(output)` when
/// it rejected it. Panics when the script could not run at all.
fn verify(dir: &Path, request: &Captured, body: &[u8], secret: &str) -> Result<(), String> {
    let body_path = dir.join("body.bin");
    let headers_path = dir.join("headers.json");
    let headers: BTreeMap<&str, &str> = request
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let headers_json = serde_json::to_vec(&headers).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&body_path, body).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&headers_path, headers_json).unwrap_or_else(|e| panic!("{e}"));
    let output = Command::new("python3")
        .arg(verifier_script())
        .arg(&body_path)
        .arg(&headers_path)
        .arg(secret)
        .output()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    match output.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(text),
        _ => panic!("verifier.py failed to run: {text}"),
    }
}

#[tokio::test]
async fn deliveries_verify_with_the_official_python_package() {
    if !official_package_available() {
        return;
    }
    let receiver = Receiver::start(Reply::with("204 No Content", &[], b"")).await;
    let sender = WebhookSender::new(&DispatcherConfig {
        allow_private_targets: true,
        delivery_timeout: Duration::from_secs(5),
        ..DispatcherConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let event = sample_event();
    let body = encode_body(&event).unwrap_or_else(|e| panic!("{e}"));
    let current = SigningSecret::generate();
    let previous = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap_or_else(|e| panic!("{e}"));
    let result = sender
        .send(
            &receiver.url("/hook"),
            &event,
            body,
            &[&current, &previous],
            Utc::now(),
        )
        .await;
    assert!(result.outcome().is_success(), "{result:?}");
    let captured = receiver.captured();
    let [request] = captured.as_slice() else {
        panic!("expected one request, got {captured:?}")
    };

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Both the current and the still-valid previous secret verify the same delivery.
    for secret in [&current, &previous] {
        if let Err(output) = verify(dir.path(), request, &request.body, secret.expose()) {
            panic!("the official verifier rejected our delivery: {output}");
        }
    }
    // And the verifier is not a rubber stamp: a stranger's secret or a changed body fail.
    let stranger = SigningSecret::generate();
    assert!(verify(dir.path(), request, &request.body, stranger.expose()).is_err());
    let mut tampered = request.body.clone();
    tampered.push(b' ');
    assert!(verify(dir.path(), request, &tampered, current.expose()).is_err());
}
