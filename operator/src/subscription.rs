//! The WebhookSubscription controller: validates the spec, provides the signing secret and
//! reports both in the status.
//!
//! Conditions:
//! - `Valid`: the spec passed the checks the API server cannot make — a parseable callback URL
//!   with `https` (or `http` when `KOLBAK_ALLOW_HTTP_CALLBACKS=true`) and a valid event
//!   pattern. Reasons when false: `InvalidCallbackUrl`, `InsecureCallbackUrl`,
//!   `InvalidEventPattern`, `InvalidSpec`.
//! - `SecretReady`: the signing secret exists and is a `whsec_` value — the Secret in
//!   `spec.secretRef`, or the one the operator generates (see [`crate::signing_secret`]).
//!   Reasons when false: `SecretNotFound`, `SecretKeyMissing`, `SecretInvalid`.
//! - `Ready`: `Valid` and `SecretReady`.
//!
//! An invalid subscription gets no Secret. Each condition transition is published as an Event;
//! rotations publish `SecretRotated`. The status (conditions, `observedGeneration`,
//! `secretName`) is written only when it changes; delivery health is left to dispatchers.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Secret;
use kolbak_core::secret::SigningSecret;
use kolbak_crds::condition::{READY, SECRET_READY, VALID};
use kolbak_crds::{WebhookSubscription, WebhookSubscriptionSpec, WebhookSubscriptionStatus};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use crate::conditions::ConditionSet;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::owned::{FIELD_MANAGER, describe, is_being_deleted, namespace};
use crate::signing_secret::{
    self, PREVIOUS_SECRET_KEY, SECRET_KEY, drop_previous_patch, has_handled, new_secret,
    previous_expires_at, read_key, rotation_patch, rotation_request,
};
use crate::status;

/// How often a reconciled subscription is looked at again without any change.
pub const RESYNC: Duration = Duration::from_secs(3600);

/// How soon a subscription whose referenced Secret is missing or unusable is checked again
/// (the operator does not watch Secrets it does not own).
pub const SECRET_RECHECK: Duration = Duration::from_secs(30);

/// Why a spec is not valid: the `Valid=False` reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Condition reason, e.g. `InsecureCallbackUrl`.
    pub reason: &'static str,
    /// What is wrong, naming the field.
    pub message: String,
}

/// Checks what the API server cannot: the rules of
/// [`WebhookSubscriptionSpec::validate`], a callback URL that parses as a URL with a host, and
/// `https` unless `allow_http`.
pub fn validate(spec: &WebhookSubscriptionSpec, allow_http: bool) -> Result<(), Invalid> {
    if let Err(error) = spec.validate() {
        let reason = match &error {
            kolbak_crds::Error::InvalidField { field, .. } if field == "spec.callbackUrl" => {
                "InvalidCallbackUrl"
            }
            kolbak_crds::Error::InvalidField { field, .. } if field == "spec.event" => {
                "InvalidEventPattern"
            }
            _ => "InvalidSpec",
        };
        return Err(Invalid {
            reason,
            message: error.to_string(),
        });
    }
    let url = url::Url::parse(&spec.callback_url).map_err(|error| Invalid {
        reason: "InvalidCallbackUrl",
        message: format!("invalid spec.callbackUrl: {error}"),
    })?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Invalid {
            reason: "InvalidCallbackUrl",
            message: "invalid spec.callbackUrl: no host".to_owned(),
        });
    }
    if url.scheme() == "http" && !allow_http {
        return Err(Invalid {
            reason: "InsecureCallbackUrl",
            message: "spec.callbackUrl must use https:// (this installation allows http:// only \
                      with KOLBAK_ALLOW_HTTP_CALLBACKS=true)"
                .to_owned(),
        });
    }
    Ok(())
}

/// Reconciles one WebhookSubscription (the controller's reconcile function).
///
/// # Errors
/// A failed API request; the controller retries with per-object backoff.
pub async fn reconcile(sub: Arc<WebhookSubscription>, ctx: Arc<Context>) -> Result<Action> {
    ctx.instrument(sub.as_ref(), reconcile_subscription(&sub, &ctx))
        .await
}

/// The signing secret's state, as the `SecretReady` condition and what goes with it.
struct SecretReport {
    name: String,
    ready: bool,
    reason: &'static str,
    message: String,
    events: Vec<Event>,
    recheck_after: Option<Duration>,
}

async fn reconcile_subscription(sub: &WebhookSubscription, ctx: &Context) -> Result<Action> {
    if is_being_deleted(sub) {
        return Ok(Action::await_change());
    }
    let ns = namespace(sub)?;
    let generation = sub.meta().generation;
    let current = sub.status.clone().unwrap_or_default();
    let mut conditions = ConditionSet::new(&current.conditions, generation);
    let mut secret_name = current.secret_name.clone();
    let mut events = Vec::new();
    let action = match validate(&sub.spec, ctx.config.allow_http_callbacks) {
        Err(invalid) => {
            conditions.set(VALID, false, invalid.reason, invalid.message);
            conditions.set(
                READY,
                false,
                "NotValid",
                "the spec is not valid; see the Valid condition",
            );
            Action::await_change()
        }
        Ok(()) => {
            conditions.set(VALID, true, "SpecValid", "");
            let report = ensure_secret(sub, ctx, &ns).await?;
            conditions.set(SECRET_READY, report.ready, report.reason, report.message);
            if report.ready {
                conditions.set(READY, true, "Reconciled", "");
            } else {
                conditions.set(
                    READY,
                    false,
                    "SecretNotReady",
                    "the signing secret is not usable; see the SecretReady condition",
                );
            }
            secret_name = Some(report.name);
            events = report.events;
            Action::requeue(report.recheck_after.map_or(RESYNC, |d| d.min(RESYNC)))
        }
    };
    let status = WebhookSubscriptionStatus {
        conditions: conditions.conditions().to_vec(),
        observed_generation: generation,
        secret_name,
        ..WebhookSubscriptionStatus::default()
    };
    if conditions.changed()
        || current.observed_generation != status.observed_generation
        || current.secret_name != status.secret_name
    {
        status::apply(ctx, sub, &status).await?;
    }
    let mut all_events = conditions.events();
    all_events.extend(events);
    status::publish(ctx, sub, all_events).await;
    Ok(action)
}

