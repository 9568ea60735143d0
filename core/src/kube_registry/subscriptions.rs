//! Subscription reads and writes of the Kubernetes registry: `WebhookSubscription` objects and
//! their signing Secrets.

use chrono::{DateTime, Utc};
use kolbak_crds::WebhookSubscription;
use kolbak_crds::secret_layout::{PREVIOUS_EXPIRES_AT_KEY, PREVIOUS_SIGNING_SECRET_KEY};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::mapping::{
    FIELD_MANAGER, cleared_fields, rotation_patch, secret_location, signing_secret,
    signing_secrets, subscription, subscription_apply,
};
use super::{KubeRegistry, WRITE_ATTEMPTS, api_error, is_stale, paginate};
use crate::error::{Error, Result};
use crate::registry::{Listing, Page, SubscriptionFilter};
use crate::secret::SigningSecret;
use crate::subscription::{SigningSecrets, Subscription, SubscriptionPatch};

impl KubeRegistry {
    /// The subscription `object` describes, if its signing secret is available and its spec
    /// usable; logs why not otherwise.
    fn usable_subscription(&self, object: &WebhookSubscription) -> Option<Subscription> {
        let location = secret_location(object);
        let secrets = self
            .stores
            .secrets
            .get(&self.stores.key(&location.name))
            .and_then(|secret| signing_secrets(&secret, &location));
        let Some(secrets) = secrets else {
            tracing::debug!(
                subscription = %object.name_any(),
                secret = %location.name,
                "subscription skipped: its signing Secret is missing or unusable"
            );
            return None;
        };
        match subscription(object, secrets) {
            Ok(subscription) => Some(subscription),
            Err(error) => {
                tracing::warn!(subscription = %object.name_any(), %error, "subscription skipped");
                None
            }
        }
    }

    pub(super) fn stored_subscription(&self, id: &str) -> Option<Subscription> {
        let object = self.stores.subscriptions.get(&self.stores.key(id))?;
        self.usable_subscription(&object)
    }

    pub(super) fn stored_subscriptions(
        &self,
        filter: &SubscriptionFilter,
        page: Page,
    ) -> Listing<Subscription> {
        let mut all: Vec<Subscription> = self
            .stores
            .subscriptions
            .state()
            .iter()
            .filter_map(|object| self.usable_subscription(object))
            .filter(|subscription| filter.admits(subscription))
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        paginate(all, page)
    }

    pub(super) async fn create_subscription_objects(
        &self,
        new: Subscription,
    ) -> Result<Subscription> {
        // The Secret first: the operator then finds it and does not generate another.
        self.create_secret(&signing_secret(&new.id, &new.secrets))
            .await?;
        let applied = self.apply(&new, None).await.inspect_err(|error| {
            tracing::warn!(
                subscription = %new.id,
                %error,
                "subscription not created; its signing Secret is left without an owner"
            );
        })?;
        let secret_name = secret_location(&applied).name;
        self.adopt_secret(&secret_name, &applied).await;
        self.await_subscription(&applied).await;
        subscription(&applied, new.secrets)
    }

    /// The subscription as the API server has it now (not the cache): a read-modify-write
    /// starts from the newest version, so its resourceVersion precondition rarely fails.
    async fn read_subscription(&self, id: &str) -> Result<Option<WebhookSubscription>> {
        self.subscriptions_api()
            .get_opt(id)
            .await
            .map_err(api_error)
    }

    pub(super) async fn apply_subscription_patch(
        &self,
        id: &str,
        patch: SubscriptionPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(object) = self.read_subscription(id).await? else {
                return Ok(None);
            };
            let Some(mut current) = self.usable_subscription(&object) else {
                return Err(Error::Conflict(format!(
                    "subscription {id} has no usable signing secret yet; try again once its \
                     SecretReady condition is True"
                )));
            };
            patch.clone().apply(&mut current, now);
            let version = object.metadata.resource_version.as_deref();
            let applied = match self.apply(&current, version).await {
                Err(Error::Conflict(_)) => continue,
                other => other?,
            };
            let applied = match cleared_fields(&current, &applied) {
                Some(clear) => self
                    .subscriptions_api()
                    .patch(id, &PatchParams::default(), &Patch::Merge(&clear))
                    .await
                    .map_err(api_error)?,
                None => applied,
            };
            self.await_subscription(&applied).await;
            return subscription(&applied, current.secrets).map(Some);
        }
        Err(Error::Conflict(format!(
            "subscription {id} keeps changing; try again"
        )))
    }

    pub(super) async fn rotate_signing_secret(
        &self,
        id: &str,
        next: SigningSecret,
        previous_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(object) = self.read_subscription(id).await? else {
                return Ok(None);
            };
            let location = secret_location(&object);
            if !location.generated {
                return Err(Error::Conflict(format!(
                    "the signing secret of {id} is in Secret {} named by spec.secretRef; \
                     rotate it there",
                    location.name
                )));
            }
            let existing = self
                .secrets_api()
                .get_opt(&location.name)
                .await
                .map_err(api_error)?;
            let current = existing
                .as_ref()
                .and_then(|secret| signing_secrets(secret, &location));
            let Some(existing) = existing else {
                let secrets = SigningSecrets::new(next.clone());
                self.create_secret(&signing_secret(id, &secrets)).await?;
                self.adopt_secret(&location.name, &object).await;
                return subscription(&object, secrets).map(Some);
            };
            let version = existing.metadata.resource_version.as_deref();
            let (patch, rotated) = match current {
                Some(mut secrets) => {
                    secrets.rotate(next.clone(), previous_expires_at);
                    (rotation_patch(&secrets, version), secrets)
                }
                // An unusable value is not worth keeping: the new secret replaces it.
                None => {
                    let secrets = SigningSecrets::new(next.clone());
                    let mut patch = rotation_patch(&secrets, version);
                    patch["data"][PREVIOUS_SIGNING_SECRET_KEY] = Value::Null;
                    patch["data"][PREVIOUS_EXPIRES_AT_KEY] = Value::Null;
                    (patch, secrets)
                }
            };
            let secret = match self
                .secrets_api()
                .patch(
                    &location.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Err(error) if is_stale(&error) => continue,
                result => result.map_err(api_error)?,
            };
            self.await_secret(&secret).await;
            tracing::debug!(subscription = %id, at = %now, "signing secret rotated");
            return subscription(&object, rotated).map(Some);
        }
        Err(Error::Conflict(format!(
            "the signing Secret of {id} keeps changing; try again"
        )))
    }

    pub(super) async fn delete_subscription_objects(&self, id: &str) -> Result<bool> {
        self.delete_object(self.subscriptions_api(), &self.stores.subscriptions, id)
            .await
    }

    /// Server-side-applies `subscription` (create or full update of the REST-owned fields).
    async fn apply(
        &self,
        subscription: &Subscription,
        resource_version: Option<&str>,
    ) -> Result<WebhookSubscription> {
        let body = subscription_apply(subscription, resource_version);
        self.subscriptions_api()
            .patch(
                &subscription.id,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(api_error)
    }

    async fn await_subscription(&self, object: &WebhookSubscription) {
        self.await_object(&self.stores.subscriptions, object).await;
    }
}
