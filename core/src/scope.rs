//! Permission scopes carried by API keys and access tokens. One type serves the REST API, the
//! tokens and the ApiKey custom resource, so it lives with the resource in `kolbak-crds`.

/// What a credential may do. The bootstrap admin holds every scope.
pub use kolbak_crds::Scope;
