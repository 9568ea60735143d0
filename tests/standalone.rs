//! End-to-end tests of the `kolbak` binary: real processes, real sockets, real files. They
//! start `kolbak standalone`, drive it over HTTP, stop it with SIGTERM or SIGKILL, and check
//! what survived.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A running `kolbak standalone`.
struct Server {
    child: Child,
    base: String,
    stdout: Vec<String>,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    fn start(data_dir: &Path, port: u16) -> Result<Self, Box<dyn std::error::Error>> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kolbak"))
            .arg("standalone")
            .env("KOLBAK_LISTEN", format!("127.0.0.1:{port}"))
            .env("KOLBAK_DATA_DIR", data_dir)
            .env("KOLBAK_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("kolbak standalone did not start listening".into());
            }
            if let Some(status) = child.try_wait()? {
                return Err(format!("kolbak standalone exited early: {status}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Generated credentials are printed before the listener opens.
        let mut stdout = Vec::new();
        if let Some(out) = child.stdout.take() {
            let mut reader = BufReader::new(out);
            let mut line = String::new();
            let mut first = String::new();
            if reader.read_line(&mut first)? > 0 && first.starts_with("Generated admin credentials")
            {
                stdout.push(first);
                for _ in 0..2 {
                    line.clear();
                    reader.read_line(&mut line)?;
                    stdout.push(line.clone());
                }
            }
        }
        Ok(Self {
            child,
            base,
            stdout,
        })
    }

    fn printed_secret(&self) -> Option<String> {
        self.stdout.iter().find_map(|l| {
            l.trim()
                .strip_prefix("client_secret:")
                .map(|s| s.trim().to_owned())
        })
    }

    fn terminate(mut self) -> Result<std::process::ExitStatus, Box<dyn std::error::Error>> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err("kolbak did not stop on SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

    let store = kolbak_core::SqliteStore::open(&dir.path().join("kolbak.db"))?;
    let queued: Vec<String> = store
        .queued_events(0, 1000)
        .await?
        .into_iter()
        .map(|q| q.event.event.id)
        .collect();
    assert_eq!(queued, accepted);
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
