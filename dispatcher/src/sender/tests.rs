//! Tests of [`WebhookSender`] against a real HTTP receiver on `127.0.0.1`.

use std::time::Duration;

use chrono::Utc;

use super::*;
use crate::classify::Outcome;
use crate::signature::{WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP, sign};
use crate::test_support::{Receiver, Reply, sample_event as event};

fn config(allow_private_targets: bool, timeout: Duration) -> DispatcherConfig {
    DispatcherConfig {
        allow_private_targets,
        delivery_timeout: timeout,
        ..DispatcherConfig::default()
    }
}

fn sender(allow_private_targets: bool, timeout: Duration) -> WebhookSender {
    WebhookSender::new(&config(allow_private_targets, timeout))
        .unwrap_or_else(|e| panic!("sender: {e}"))
}

/// A sender allowed to reach the local receiver, with a 5 s timeout.
fn local_sender() -> WebhookSender {
    sender(true, Duration::from_secs(5))
}

async fn send_to(sender: &WebhookSender, url: &str) -> AttemptResult {
    let event = event();
    let body = encode_body(&event).unwrap_or_else(|e| panic!("{e}"));
    let secret = SigningSecret::generate();
    sender.send(url, &event, body, &[&secret], Utc::now()).await
}

#[tokio::test]
async fn success_posts_signed_json() {
    let receiver = Receiver::start(Reply::with("200 OK", &[], b"thanks")).await;
    let event = event();
    let body = encode_body(&event).unwrap_or_else(|e| panic!("{e}"));
    let (current, previous) = (SigningSecret::generate(), SigningSecret::generate());
    let now = Utc::now();
    let result = local_sender()
        .send(
            &receiver.url("/hook"),
            &event,
            body.clone(),
            &[&current, &previous],
            now,
        )
        .await;

    assert_eq!(result.error, None);
    assert_eq!(result.status, Some(200));
    assert_eq!(result.response_body.as_deref(), Some("thanks"));
    assert!(!result.response_body_truncated);
    assert_eq!(result.outcome(), Outcome::Success);
    assert_eq!(result.started_at, now);
    assert!(result.duration < Duration::from_secs(5));

    let captured = receiver.captured();
    assert_eq!(captured.len(), 1);
    let request = &captured[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hook");
    assert_eq!(request.body, body.to_vec());
    let delivered: Event = serde_json::from_slice(&request.body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(delivered, event);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("user-agent"), Some(USER_AGENT));
    assert!(USER_AGENT.starts_with("Kolbak/"));
    assert_eq!(request.header(WEBHOOK_ID), Some(event.id.as_str()));
    let timestamp = now.timestamp().to_string();
    assert_eq!(request.header(WEBHOOK_TIMESTAMP), Some(timestamp.as_str()));
    let expected = sign(&event.id, now.timestamp(), &body, &[&current, &previous]);
    assert_eq!(request.header(WEBHOOK_SIGNATURE), Some(expected.as_str()));
    assert_eq!(expected.split(' ').count(), 2);
}

#[tokio::test]
async fn response_body_is_capped_at_16_kib() {
    let large = vec![b'a'; 100 * 1024];
    let receiver = Receiver::start(Reply::with("200 OK", &[], &large)).await;
    let result = send_to(&local_sender(), &receiver.url("/")).await;
    assert_eq!(result.error, None);
    assert_eq!(result.status, Some(200));
    assert!(result.response_body_truncated);
    assert_eq!(
        result.response_body.as_ref().map(String::len),
        Some(MAX_RESPONSE_BODY_BYTES)
    );
    assert!(result.outcome().is_success());
}

#[tokio::test]
async fn a_body_of_exactly_the_cap_is_not_truncated() {
    let exact = vec![b'b'; MAX_RESPONSE_BODY_BYTES];
    let receiver = Receiver::start(Reply::with("500 Internal Server Error", &[], &exact)).await;
    let result = send_to(&local_sender(), &receiver.url("/")).await;
    assert_eq!(result.status, Some(500));
    assert!(!result.response_body_truncated);
    assert_eq!(
        result.response_body.as_ref().map(String::len),
        Some(MAX_RESPONSE_BODY_BYTES)
    );
    assert!(result.outcome().is_retryable());
}

#[test]
fn a_character_cut_by_the_cap_is_dropped() {
    let body = "xé".as_bytes();
    assert_eq!(lossy_utf8(&body[..2], true), "x");
    assert_eq!(lossy_utf8(body, true), "xé");
    // Untruncated invalid bytes are shown, replaced.
    assert_eq!(lossy_utf8(&body[..2], false), "x\u{fffd}");
    assert_eq!(lossy_utf8(b"a\xffb", true), "a\u{fffd}b");
}

#[tokio::test]
async fn a_stalled_body_times_out_with_the_status_recorded() {
    let reply = Reply {
        response: b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial".to_vec(),
        hold_open: Duration::from_secs(10),
        ..Reply::default()
    };
    let receiver = Receiver::start(reply).await;
    let timeout = Duration::from_millis(300);
    let result = send_to(&sender(true, timeout), &receiver.url("/")).await;
    let error = result.error.clone().unwrap_or_else(|| panic!("{result:?}"));
    assert_eq!(error.kind, AttemptErrorKind::Timeout);
    assert_eq!(error.message, "timed out after 300ms");
    assert_eq!(result.status, Some(200));
    assert_eq!(result.response_body.as_deref(), Some("partial"));
    assert!(result.duration >= timeout, "{:?}", result.duration);
    assert!(
        result.duration < Duration::from_secs(3),
        "{:?}",
        result.duration
    );
    assert!(result.outcome().is_retryable());
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    let reply = Reply {
        delay_before: Duration::from_secs(10),
        ..Reply::with("200 OK", &[], b"late")
    };
    let receiver = Receiver::start(reply).await;
    let result = send_to(
        &sender(true, Duration::from_millis(300)),
        &receiver.url("/"),
    )
    .await;
    assert_eq!(
        result.error.as_ref().map(|e| e.kind),
        Some(AttemptErrorKind::Timeout)
    );
    assert_eq!(result.status, None);
    assert_eq!(result.response_body, None);
    assert!(result.duration < Duration::from_secs(3));
}

#[tokio::test]
async fn redirects_are_recorded_not_followed() {
    let elsewhere = Receiver::start(Reply::with("200 OK", &[], b"")).await;
    let location = format!("location: {}", elsewhere.url("/elsewhere"));
    let receiver = Receiver::start(Reply::with("302 Found", &[&location], b"moved")).await;
    let result = send_to(&local_sender(), &receiver.url("/hook")).await;
    assert_eq!(result.error, None);
    assert_eq!(result.status, Some(302));
    assert_eq!(result.response_body.as_deref(), Some("moved"));
    assert_eq!(
        result.outcome(),
        Outcome::Permanent {
            deactivate_subscription: false
        }
    );
    assert_eq!(receiver.captured().len(), 1);
    assert!(elsewhere.captured().is_empty());
}

#[tokio::test]
async fn retry_after_seconds_and_dates_are_read() {
    let receiver = Receiver::start(Reply::with(
        "503 Service Unavailable",
        &["retry-after: 120"],
        b"",
    ))
    .await;
    let result = send_to(&local_sender(), &receiver.url("/")).await;
    assert_eq!(result.status, Some(503));
    assert_eq!(result.retry_after, Some(Duration::from_secs(120)));
    assert!(result.outcome().is_retryable());

    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(90));
    let header = format!("Retry-After: {date}");
    let receiver = Receiver::start(Reply::with("429 Too Many Requests", &[&header], b"")).await;
    let result = send_to(&local_sender(), &receiver.url("/")).await;
    assert_eq!(result.status, Some(429));
    let wait = result.retry_after.unwrap_or_default();
    assert!(
        wait >= Duration::from_secs(85) && wait <= Duration::from_secs(91),
        "{wait:?}"
    );

    let receiver = Receiver::start(Reply::with(
        "429 Too Many Requests",
        &["retry-after: later"],
        b"",
    ))
    .await;
    assert_eq!(
        send_to(&local_sender(), &receiver.url("/"))
            .await
            .retry_after,
        None
    );
}

