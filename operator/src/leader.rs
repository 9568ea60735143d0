//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! exactly one reconciles at a time.
//!
//! The protocol is client-go's, kept small:
//! - Every replica reads the Lease every `retry_period` (2 s). The holder writes `renewTime`
//!   with a `replace` that carries the `resourceVersion` it read, so of two concurrent writers
//!   one gets 409 Conflict and loses.
//! - A replica may take the Lease when it is absent (create), has no holder (released), or its
//!   record has not changed for `lease_duration` (15 s) *as measured by this replica's own
//!   clock* from when it first saw that record — clocks of different machines are never
//!   compared. Taking it sets the holder, `acquireTime` and increments `leaseTransitions`.
//! - The leader renews every `retry_period`; if no renewal succeeds within `renew_deadline`
//!   (10 s, less than `lease_duration`), or another holder shows up, it stops leading
//!   ([`Error::LeadershipLost`]) before anyone else may take over. The operator then exits and
//!   is restarted as a follower, which is the simplest way to be sure no reconcile is still
//!   running.
//! - On a clean shutdown the leader releases the Lease (clears the holder), so a standby takes
//!   over within `retry_period` instead of `lease_duration`.
//!
//! Needs `get`, `create` and `update` on `leases` in the Lease's namespace.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::owned::{FIELD_MANAGER, labels};

/// Where the Lease is, who this replica is, and the timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Name of the Lease.
    pub name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This replica's identity (the Pod name); written as `holderIdentity`.
    pub identity: String,
    /// How long a Lease whose record does not change stays taken. Default 15 s.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal. Default 10 s.
    pub renew_deadline: Duration,
    /// Time between two attempts to acquire or renew. Default 2 s.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Settings with the default timings (15 s / 10 s / 2 s).
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The `resourceVersion` of another holder's record, and when this replica first saw it.
    observed: Option<(String, Instant)>,
}

impl LeaderElector {
    /// An elector for the Lease described by `settings`.
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// One attempt: reads the Lease and creates, takes over or renews it if allowed.
    /// Returns whether this replica holds the Lease afterwards.
    ///
    /// # Errors
    /// A failed request other than a lost race (409), which counts as not holding it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let name = self.settings.name.clone();
        let existing = self
            .api
            .get_opt(&name)
            .await
            .map_err(Error::kube(self.action("get")))?;
        let Some(lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    namespace: Some(self.settings.namespace.clone()),
                    labels: Some(labels("operator")),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    lease_transitions: Some(0),
                    ..self.taken(&LeaseSpec::default())
                }),
            };
            return lost_race_is_false(
                self.api.create(&post_params(), &lease).await,
                self.action("create"),
            );
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let new_spec = match holder {
            Some(holder) if holder == self.settings.identity => {
                self.observed = None;
                LeaseSpec {
                    renew_time: Some(now()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    ..spec
                }
            }
            Some(_) if !self.expired(&lease, &spec) => return Ok(false),
            _ => self.taken(&spec),
        };
        let mut updated = lease;
        updated.spec = Some(new_spec);
        lost_race_is_false(
            self.api.replace(&name, &post_params(), &updated).await,
            self.action("update"),
        )
    }

    /// Tries every `retry_period` until this replica leads (`true`) or `shutdown` resolves
    /// (`false`). Failed attempts are logged and retried.
    pub async fn acquire(&mut self, shutdown: impl Future<Output = ()>) -> bool {
        tokio::pin!(shutdown);
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(error = %crate::context::error_chain(&error), "leader election attempt failed")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.settings.retry_period) => {}
                () = &mut shutdown => return false,
            }
        }
    }

    /// Renews every `retry_period` for as long as it can; returns why leadership ended: another
    /// holder took the Lease, or no renewal succeeded within `renew_deadline`.
    pub async fn hold(&mut self) -> Error {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.settings.retry_period).await;
            let attempt =
                tokio::time::timeout(self.settings.retry_period, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => return self.lost(),
                Ok(Err(error)) => {
                    tracing::warn!(error = %crate::context::error_chain(&error), "cannot renew the leader Lease")
                }
                Err(_) => tracing::warn!("renewing the leader Lease timed out"),
            }
            if renewed.elapsed() > self.settings.renew_deadline {
                return self.lost();
            }
        }
    }

    /// Gives the Lease up if this replica holds it, so a standby takes over at once.
    ///
    /// # Errors
    /// A failed request; losing a race (409) is not an error.
    pub async fn release(&mut self) -> Result<()> {
        let existing = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(Error::kube(self.action("get")))?;
        let Some(mut lease) = existing else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(now()),
            ..spec
        });
        let name = self.settings.name.clone();
        lost_race_is_false(
            self.api.replace(&name, &post_params(), &lease).await,
            self.action("release"),
        )
        .map(drop)
    }

    /// `spec` taken over by this replica now.
    fn taken(&self, spec: &LeaseSpec) -> LeaseSpec {
        let now = now();
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_duration_seconds: Some(self.duration_seconds()),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0).saturating_add(1)),
            ..spec.clone()
        }
    }

    /// Whether another holder's record has stayed the same for its lease duration, by this
    /// replica's clock.
    fn expired(&mut self, lease: &Lease, spec: &LeaseSpec) -> bool {
        let version = lease.resource_version().unwrap_or_default();
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == version => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((version, at));
                at
            }
        };
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.settings.lease_duration, Duration::from_secs);
        first_seen.elapsed() >= duration
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    fn action(&self, verb: &str) -> String {
        format!(
            "{verb} Lease {}/{}",
            self.settings.namespace, self.settings.name
        )
    }

    fn lost(&self) -> Error {
        Error::LeadershipLost {
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

/// `Ok(true)` for a successful write, `Ok(false)` for a lost race (409), the error otherwise.
fn lost_race_is_false(result: kube::Result<Lease>, action: String) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
            Ok(false)
        }
        Err(source) => Err(Error::Kube { action, source }),
    }
}

#[cfg(test)]
mod tests;
