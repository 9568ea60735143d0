//! Helpers for tests of cluster mode: the real Kafka broker and Cassandra node that
//! `scripts/kafka.sh` and `scripts/cassandra.sh` run, and `kolbak ingress` / `kolbak dispatcher`
//! processes. Used by test files that also declare `mod harness;`.
#![allow(dead_code, reason = "each test file uses a different part")]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kolbak_core::kafka::KafkaConfig;
use kolbak_core::kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use kolbak_core::kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::harness::{ADMIN_SECRET, Fallible, TestResult, free_port, wait_until_serving};

/// The token key every process of a test cluster shares.
pub const JWT_SECRET: &str = "cluster-tests-jwt-secret-0123456789abcdef";
/// The broker `scripts/kafka.sh` runs.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// `KOLBAK_KAFKA_BROKERS`, default [`DEFAULT_BROKERS`].
pub fn brokers() -> String {
    std::env::var("KOLBAK_KAFKA_BROKERS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BROKERS.to_owned())
}

/// `KOLBAK_CASSANDRA_NODES`, default `127.0.0.1:9042`.
pub fn cassandra_nodes() -> String {
    std::env::var("KOLBAK_CASSANDRA_NODES")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:9042".to_owned())
}

/// `true` when the first address of `addresses` accepts connections; fails under `CI=true`
/// when it does not (a missing service is a failure there, never a skip).
pub fn service_up(what: &str, addresses: &str, start_with: &str) -> bool {
    let up = addresses
        .split(',')
        .next()
        .and_then(|b| b.trim().parse::<std::net::SocketAddr>().ok())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
        });
    if !up {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no {what} at {addresses} (start it with {start_with})"
        );
        eprintln!("note: no {what} at {addresses}; skipping ({start_with})");
    }
    up
}

/// `true` when the Kafka broker is up (see [`service_up`]).
pub fn broker_up(brokers: &str) -> bool {
    service_up("Kafka broker", brokers, "scripts/kafka.sh up")
}

