//! Per-endpoint limits and order for the Kafka dispatcher: each subscription gets a lane with
//! its in-flight limit (a semaphore), its rate limit (a token bucket) and, for `ordered`
//! subscriptions, a turn order; each partition of the events topic gets a turn order too.
//!
//! Order works in two steps. The poll loop takes a partition ticket for every event record, in
//! offset order, before the record's task starts. A task waits for its partition turn, takes a
//! ticket from each `ordered` subscription it delivers to, and gives the partition turn up at
//! once; it then waits for each subscription turn and delivers (retries included) before giving
//! that up. So an ordered subscription gets the events of one partition — which holds every
//! event of an ordering key — one at a time, in offset order, while unordered deliveries and
//! other subscriptions go on around it.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kolbak_core::{Ordering, Subscription};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// A queue of turns: tickets are taken in order and served in order; a ticket given up before
/// its turn is skipped when its turn comes.
#[derive(Debug, Default)]
pub struct Sequencer {
    state: Mutex<SequencerState>,
    turn_changed: Notify,
}

#[derive(Debug, Default)]
struct SequencerState {
    next: u64,
    serving: u64,
    given_up: BTreeSet<u64>,
}

impl Sequencer {
    /// The next ticket.
    pub fn take(self: &Arc<Self>) -> Ticket {
        let mut state = self.lock();
        let number = state.next;
        state.next += 1;
        Ticket {
            sequencer: self.clone(),
            number,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SequencerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn give_up(&self, number: u64) {
        let mut state = self.lock();
        state.given_up.insert(number);
        loop {
            let serving = state.serving;
            if !state.given_up.remove(&serving) {
                break;
            }
            state.serving = serving + 1;
        }
        drop(state);
        self.turn_changed.notify_waiters();
    }
}

/// A place in a [`Sequencer`]'s queue; dropping it gives the turn up.
#[derive(Debug)]
pub struct Ticket {
    sequencer: Arc<Sequencer>,
    number: u64,
}

impl Ticket {
    /// Waits until every earlier ticket has been given up.
    pub async fn wait(&self) {
        loop {
            let changed = self.sequencer.turn_changed.notified();
            if self.sequencer.lock().serving == self.number {
                return;
            }
            changed.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.sequencer.give_up(self.number);
    }
}

/// One subscription's limits.
pub struct Lane {
    in_flight_limit: usize,
    slots: Arc<Semaphore>,
    rate: Option<(u32, DefaultDirectRateLimiter)>,
    order: Arc<Sequencer>,
}

impl Lane {
    /// Waits for a free slot of the endpoint and, when it has a rate limit, for a token; the
    /// permit holds the slot until dropped.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.slots.clone().acquire_owned().await.ok();
        if let Some((_, limiter)) = &self.rate {
            limiter.until_ready().await;
        }
        permit
    }

    /// A place in the subscription's delivery order (ordered subscriptions).
    pub fn order_ticket(&self) -> Ticket {
        self.order.take()
    }
}

/// Every subscription's lane and every events partition's turn order.
pub struct EndpointLanes {
    default_in_flight: usize,
    default_rate: u32,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    partitions: Mutex<HashMap<(String, i32), Arc<Sequencer>>>,
}

impl EndpointLanes {
    /// Lanes whose subscriptions default to `default_in_flight` deliveries at once and
    /// `default_rate` requests per second (0: unlimited).
    pub fn new(default_in_flight: usize, default_rate: u32) -> Self {
        Self {
            default_in_flight,
            default_rate,
            lanes: Mutex::new(HashMap::new()),
            partitions: Mutex::new(HashMap::new()),
        }
    }

    /// The next turn of the events partition `topic`/`partition`; take it in offset order.
    pub fn partition_ticket(&self, topic: &str, partition: i32) -> Ticket {
        let sequencer = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((topic.to_owned(), partition))
            .or_default()
            .clone();
        sequencer.take()
    }

    /// The lane of `subscription`, made anew when its limits changed. Deliveries already
    /// admitted keep the old lane's slots until they finish.
    pub fn lane(&self, subscription: &Subscription) -> Arc<Lane> {
        let in_flight = if subscription.ordering == Ordering::Ordered {
            1
        } else {
            subscription
                .max_in_flight
                .map_or(self.default_in_flight, |n| n as usize)
        };
        let rate = subscription
            .rate_limit_per_second
            .unwrap_or(self.default_rate);
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lane) = lanes.get(&subscription.id)
            && lane.in_flight_limit == in_flight
            && lane.rate.as_ref().map_or(0, |(r, _)| *r) == rate
        {
            return lane.clone();
        }
        let order = lanes
            .get(&subscription.id)
            .map(|lane| lane.order.clone())
            .unwrap_or_default();
        let lane = Arc::new(Lane {
            in_flight_limit: in_flight,
            slots: Arc::new(Semaphore::new(in_flight)),
            rate: NonZeroU32::new(rate)
                .map(|r| (r.get(), RateLimiter::direct(Quota::per_second(r)))),
            order,
        });
        lanes.insert(subscription.id.clone(), lane.clone());
        lane
    }
}

#[cfg(test)]
#[path = "endpoint_lanes_tests.rs"]
mod tests;