#[tokio::test]
async fn gone_asks_for_deactivation() {
    let receiver = Receiver::start(Reply::with("410 Gone", &[], b"")).await;
    let result = send_to(&local_sender(), &receiver.url("/")).await;
    assert_eq!(result.status, Some(410));
    assert!(result.outcome().deactivates_subscription());
}

#[tokio::test]
async fn refused_connections_are_retryable_and_say_so() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    drop(listener);
    let result = send_to(&local_sender(), &format!("http://{addr}/")).await;
    let error = result.error.clone().unwrap_or_else(|| panic!("{result:?}"));
    assert_eq!(error.kind, AttemptErrorKind::Connection);
    assert!(
        error.message.to_lowercase().contains("connection refused"),
        "{}",
        error.message
    );
    assert!(
        error.message.starts_with("connection failed: "),
        "{}",
        error.message
    );
    assert!(
        !error.message.contains(&addr.to_string()),
        "{}",
        error.message
    );
    assert_eq!(result.status, None);
    assert!(result.outcome().is_retryable());
}

#[tokio::test]
async fn private_targets_are_refused_by_literal_and_by_name() {
    let receiver = Receiver::start(Reply::with("200 OK", &[], b"")).await;
    let guarded = sender(false, Duration::from_secs(5));

    let literal = send_to(&guarded, &receiver.url("/")).await;
    let error = literal
        .error
        .clone()
        .unwrap_or_else(|| panic!("{literal:?}"));
    assert_eq!(error.kind, AttemptErrorKind::ForbiddenTarget);
    assert_eq!(
        error.message,
        "forbidden target `127.0.0.1`: loopback address"
    );

    let named = send_to(&guarded, &receiver.localhost_url("/")).await;
    let error = named.error.clone().unwrap_or_else(|| panic!("{named:?}"));
    assert_eq!(error.kind, AttemptErrorKind::ForbiddenTarget);
    assert!(
        error
            .message
            .starts_with("forbidden target `localhost`: resolves only to forbidden addresses"),
        "{}",
        error.message
    );
    for result in [&literal, &named] {
        assert_eq!(
            result.outcome(),
            Outcome::Permanent {
                deactivate_subscription: false
            }
        );
    }
    assert!(receiver.captured().is_empty());

    // The same sender with private targets allowed reaches it by name.
    let allowed = send_to(&local_sender(), &receiver.localhost_url("/")).await;
    assert_eq!(allowed.status, Some(200));
}

