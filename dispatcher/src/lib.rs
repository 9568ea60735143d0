//! Kolbak's delivery engine: consumes accepted events, matches subscriptions, signs and sends
//! webhooks, classifies responses, schedules retries and dead letters, and logs every attempt.
//!
//! The engine arrives with the delivery-engine issue; this crate holds its place in the
//! workspace so the layout matches the design from the start.
