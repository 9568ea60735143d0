//! Shared support for the end-to-end tests: a `kolbak standalone` process, an HTTP client
//! that speaks its API, and a real webhook receiver whose answers each test scripts.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the harness"
)]
#![allow(missing_docs, reason = "test support code")]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;
pub type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether a Kolbak process on `port` answers `GET /healthz` with 200.
///
/// A bare TCP connect is not proof: connecting to a free port in the ephemeral range can
/// connect the socket to itself (TCP simultaneous open), and another process may briefly hold
/// the port. Only an HTTP 200 from `/healthz` shows our server is up.
pub fn answers_healthz(port: u16) -> bool {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).is_ok()
        && status_line.starts_with("HTTP/1.1 200")
}

/// Waits until `child` serves `/healthz` on `port`; fails if it exits first or takes over 30 s.
pub fn wait_until_serving(child: &mut Child, port: u16, what: &str) -> Fallible<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers_healthz(port) {
        if let Some(status) = child.try_wait()? {
            return Err(format!("{what} exited early: {status}").into());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("{what} did not start serving on port {port}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Another process on the same port would also answer; ours must still be running.
    if let Some(status) = child.try_wait()? {
        return Err(format!("{what} exited early: {status}").into());
    }
    Ok(())
}

/// A running `kolbak standalone`.
pub struct Server {
    child: Child,
    pub base: String,
    pub stdout: Vec<String>,
}

impl Server {
    /// Starts with generated admin credentials (none configured).
    pub fn start(data_dir: &Path, port: u16) -> Fallible<Self> {
        Self::start_with(
            data_dir,
            port,
            &[
                ("KOLBAK_ADMIN_CLIENT_ID", ""),
                ("KOLBAK_ADMIN_CLIENT_SECRET", ""),
            ],
        )
    }

    /// Starts with the admin from [`ADMIN_SECRET`], private targets allowed, and `env` on top
    /// (an empty value removes a variable).
    pub fn start_with(data_dir: &Path, port: u16, env: &[(&str, &str)]) -> Fallible<Self> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kolbak"));
        command
            .arg("standalone")
            .env("KOLBAK_LISTEN", format!("127.0.0.1:{port}"))
            .env("KOLBAK_DATA_DIR", data_dir)
            .env("KOLBAK_LOG_FORMAT", "json")
            .env("KOLBAK_ADMIN_CLIENT_ID", "admin")
            .env("KOLBAK_ADMIN_CLIENT_SECRET", ADMIN_SECRET)
            .env("KOLBAK_ALLOW_PRIVATE_TARGETS", "true")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (name, value) in env {
            if value.is_empty() {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        let mut child = command.spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        wait_until_serving(&mut child, port, "kolbak standalone")?;
        let mut stdout = Vec::new();
        if let Some(out) = child.stdout.take() {
            let mut reader = BufReader::new(out);
            let mut first = String::new();
            if reader.read_line(&mut first)? > 0 && first.starts_with("Generated admin credentials")
            {
                stdout.push(first);
                for _ in 0..2 {
                    let mut line = String::new();
                    reader.read_line(&mut line)?;
                    stdout.push(line);
                }
            }
        }
        Ok(Self {
            child,
            base,
            stdout,
        })
    }

    pub fn printed_secret(&self) -> Option<String> {
        self.stdout.iter().find_map(|l| {
            l.trim()
                .strip_prefix("client_secret:")
                .map(|s| s.trim().to_owned())
        })
    }

    pub fn terminate(mut self) -> Fallible<std::process::ExitStatus> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
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

    pub fn kill(mut self) -> std::io::Result<()> {
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

pub const ADMIN_SECRET: &str = "admin-secret-for-end-to-end-tests";

/// A client of one Kolbak instance, authenticated as the admin.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Client {
    pub async fn connect(base: &str, client_id: &str, secret: &str) -> Fallible<Self> {
        let http = reqwest::Client::new();
        let reply: Value = http
            .post(format!("{base}/v1/auth"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = reply["access_token"]
            .as_str()
            .ok_or("no access_token")?
            .to_owned();
        Ok(Self {
            http,
            base: base.to_owned(),
            token,
        })
    }

    pub async fn admin(base: &str) -> Fallible<Self> {
        Self::connect(base, "admin", ADMIN_SECRET).await
    }

    /// Sends a request; returns (status, JSON body or Null).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Fallible<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str) -> Fallible<Value> {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {body}").into());
        }
        Ok(body)
    }

    pub async fn post(&self, path: &str, body: Value) -> Fallible<(u16, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates a subscription; returns (id, secret).
    pub async fn subscribe(&self, body: Value) -> Fallible<(String, String)> {
        let (status, reply) = self.post("/v1/webhooks", body).await?;
        if status != 201 {
            return Err(format!("create webhook: {status} {reply}").into());
        }
        Ok((
            reply["data"]["id"].as_str().ok_or("no id")?.to_owned(),
            reply["data"]["secret"]
                .as_str()
                .ok_or("no secret")?
                .to_owned(),
        ))
    }

    pub async fn publish(&self, body: Value) -> Fallible<String> {
        let (status, reply) = self.post("/v1/events", body).await?;
        if status != 202 {
            return Err(format!("publish: {status} {reply}").into());
        }
        Ok(reply["data"]["id"].as_str().ok_or("no id")?.to_owned())
    }

    /// Polls the event's deliveries until `done` holds or the deadline passes.
    pub async fn wait_for_deliveries(
        &self,
        event_id: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Fallible<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let reply = self
                .get(&format!("/v1/events/{event_id}/deliveries?limit=100"))
                .await?;
            let items = reply["data"].as_array().cloned().unwrap_or_default();
            if done(&items) {
                return Ok(items);
            }
            if Instant::now() > deadline {
                return Err(format!("deliveries of {event_id} never settled: {items:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /v1/deliveries/{id}` once its attempts satisfy `done`. The Cassandra log writes an
    /// attempt's row after the delivery's new state, so for a moment the state can be ahead of
    /// the attempts listed.
    pub async fn wait_for_attempts(
        &self,
        delivery_id: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Fallible<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let detail = self.get(&format!("/v1/deliveries/{delivery_id}")).await?;
            let attempts = detail["data"]["attempts"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if done(&attempts) {
                return Ok(detail);
            }
            if Instant::now() > deadline {
                return Err(format!("attempts of {delivery_id} never settled: {detail}").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A scripted answer.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub status: u16,
    pub delay: Duration,
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    scripts: HashMap<String, VecDeque<Answer>>,
    defaults: HashMap<String, Answer>,
}

/// A real HTTP server that records every webhook and answers as scripted per path
/// (default 200 at once).
#[derive(Clone)]
pub struct Receiver {
    state: Arc<Mutex<ReceiverState>>,
    pub base: String,
}

impl Receiver {
    pub async fn start() -> Fallible<Self> {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = axum::Router::new()
            .route("/{*path}", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { state, base })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// The next answers for `path`, in order; then `default_for` (or 200).
    pub fn script(&self, path: &str, answers: &[Answer]) {
        if let Ok(mut state) = self.state.lock() {
            state
                .scripts
                .entry(path.to_owned())
                .or_default()
                .extend(answers.iter().copied());
        }
    }

    pub fn default_for(&self, path: &str, answer: Answer) {
        if let Ok(mut state) = self.state.lock() {
            state.defaults.insert(path.to_owned(), answer);
        }
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .lock()
            .map(|s| {
                s.received
                    .iter()
                    .filter(|r| r.path == path)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub async fn wait_for(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
    ) -> Fallible<Vec<Received>> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received(path);
            if got.len() >= count {
                return Ok(got);
            }
            if Instant::now() > deadline {
                return Err(format!("{path}: got {} of {count} requests", got.len()).into());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub fn answer(status: u16) -> Answer {
    Answer {
        status,
        delay: Duration::ZERO,
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let answer = {
        let Ok(mut state) = state.lock() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
        };
        state.received.push(Received {
            path: path.clone(),
            headers,
            body,
            at: Instant::now(),
        });
        let scripted = state.scripts.get_mut(&path).and_then(VecDeque::pop_front);
        scripted
            .or_else(|| state.defaults.get(&path).copied())
            .unwrap_or(answer(200))
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    (status, json!({"received": true}).to_string())
}
