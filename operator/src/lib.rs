//! Kolbak's Kubernetes operator: kube-runtime controllers that reconcile WebhookSubscription,
//! ApiKey and DispatcherPool objects.
//!
//! The controllers arrive with the operator issue; this crate holds its place in the workspace
//! so the layout matches the design from the start.
