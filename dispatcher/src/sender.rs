//! Sending one signed webhook: the pooled HTTP client and the attempt it records.
//!
//! One [`WebhookSender`] holds one `reqwest` client (rustls, HTTP/1.1 and HTTP/2 via ALPN,
//! connection pooling) built with the SSRF [`GuardedResolver`], no redirect following, no
//! proxy, and an overall timeout covering the whole exchange including reading the response
//! body. The body is read chunk by chunk and reading stops at
//! [`MAX_RESPONSE_BODY_BYTES`]; nothing beyond it is ever buffered.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use kolbak_core::{Event, SigningSecret};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, redirect};
use tokio::time::Instant;
use url::Url;

use crate::attempt::{AttemptError, AttemptErrorKind, AttemptResult};
use crate::config::{DispatcherConfig, MAX_RESPONSE_BODY_BYTES};
use crate::error::{Error, Result};
use crate::retry_after::parse_retry_after;
use crate::signature::SignedHeaders;
use crate::target_guard::{GuardedResolver, check_url, forbidden_target_in};

/// The `user-agent` of every delivery: `Kolbak/<version>`.
pub const USER_AGENT: &str = concat!("Kolbak/", env!("CARGO_PKG_VERSION"));
/// Longest wait for a TCP (and TLS) connection, capped by the delivery timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON delivery body of `event` (`id`, `event`, `event_time`, `source`, `payload`).
/// Encode once per event and share the bytes across its deliveries; cloning [`Bytes`] is cheap.
pub fn encode_body(event: &Event) -> Result<Bytes> {
    serde_json::to_vec(event)
        .map(Bytes::from)
        .map_err(Error::Encoding)
}

/// Sends signed webhooks over one pooled HTTP client. Cheap to share behind an `Arc`; the
/// client is internally reference counted, so cloning is cheap too.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: Client,
    timeout: Duration,
    allow_private_targets: bool,
}

impl WebhookSender {
    /// Builds the client from `config` (`delivery_timeout`, `allow_private_targets`). The
    /// config is not validated here, so tests may use sub-second timeouts.
    pub fn new(config: &DispatcherConfig) -> Result<Self> {
        let timeout = config.delivery_timeout;
        let client = Client::builder()
            .user_agent(USER_AGENT)
            .redirect(redirect::Policy::none())
            .no_proxy()
            .dns_resolver(GuardedResolver::new(config.allow_private_targets))
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Self {
            client,
            timeout,
            allow_private_targets: config.allow_private_targets,
        })
    }

    /// The limit on one whole attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs `body` (the encoded `event`, see [`encode_body`]) to `url` with
    /// `content-type: application/json` and the Standard Webhooks headers — `webhook-id` is the
    /// event id, `webhook-timestamp` is `now`, and `webhook-signature` carries one signature
    /// per secret in `secrets` (pass `SigningSecrets::valid_at(now)`). Never fails: every
    /// problem is recorded in the returned [`AttemptResult`].
    pub async fn send(
        &self,
        url: &str,
        event: &Event,
        body: Bytes,
        secrets: &[&SigningSecret],
        now: DateTime<Utc>,
    ) -> AttemptResult {
        let started = Instant::now();
        let failed =
            |kind, message: String| AttemptResult::failed(now, started.elapsed(), kind, message);
        let url = match Url::parse(url) {
            Ok(url) => url,
            Err(e) => {
                return failed(
                    AttemptErrorKind::InvalidRequest,
                    format!("invalid callback URL: {e}"),
                );
            }
        };
        if let Err(e) = check_url(&url, self.allow_private_targets) {
            let kind = match e {
                Error::ForbiddenTarget { .. } => AttemptErrorKind::ForbiddenTarget,
                _ => AttemptErrorKind::InvalidRequest,
            };
            return failed(kind, e.to_string());
        }
        let signed = SignedHeaders::new(&event.id, now.timestamp(), &body, secrets);
        let headers = match signed.header_map() {
            Ok(headers) => headers,
            Err(e) => return failed(AttemptErrorKind::InvalidRequest, e.to_string()),
        };
        let request = self
            .client
            .post(url)
            .headers(headers)
            .header(CONTENT_TYPE, "application/json")
            .body(body);

        let mut response = Received::default();
        let received_at = SystemTime::from(now);
        let outcome = tokio::time::timeout(
            self.timeout,
            exchange(request, &mut response, received_at, started),
        )
        .await;
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(describe(&e, self.timeout)),
            Err(_elapsed) => Some(AttemptError {
                kind: AttemptErrorKind::Timeout,
                message: timed_out(self.timeout),
            }),
        };
        AttemptResult {
            started_at: now,
            duration: started.elapsed(),
            status: response.status,
            response_body: response
                .status
                .map(|_| lossy_utf8(&response.body, response.truncated)),
            response_body_truncated: response.truncated,
            retry_after: response.retry_after,
            error,
        }
    }
}