#[tokio::test]
async fn unusable_urls_fail_permanently() {
    for url in ["not a url", "ftp://example.com/", "file:///etc/passwd"] {
        let result = send_to(&local_sender(), url).await;
        assert_eq!(
            result.error.as_ref().map(|e| e.kind),
            Some(AttemptErrorKind::InvalidRequest),
            "{url}"
        );
        assert!(!result.outcome().is_retryable());
    }
}

#[test]
fn bodies_are_the_event_json() {
    let event = event();
    let body = encode_body(&event).unwrap_or_else(|e| panic!("{e}"));
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<&str> = value
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys.len(), 5, "{keys:?}");
    for key in ["id", "event", "event_time", "source", "payload"] {
        assert!(keys.contains(&key), "{key}");
    }
}

#[tokio::test]
async fn unresolvable_names_are_retryable_connection_failures() {
    let guarded = sender(false, Duration::from_secs(3));
    let result = send_to(&guarded, "http://nonexistent.invalid/hook").await;
    let error = result.error.clone().unwrap_or_else(|| panic!("{result:?}"));
    // NXDOMAIN normally; a resolver that never answers times out instead. Both retry.
    assert!(
        matches!(
            error.kind,
            AttemptErrorKind::Connection | AttemptErrorKind::Timeout
        ),
        "{error:?}"
    );
    assert!(result.outcome().is_retryable());
}
