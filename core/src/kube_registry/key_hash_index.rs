//! The ApiKeys of the registry's store indexed by the key hash in their status, so the ingress
//! finds the key a request presents (`x-api-key`) without looking at every ApiKey. Fed by the
//! same watch events the reflector store applies, including its re-lists.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use kolbak_crds::ApiKey as ApiKeyResource;
use kube::ResourceExt;
use kube::runtime::watcher;

/// Object name by key hash (hex), and the reverse.
#[derive(Debug, Default)]
pub struct KeyHashIndex {
    maps: RwLock<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    /// Hash → ApiKey name.
    by_hash: HashMap<String, String>,
    /// ApiKey name → hash, to drop a key's old hash when it changes or the key goes.
    by_name: HashMap<String, String>,
    /// Name → hash of a re-list under way; replaces both maps when the listing is complete.
    relisting: Option<HashMap<String, String>>,
}

impl Maps {
    fn insert(&mut self, name: String, hash: Option<String>) {
        self.remove(&name);
        if let Some(hash) = hash {
            self.by_hash.insert(hash.clone(), name.clone());
            self.by_name.insert(name, hash);
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.by_name.remove(name) {
            // Only if it still points here: two objects may briefly claim one hash.
            if self.by_hash.get(&old).is_some_and(|owner| owner == name) {
                self.by_hash.remove(&old);
            }
        }
    }
}

/// The hash an ApiKey's status records, if the operator has written it yet.
fn key_hash(object: &ApiKeyResource) -> Option<String> {
    object.status.as_ref()?.key_hash.clone()
}

impl KeyHashIndex {
    /// Applies one event of the ApiKey watch.
    pub fn apply(&self, event: &watcher::Event<ApiKeyResource>) {
        // A panic elsewhere cannot leave these maps half-updated: every update is one call.
        let mut maps = self.maps.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(object) => maps.insert(object.name_any(), key_hash(object)),
            watcher::Event::Delete(object) => maps.remove(&object.name_any()),
            watcher::Event::Init => maps.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                if let (Some(listing), Some(hash)) = (maps.relisting.as_mut(), key_hash(object)) {
                    listing.insert(object.name_any(), hash);
                }
            }
            watcher::Event::InitDone => {
                let listing = maps.relisting.take().unwrap_or_default();
                maps.by_hash = listing
                    .iter()
                    .map(|(name, hash)| (hash.clone(), name.clone()))
                    .collect();
                maps.by_name = listing;
            }
        }
    }

    /// The name of the ApiKey whose status records `hash` (hex), as last seen.
    pub fn name_of(&self, hash: &str) -> Option<String> {
        let maps = self.maps.read().unwrap_or_else(PoisonError::into_inner);
        maps.by_hash.get(hash).cloned()
    }
}

#[cfg(test)]
mod tests {
    use kolbak_crds::{ApiKeySpec, ApiKeyStatus};

    use super::*;

    fn key(name: &str, hash: Option<&str>) -> ApiKeyResource {
        let spec = ApiKeySpec {
            name: name.to_owned(),
            description: None,
            scopes: Vec::new(),
        };
        let mut object = ApiKeyResource::new(name, spec);
        object.status = hash.map(|hash| ApiKeyStatus {
            key_hash: Some(hash.to_owned()),
            ..ApiKeyStatus::default()
        });
        object
    }

    #[test]
    fn follows_applies_hash_changes_and_deletes() {
        let index = KeyHashIndex::default();
        index.apply(&watcher::Event::Apply(key("a", None)));
        assert_eq!(index.name_of("h1"), None);
        index.apply(&watcher::Event::Apply(key("a", Some("h1"))));
        assert_eq!(index.name_of("h1").as_deref(), Some("a"));
        index.apply(&watcher::Event::Apply(key("a", Some("h2"))));
        assert_eq!(index.name_of("h1"), None);
        assert_eq!(index.name_of("h2").as_deref(), Some("a"));
        index.apply(&watcher::Event::Apply(key("b", Some("h3"))));
        index.apply(&watcher::Event::Delete(key("a", Some("h2"))));
        assert_eq!(index.name_of("h2"), None);
        assert_eq!(index.name_of("h3").as_deref(), Some("b"));
    }

    #[test]
    fn a_relist_replaces_everything_once_complete() {
        let index = KeyHashIndex::default();
        index.apply(&watcher::Event::Apply(key("gone", Some("h1"))));
        index.apply(&watcher::Event::Apply(key("kept", Some("h2"))));
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(key("kept", Some("h2"))));
        index.apply(&watcher::Event::InitApply(key("new", Some("h3"))));
        index.apply(&watcher::Event::InitApply(key("pending", None)));
        // Until the listing is complete the last full view answers.
        assert_eq!(index.name_of("h1").as_deref(), Some("gone"));
        assert_eq!(index.name_of("h3"), None);
        index.apply(&watcher::Event::InitDone);
        assert_eq!(index.name_of("h1"), None);
        assert_eq!(index.name_of("h2").as_deref(), Some("kept"));
        assert_eq!(index.name_of("h3").as_deref(), Some("new"));
    }

    #[test]
    fn a_hash_claimed_twice_stays_with_the_later_claim() {
        let index = KeyHashIndex::default();
        index.apply(&watcher::Event::Apply(key("a", Some("h"))));
        index.apply(&watcher::Event::Apply(key("b", Some("h"))));
        index.apply(&watcher::Event::Delete(key("a", Some("h"))));
        assert_eq!(index.name_of("h").as_deref(), Some("b"));
    }
}