/// Runs `scripts/<script> <action>` and fails when it does.
pub fn run_script(script: &str, action: &str) -> TestResult {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(script);
    let output = Command::new("bash").arg(path).arg(action).output()?;
    if !output.status.success() {
        return Err(format!(
            "scripts/{script} {action} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

/// A Cassandra keyspace of one test, created by `kolbak migrate` and dropped when the value is
/// dropped: every keyspace costs the node heap, and test runs must not wear it out.
pub struct TestKeyspace {
    pub name: String,
}

impl TestKeyspace {
    /// Creates and migrates a fresh keyspace.
    pub fn migrated() -> Fallible<Self> {
        let name = format!("kolbak_k_{}", kolbak_core::id::new_id());
        let migrated = Command::new(env!("CARGO_BIN_EXE_kolbak"))
            .args(["migrate", "--cassandra-keyspace", &name])
            .env("KOLBAK_CASSANDRA_NODES", cassandra_nodes())
            .env("KOLBAK_LOG_FORMAT", "json")
            .status()?;
        if !migrated.success() {
            return Err("kolbak migrate failed".into());
        }
        Ok(Self { name })
    }
}

impl Drop for TestKeyspace {
    /// Best effort, within 30 s: a keyspace left behind only costs the node memory. On a
    /// thread of its own, since this may run inside the test's runtime.
    fn drop(&mut self) {
        let drop = format!("DROP KEYSPACE IF EXISTS {}", self.name);
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let nodes: Vec<String> = cassandra_nodes().split(',').map(str::to_owned).collect();
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    let session = scylla::client::session_builder::SessionBuilder::new()
                        .known_nodes(&nodes)
                        .build()
                        .await;
                    if let Ok(session) = session
                        && session.query_unpaged(drop.as_str(), &[]).await.is_ok()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        });
        let _ = dropping.join();
    }
}

/// A running `kolbak <subcommand>`; killed when dropped. Its output goes to `log`.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
    /// `http://127.0.0.1:<port>` when it listens.
    pub base: String,
}

impl Process {
    /// Starts `kolbak <subcommand>` with the cluster's shared settings and `env` on top (an
    /// empty value removes a variable), logging to `<dir>/<name>.log`. With `listen`, waits
    /// until it accepts connections.
    pub fn start(
        subcommand: &str,
        name: &str,
        dir: &Path,
        listen: bool,
        env: &[(&str, &str)],
    ) -> Fallible<Self> {
        let port = free_port()?;
        let log = dir.join(format!("{name}.log"));
        File::create(&log)?;
        let append = || File::options().append(true).open(&log);
        let mut command = Command::new(env!("CARGO_BIN_EXE_kolbak"));
        command
            .arg(subcommand)
            .env("KOLBAK_LISTEN", format!("127.0.0.1:{port}"))
            .env("KOLBAK_DATA_DIR", dir)
            .env("KOLBAK_REGISTRY", "sqlite")
            .env("KOLBAK_LOG_FORMAT", "json")
            .env("KOLBAK_ADMIN_CLIENT_ID", "admin")
            .env("KOLBAK_ADMIN_CLIENT_SECRET", ADMIN_SECRET)
            .env("KOLBAK_JWT_SECRET", JWT_SECRET)
            .env("KOLBAK_ALLOW_PRIVATE_TARGETS", "true")
            .env("KOLBAK_KAFKA_BROKERS", brokers())
            .env("KOLBAK_CASSANDRA_NODES", cassandra_nodes())
            .stdin(Stdio::null())
            .stdout(append()?)
            .stderr(append()?);
        for (name, value) in env {
            if value.is_empty() {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        let mut child = command.spawn()?;
        if listen {
            let what = format!("kolbak {subcommand}");
            if let Err(error) = wait_until_serving(&mut child, port, &what) {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("{error}\n{output}").into());
            }
        }
        if !listen {
            std::thread::sleep(Duration::from_millis(300));
            if let Some(status) = child.try_wait()? {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("kolbak {subcommand} exited early: {status}\n{output}").into());
            }
        }
        Ok(Self {
            child,
            log,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The status of `GET /readyz`.
    pub async fn ready_status(&self) -> Fallible<u16> {
        let response = reqwest::get(format!("{}/readyz", self.base)).await?;
        Ok(response.status().as_u16())
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) -> TestResult {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ready_status().await? != 200 {
            if Instant::now() > deadline {
                return Err(format!("never became ready:\n{}", self.output()).into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Waits until its output contains `text`.
    pub async fn wait_for_output(&self, text: &str, timeout: Duration) -> TestResult {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(text) {
            if Instant::now() > deadline {
                return Err(format!("no `{text}` in the output:\n{}", self.output()).into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> Fallible<std::process::ExitStatus> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(format!("did not stop on SIGTERM:\n{}", self.output()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (key, value) of the records on `topic`, read from the beginning until `done` holds for
/// what was read (within 30 s).
pub async fn read_topic_until(
    brokers: &str,
    topic: &str,
    done: impl Fn(&[(String, Vec<u8>)]) -> bool,
) -> Fallible<Vec<(String, Vec<u8>)>> {
    let kafka = KafkaConfig {
        kafka_brokers: brokers.to_owned(),
        ..KafkaConfig::default()
    };
    let mut config: ClientConfig = kafka.client_config();
    config
        .set(
            "group.id",
            format!("test-reader-{}", kolbak_core::id::new_id()),
        )
        .set("enable.auto.commit", "false");
    let consumer: StreamConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    for t in metadata.topics() {
        for p in t.partitions() {
            assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let mut found = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(&found) {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .map_err(|_| format!("{} records on {topic}, not the ones expected", found.len()))??;
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        found.push((key, message.payload().unwrap_or_default().to_vec()));
    }
    Ok(found)
}

/// `env` as borrowed pairs, then `extra` (for [`Process::start`]).
pub fn borrow<'a>(
    env: &'a [(&'static str, String)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    all
}
