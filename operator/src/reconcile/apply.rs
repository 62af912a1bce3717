//! Server-side apply of one child, skipped when the live object already holds every field the operator wants
//! (so a reconcile with nothing to change writes nothing), and label-based pruning.

use crate::build::metadata::{MANAGER, label};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Debug;

/// What applying did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The object did not exist.
    Created,
    /// It existed but differed (a spec change, or someone edited it by hand).
    Updated,
    /// It was already as wanted: no write.
    Unchanged,
}

/// Whether every field set in `wanted` has the same value in `live` (objects by key, arrays element by
/// element). Fields the API server adds (defaults, status, managed fields) do not count.
pub fn holds(wanted: &Value, live: &Value) -> bool {
    match (wanted, live) {
        (Value::Object(wanted), Value::Object(live)) => wanted.iter().all(|(key, value)| {
            value.is_null() || live.get(key).is_some_and(|live| holds(value, live))
        }),
        (Value::Array(wanted), Value::Array(live)) => {
            wanted.len() == live.len()
                && wanted
                    .iter()
                    .zip(live)
                    .all(|(wanted, live)| holds(wanted, live))
        }
        _ => wanted == live,
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

/// Applies `wanted` unless the live object already holds it; returns what happened and the live object.
pub async fn apply<K: Child>(
    client: &Client,
    namespace: &str,
    wanted: &K,
) -> Result<(Applied, K), kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = wanted.name_any();
    let live = api.get_opt(&name).await?;
    if let Some(live) = &live {
        let wanted_json = serde_json::to_value(wanted).map_err(kube::Error::SerdeError)?;
        let live_json = serde_json::to_value(live).map_err(kube::Error::SerdeError)?;
        if holds(&wanted_json, &live_json) {
            return Ok((Applied::Unchanged, live.clone()));
        }
    }
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(wanted),
        )
        .await?;
    let outcome = if live.is_some() {
        Applied::Updated
    } else {
        Applied::Created
    };
    Ok((outcome, applied))
}

/// The selector of everything the operator made for app `app`.
pub fn managed_selector(app: &str) -> String {
    format!("{}={app},{}={MANAGER}", label::INSTANCE, label::MANAGED_BY)
}

/// Deletes the objects of kind `K` labelled as app `app`'s that are not in `keep`; returns their names.
pub async fn prune<K: Child>(
    client: &Client,
    namespace: &str,
    app: &str,
    keep: &BTreeSet<String>,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let existing = api
        .list(&ListParams::default().labels(&managed_selector(app)))
        .await?;
    let mut pruned = Vec::new();
    for object in existing {
        let name = object.name_any();
        if !keep.contains(&name) {
            api.delete(&name, &DeleteParams::background()).await?;
            pruned.push(name);
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_live_object_holds_what_is_wanted_whatever_the_server_added() {
        let wanted = json!({"spec": {"replicas": 2, "ports": [{"port": 8080}]}, "metadata": {"labels": {"a": "1"}}});
        let live = json!({"spec": {"replicas": 2, "ports": [{"port": 8080, "protocol": "TCP"}], "revisionHistoryLimit": 10},
                          "metadata": {"labels": {"a": "1", "b": "2"}, "uid": "x"}, "status": {}});
        assert!(holds(&wanted, &live));
        assert!(
            !holds(&json!({"spec": {"replicas": 3}}), &live),
            "a changed value"
        );
        assert!(
            !holds(
                &json!({"spec": {"ports": [{"port": 8080}, {"port": 9090}]}}),
                &live
            ),
            "a list grown"
        );
        assert!(
            !holds(&json!({"spec": {"paused": true}}), &live),
            "a missing field"
        );
        assert!(
            holds(&json!({"spec": {"paused": null}}), &live),
            "unset is not wanted"
        );
    }
}
