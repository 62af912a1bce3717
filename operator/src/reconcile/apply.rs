//! Server-side apply of one child, and pruning. Server-side apply is the diff engine: a field the
//! operator stops sending is removed by the server (its manager no longer owns it), and what the server did is
//! read from the operator's own managedFields entry, never guessed. The one shortcut: when that entry already owns
//! exactly the fields the operator would send and the live object holds the same value at each of them, the apply
//! would change nothing, so it is not sent (a reconcile with nothing to change makes no write call). Anything
//! else, a field added or dropped, a value someone changed, a field someone else took, is applied.

use super::field_set;
use crate::build::metadata::MANAGER;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
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
    /// What the server did with the operator's apply, from the operator's own entry in `managedFields` before
    /// (`None`: the object did not exist) and after. The server renews that entry's time only when the operator's
    /// apply changed the object; the resourceVersion would also move for anyone else's write in between (a
    /// Deployment's status during a rollout) and report a change the operator did not make.
    pub fn judged(before: Option<&ObjectMeta>, after: &ObjectMeta) -> Self {
        match before {
            None => Self::Created,
            Some(before) if own_entry(before) == own_entry(after) => Self::Unchanged,
            Some(_) => Self::Updated,
        }
    }
}

/// The operator's own entry in `managedFields` (its apply of the main resource).
fn own_entry(metadata: &ObjectMeta) -> Option<&ManagedFieldsEntry> {
    metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|entry| is_own_entry(entry))
}

fn is_own_entry(entry: &ManagedFieldsEntry) -> bool {
    entry.manager.as_deref() == Some(MANAGER)
        && entry.operation.as_deref() == Some("Apply")
        && entry.subresource.is_none()
}

pub use crate::build::kinds::Child;

/// Whether applying `wanted` to `live` would change nothing: the operator's managedFields entry owns exactly the
/// fields `wanted` sets, `live` holds `wanted`'s value at each of those that is a value (not a list element's
/// marker: the server adds defaults inside elements, such as a container's terminationMessagePath, which are
/// nobody's), and the elements of every keyed list come in `wanted`'s order (the server keeps the applied order;
/// ownership alone does not see a reordering, and an env entry referring to an earlier one depends on it).
pub fn already_applied(
    wanted: &serde_json::Value,
    live: &serde_json::Value,
    live_meta: &ObjectMeta,
) -> bool {
    let Some(owned) = own_entry(live_meta)
        .and_then(|entry| entry.fields_v1.as_ref())
        .map(|fields| field_set::from_fields_v1(&fields.0))
    else {
        return false;
    };
    let mut sent = field_set::fields_of(wanted);
    sent.retain(|path| !field_set::server_set(path));
    sent == owned
        && sent
            .iter()
            .filter(|path| !matches!(path.last(), Some(field_set::Step::Key(_))))
            .all(|path| field_set::value_at(live, path) == field_set::value_at(wanted, path))
        && field_set::keyed_lists(&sent).iter().all(|list| {
            field_set::keys_in_order(live, list, &sent)
                == field_set::keys_in_order(wanted, list, &sent)
        })
}

/// [`already_applied`] of typed objects (an object that cannot be serialized is applied, and the apply says why).
pub fn holds<K: Child>(live: &K, wanted: &K) -> bool {
    match (serde_json::to_value(wanted), serde_json::to_value(live)) {
        (Ok(wanted_json), Ok(live_json)) => already_applied(&wanted_json, &live_json, live.meta()),
        _ => false,
    }
}

/// Trims what a watch cache keeps of an object's managedFields to what the reconcile reads: the operator's own
/// entry, and who owns a Deployment's replicas (see `replicas`). The rest would be memory spent for nothing.
pub fn trim_for_cache(metadata: &mut ObjectMeta) {
    if let Some(entries) = metadata.managed_fields.as_mut() {
        entries
            .retain_mut(|entry| is_own_entry(entry) || super::replicas::keep_only_replicas(entry));
    }
}

/// Applies `wanted` (`live`: the object as listed before, if it exists) unless it is [`already_applied`];
/// returns what the server did and the object it now holds.
pub async fn apply<K: Child>(
    client: &Client,
    namespace: &str,
    wanted: &K,
    live: Option<&K>,
) -> Result<(Applied, K), kube::Error> {
    if let Some(live) = live
        && holds(live, wanted)
    {
        return Ok((Applied::Unchanged, live.clone()));
    }
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let applied = api
        .patch(
            &wanted.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(wanted),
        )
        .await?;
    let outcome = Applied::judged(live.map(Resource::meta), applied.meta());
    Ok((outcome, applied))
}

/// Deletes `found`, one child, in the background (the garbage collector removes what it owns), only if it is still
/// the object found (same uid and resourceVersion): a watch cache can lag, and what it holds may since have been
/// deleted, re-created by someone else, or taken over (its labels changed). `false` when it was not deleted for
/// that reason; the watch event that follows triggers another look.
pub async fn prune<K: Child>(
    client: &Client,
    namespace: &str,
    found: &K,
) -> Result<bool, kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: found.meta().uid.clone(),
            resource_version: found.meta().resource_version.clone(),
        }),
        ..DeleteParams::background()
    };
    match api.delete(&found.name_any(), &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn what_the_server_did_is_read_from_the_operators_own_managed_fields_entry() {
        let meta = |time: i64, other_time: i64| ObjectMeta {
            managed_fields: Some(vec![
                ManagedFieldsEntry {
                    manager: Some(MANAGER.to_owned()),
                    operation: Some("Apply".to_owned()),
                    time: Some(Time(
                        k8s_openapi::jiff::Timestamp::from_second(time).unwrap(),
                    )),
                    ..ManagedFieldsEntry::default()
                },
                ManagedFieldsEntry {
                    manager: Some("kube-controller-manager".to_owned()),
                    operation: Some("Update".to_owned()),
                    subresource: Some("status".to_owned()),
                    time: Some(Time(
                        k8s_openapi::jiff::Timestamp::from_second(other_time).unwrap(),
                    )),
                    ..ManagedFieldsEntry::default()
                },
            ]),
            ..ObjectMeta::default()
        };
        assert_eq!(Applied::judged(None, &meta(1, 1)), Applied::Created);
        assert_eq!(
            Applied::judged(Some(&meta(1, 1)), &meta(1, 9)),
            Applied::Unchanged,
            "someone else wrote"
        );
        assert_eq!(
            Applied::judged(Some(&meta(1, 1)), &meta(2, 1)),
            Applied::Updated
        );
    }
}
