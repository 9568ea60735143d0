//! Unit tests of turn order and lane limits.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kolbak_core::subscription::{EventPattern, SigningSecrets};
use kolbak_core::{Ordering, SigningSecret, Subscription};

use super::*;

fn subscription(ordering: Ordering, max_in_flight: Option<u32>) -> Subscription {
    Subscription {
        id: "01sub".into(),
        callback_url: "https://example.com/".into(),
        event: EventPattern::parse("*").unwrap_or_else(|e| panic!("{e}")),
        description: None,
        is_active: true,
        pool: "default".into(),
        rate_limit_per_second: None,
        max_in_flight,
        ordering,
        secrets: SigningSecrets::new(SigningSecret::generate()),
        deactivation: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

#[tokio::test]
async fn turns_are_served_in_ticket_order_whatever_order_tasks_run_in() {
    let sequencer = Arc::new(Sequencer::default());
    let tickets: Vec<Ticket> = (0..20).map(|_| sequencer.take()).collect();
    let served = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    // Started last-ticket-first, each after a different pause.
    for (n, ticket) in tickets.into_iter().enumerate().rev() {
        let served = served.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((n as u64 * 7) % 5)).await;
            ticket.wait().await;
            served
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(n);
        }));
    }
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let served = served
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert_eq!(served, (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_ticket_given_up_early_is_skipped_in_its_turn() {
    let sequencer = Arc::new(Sequencer::default());
    let first = sequencer.take();
    let second = sequencer.take();
    let third = sequencer.take();
    drop(second);
    let waiting = tokio::spawn(async move {
        third.wait().await;
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !waiting.is_finished(),
        "the third turn came before the first ended"
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .unwrap_or_else(|_| panic!("the third turn never came"))
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn lanes_limit_deliveries_in_flight_per_subscription() {
    let lanes = EndpointLanes::new(16, 0);
    let ordered = lanes.lane(&subscription(Ordering::Ordered, Some(8)));
    let first = ordered.admit().await;
    assert!(first.is_some());
    let blocked = tokio::time::timeout(Duration::from_millis(50), ordered.admit()).await;
    assert!(
        blocked.is_err(),
        "an ordered subscription admitted two at once"
    );

    let limited = lanes.lane(&subscription(Ordering::Unordered, Some(2)));
    let a = limited.admit().await;
    let b = limited.admit().await;
    assert!(a.is_some() && b.is_some());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), limited.admit())
            .await
            .is_err()
    );
    drop(a);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), limited.admit())
            .await
            .is_ok()
    );
    // Same limits: the same lane; new limits: a new one.
    let same = lanes.lane(&subscription(Ordering::Unordered, Some(2)));
    assert!(Arc::ptr_eq(&same, &limited));
    let wider = lanes.lane(&subscription(Ordering::Unordered, Some(3)));
    assert!(!Arc::ptr_eq(&wider, &limited));
}

#[tokio::test]
async fn a_rate_limit_spaces_requests() {
    let lanes = EndpointLanes::new(16, 0);
    let mut limited = subscription(Ordering::Unordered, None);
    limited.rate_limit_per_second = Some(5);
    let lane = lanes.lane(&limited);
    let started = tokio::time::Instant::now();
    for _ in 0..8 {
        drop(lane.admit().await);
    }
    // A bucket of 5 per second: the burst of 5 passes, the next three wait ~200 ms each.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}
