//! A tiny scriptable HTTP/1.1 receiver on `127.0.0.1:0` for the sender and guard tests: it
//! records every request (method, path, headers, raw body) and answers each with the same
//! canned bytes, optionally stalling before answering or before closing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kolbak_core::Event;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// An event with every field set and non-ASCII text in its payload.
pub(crate) fn sample_event() -> Event {
    Event {
        id: "evt_01hx3k9qa1".into(),
        event: "order.created".into(),
        event_time: Utc::now(),
        source: Some("shop".into()),
        payload: json!({"order": 42, "note": "naïve café ✓"}),
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    /// Request method, e.g. `POST`.
    pub method: String,
    /// Request target, e.g. `/hook`.
    pub path: String,
    /// Header names (lowercase) and values, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The raw body, byte for byte.
    pub body: Vec<u8>,
}

impl Captured {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reply {
    /// Raw response bytes (status line, headers, body).
    pub response: Vec<u8>,
    /// Wait this long before writing anything.
    pub delay_before: Duration,
    /// Keep the connection open this long after writing, before closing.
    pub hold_open: Duration,
}

impl Reply {
    /// A complete response with `status`, extra header lines and `body`.
    pub fn with(status: &str, extra_headers: &[&str], body: &[u8]) -> Self {
        let mut head = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
        for line in extra_headers {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let mut response = head.into_bytes();
        response.extend_from_slice(body);
        Self {
            response,
            ..Self::default()
        }
    }
}

/// A running receiver; stops when dropped.
pub(crate) struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    captured: Arc<Mutex<Vec<Captured>>>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Binds `127.0.0.1:0` and answers every request with `reply`.
    pub async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local addr: {e}"));
        let captured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&captured);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = Arc::clone(&sink);
                let reply = reply.clone();
                tokio::spawn(async move { serve(stream, sink, reply).await });
            }
        });
        Self {
            addr,
            captured,
            task,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://localhost:<port><path>`: the same receiver behind a name resolving to loopback.
    pub fn localhost_url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.addr.port())
    }

    /// Every request received so far.
    pub fn captured(&self) -> Vec<Captured> {
        self.captured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, sink: Arc<Mutex<Vec<Captured>>>, reply: Reply) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    sink.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(request);
    tokio::time::sleep(reply.delay_before).await;
    // The client may hang up early (body cap, timeout); that is part of some tests.
    let _ = stream.write_all(&reply.response).await;
    let _ = stream.flush().await;
    tokio::time::sleep(reply.hold_open).await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Captured> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Captured {
        method,
        path,
        headers,
        body,
    })
}