async fn ensure_secret(sub: &WebhookSubscription, ctx: &Context, ns: &str) -> Result<SecretReport> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    match &sub.spec.secret_ref {
        Some(reference) => {
            let found = secrets
                .get_opt(&reference.name)
                .await
                .map_err(Error::kube(format!("get Secret {ns}/{}", reference.name)))?;
            Ok(referenced_report(
                sub,
                found.as_ref(),
                &reference.name,
                &reference.key,
            ))
        }
        None => generated_secret(sub, &secrets, ns).await,
    }
}

/// `SecretReady` for a Secret named in `spec.secretRef`, which the operator only reads.
fn referenced_report(
    sub: &WebhookSubscription,
    found: Option<&Secret>,
    name: &str,
    key: &str,
) -> SecretReport {
    let mut report = SecretReport {
        name: name.to_owned(),
        ready: false,
        reason: "SecretNotFound",
        message: format!("Secret {name} (spec.secretRef) does not exist"),
        events: Vec::new(),
        recheck_after: Some(SECRET_RECHECK),
    };
    let Some(secret) = found else {
        return report;
    };
    match read_key(secret, key) {
        Err(unusable) => {
            report.reason = unusable.reason();
            report.message = unusable.message(name, key);
        }
        Ok(_) => {
            report.ready = true;
            report.reason = "SecretAvailable";
            report.message = format!("signing secret in Secret {name}, key {key}");
            report.recheck_after = None;
            if rotation_request(sub).is_some() {
                report.message.push_str(&format!(
                    "; {} is ignored: spec.secretRef names a Secret managed outside Kolbak",
                    signing_secret::ROTATE_ANNOTATION
                ));
            }
        }
    }
    report
}

/// Creates the generated Secret when it is missing; rotates it on request; drops an expired
/// previous secret.
async fn generated_secret(
    sub: &WebhookSubscription,
    secrets: &Api<Secret>,
    ns: &str,
) -> Result<SecretReport> {
    let name = signing_secret::generated_name(&sub.name_any());
    let mut report = SecretReport {
        name: name.clone(),
        ready: true,
        reason: "SecretAvailable",
        message: format!("signing secret in Secret {name}, key {SECRET_KEY}"),
        events: Vec::new(),
        recheck_after: None,
    };
    let existing = secrets
        .get_opt(&name)
        .await
        .map_err(Error::kube(format!("get Secret {ns}/{name}")))?;
    let Some(secret) = existing else {
        let secret = new_secret(sub, &SigningSecret::generate())?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        secrets
            .create(&params, &secret)
            .await
            .map_err(Error::kube(format!("create Secret {ns}/{name}")))?;
        tracing::info!(subscription = %describe(sub), secret = %name, "generated signing secret");
        return Ok(report);
    };
    let current = match read_key(&secret, SECRET_KEY) {
        Ok(current) => current,
        Err(unusable) => {
            report.ready = false;
            report.reason = unusable.reason();
            report.message = format!(
                "{}; fix or delete the Secret (a deleted one is generated again)",
                unusable.message(&name, SECRET_KEY)
            );
            report.recheck_after = Some(SECRET_RECHECK);
            return Ok(report);
        }
    };
    let now = Utc::now();
    if let Some(request) = rotation_request(sub).filter(|r| !has_handled(&secret, r)) {
        let patch = rotation_patch(&secret, &current, &SigningSecret::generate(), request, now);
        patch_secret(secrets, &name, &patch, ns, "rotate").await?;
        let expires = now + signing_secret::rotation_overlap();
        tracing::info!(subscription = %describe(sub), secret = %name, "rotated signing secret");
        report.events.push(Event {
            type_: EventType::Normal,
            reason: "SecretRotated".to_owned(),
            note: Some(format!(
                "new signing secret in Secret {name}; the previous one keeps signing until {}",
                expires.to_rfc3339_opts(SecondsFormat::Secs, true)
            )),
            action: "RotateSecret".to_owned(),
            secondary: Some(secret.object_ref(&())),
        });
        report.recheck_after = until(expires, now);
    } else if let Some(expires) = previous_expires_at(&secret) {
        if expires <= now {
            patch_secret(secrets, &name, &drop_previous_patch(&secret), ns, "expire").await?;
            tracing::info!(secret = %name, "removed the expired {PREVIOUS_SECRET_KEY}");
        } else {
            report.recheck_after = until(expires, now);
        }
    }
    Ok(report)
}

async fn patch_secret(
    secrets: &Api<Secret>,
    name: &str,
    patch: &serde_json::Value,
    ns: &str,
    what: &str,
) -> Result<()> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    secrets
        .patch(name, &params, &Patch::Merge(patch))
        .await
        .map_err(Error::kube(format!(
            "{what} signing secret in Secret {ns}/{name}"
        )))?;
    Ok(())
}

/// Time from `now` until `at` (plus a second, to land after it), if `at` is ahead.
fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    (at - now).to_std().ok().map(|d| d + Duration::from_secs(1))
}

#[cfg(test)]
mod tests;
