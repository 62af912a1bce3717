//! Server-side apply of one child, and label-based pruning. Server-side apply is the diff engine: the operator
//! sends every child on every reconcile and the server decides what changed. A field the operator stops sending is
//! removed by the server (its manager no longer owns it), and an apply that changes nothing is not a write: the
//! resourceVersion stays, and that is how created, updated and unchanged are told apart, from what the server did
//! rather than from a guess on the client.

use crate::build::metadata::{MANAGER, label};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// What applying did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The object did not exist.
    Created,
    /// It existed and the server stored a change (a spec change, or someone had edited it by hand).
    Updated,
    /// The server stored nothing: it already was as wanted.
    Unchanged,
}

impl Applied {
    /// What the server did, from the object before (`None`: absent) and the object it answered.
    pub fn judged(before: Option<&str>, after: Option<&str>) -> Self {
        match before {
            None => Self::Created,
            Some(before) if Some(before) == after => Self::Unchanged,
            Some(_) => Self::Updated,
        }
    }
}

/// A namespaced kind the operator manages.
pub trait Child:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Child for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Applies `wanted` (`live`: the object as listed before, if it exists); returns what the server did and the
/// object it now holds.
pub async fn apply<K: Child>(
    client: &Client,
    namespace: &str,
    wanted: &K,
    live: Option<&K>,
) -> Result<(Applied, K), kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let applied = api
        .patch(
            &wanted.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(wanted),
        )
        .await?;
    let outcome = Applied::judged(
        live.and_then(|live| live.meta().resource_version.as_deref()),
        applied.meta().resource_version.as_deref(),
    );
    Ok((outcome, applied))
}

/// The selector of everything the operator made for app `app`.
pub fn managed_selector(app: &str) -> String {
    format!("{}={app},{}={MANAGER}", label::APP, label::MANAGED_BY)
}

/// The objects of kind `K` labelled as app `app`'s.
pub async fn list_owned<K: Child>(
    client: &Client,
    namespace: &str,
    app: &str,
) -> Result<Vec<K>, kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&ListParams::default().labels(&managed_selector(app)))
        .await?
        .items)
}

/// Deletes one child in the background (the garbage collector removes what it owns).
pub async fn prune<K: Child>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(), kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.delete(name, &DeleteParams::background()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_server_did_is_read_from_the_resource_version() {
        assert_eq!(Applied::judged(None, Some("7")), Applied::Created);
        assert_eq!(Applied::judged(Some("7"), Some("7")), Applied::Unchanged);
        assert_eq!(Applied::judged(Some("7"), Some("9")), Applied::Updated);
    }
}