/// What arrived of the response so far; filled in as the exchange progresses, so a timeout
/// still reports the status and the partial body.
#[derive(Debug, Default)]
struct Received {
    status: Option<u16>,
    retry_after: Option<Duration>,
    body: Vec<u8>,
    truncated: bool,
}

async fn exchange(
    request: RequestBuilder,
    received: &mut Received,
    sent_at: SystemTime,
    started: Instant,
) -> reqwest::Result<()> {
    let mut response = request.send().await?;
    received.status = Some(response.status().as_u16());
    received.retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, sent_at + started.elapsed()));
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BODY_BYTES - received.body.len();
        if chunk.len() > room {
            received.body.extend_from_slice(&chunk[..room]);
            received.truncated = true;
            // Dropping the response closes the connection instead of draining the rest.
            break;
        }
        received.body.extend_from_slice(&chunk);
    }
    Ok(())
}

/// The body as text; when the cap cut a multi-byte character, its incomplete start is dropped
/// rather than shown as a replacement character.
fn lossy_utf8(body: &[u8], truncated: bool) -> String {
    let mut end = body.len();
    if truncated
        && let Err(e) = std::str::from_utf8(body)
        && e.error_len().is_none()
    {
        end = e.valid_up_to();
    }
    String::from_utf8_lossy(&body[..end]).into_owned()
}

fn timed_out(timeout: Duration) -> String {
    format!("timed out after {}", humantime::format_duration(timeout))
}

/// Turns a client error into the attempt's error kind and log text. The text leaves out the
/// URL (the log shows it already) and keeps the chain of causes, e.g.
/// `connection failed: client error (Connect): tcp connect error: Connection refused (os error 111)`.
fn describe(error: &reqwest::Error, timeout: Duration) -> AttemptError {
    if let Some(forbidden) = forbidden_target_in(error) {
        return AttemptError {
            kind: AttemptErrorKind::ForbiddenTarget,
            message: forbidden.to_string(),
        };
    }
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let chain = causes.join(": ");
    let (kind, message) = if error.is_timeout() {
        let what = if error.is_connect() {
            "connection timed out"
        } else {
            "timed out"
        };
        let limit = if error.is_connect() {
            CONNECT_TIMEOUT.min(timeout)
        } else {
            timeout
        };
        (
            AttemptErrorKind::Timeout,
            format!("{what} after {}", humantime::format_duration(limit)),
        )
    } else if error.is_connect() {
        (
            AttemptErrorKind::Connection,
            format!("connection failed: {chain}"),
        )
    } else {
        let what = if error.is_body() || error.is_decode() {
            "reading the response failed"
        } else {
            "request failed"
        };
        let detail = if chain.is_empty() {
            error.to_string()
        } else {
            chain
        };
        (AttemptErrorKind::Transport, format!("{what}: {detail}"))
    };
    AttemptError { kind, message }
}

#[cfg(test)]
mod tests;
