//! Who owns a Deployment's `spec.replicas` when an HPA scales it. Pure.
//!
//! With server-side apply, a field the operator stops sending is removed unless another manager owns it, and a
//! Deployment without `replicas` is defaulted to 1. So switching a component to autoscaling by just leaving the
//! field out would drop it to one pod until the HPA reacts, and a new autoscaled Deployment would start with one
//! pod and report Ready. Instead (the handover Kubernetes documents for server-side apply):
//! - while the operator still owns the field, a second field manager first applies the current count (never
//!   below the minimum), and only then does the operator's apply leave the field out. The field stays, owned by
//!   the handover manager until the HPA changes it;
//! - when nobody owns the field after the operator's apply (a Deployment just created, so defaulted to 1), the
//!   handover manager sets the HPA's minimum.
//!
//! Neither apply is forced: if the HPA (or a person, `kubectl scale --replicas=0` to switch the HPA off) has set
//! another count in the meantime, the server answers a conflict and their count stays.

use crate::build::metadata::MANAGER;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

/// Where `spec.replicas` is in a managedFields entry's FieldsV1.
const REPLICAS_FIELD: &str = "/f:spec/f:replicas";

/// The field manager that holds `spec.replicas` between the operator and the HPA.
pub const HANDOVER_MANAGER: &str = "food-delivery-operator-replicas-handover";

/// The configuration the handover manager applies: nothing but the count.
pub fn handover(name: &str, count: i32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": count},
    })
}

fn owns_replicas(live: &Deployment, owner: impl Fn(&str, &str) -> bool) -> bool {
    live.metadata.managed_fields.iter().flatten().any(|entry| {
        owner(
            entry.manager.as_deref().unwrap_or_default(),
            entry.operation.as_deref().unwrap_or_default(),
        ) && entry
            .fields_v1
            .as_ref()
            .is_some_and(|fields| fields.0.pointer(REPLICAS_FIELD).is_some())
    })
}

/// Reduces a managedFields entry of some manager to its ownership of `spec.replicas`, the one part of it the
/// handover reads (a watch cache keeps no more); `false` when it owns no such field, so nothing of it is needed.
pub fn keep_only_replicas(entry: &mut ManagedFieldsEntry) -> bool {
    let owns = entry
        .fields_v1
        .as_ref()
        .is_some_and(|fields| fields.0.pointer(REPLICAS_FIELD).is_some());
    if owns {
        entry.fields_v1 = Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}})));
    }
    owns
}

fn count(live: &Deployment) -> Option<i32> {
    live.spec.as_ref().and_then(|spec| spec.replicas)
}

/// Before the operator's apply of an autoscaled Deployment (`live`: as listed): the count the handover manager
/// must hold first, when the operator's own apply still owns the field.
pub fn hand_over_before_apply(live: Option<&Deployment>, minimum: i32) -> Option<i32> {
    let live = live?;
    owns_replicas(live, |manager, operation| {
        manager == MANAGER && operation == "Apply"
    })
    .then(|| count(live).unwrap_or(minimum).max(minimum))
}

/// After the operator's apply (`applied`: what the server answered): the count to set when nobody owns the
/// field, which holds only the server's default.
pub fn set_after_apply(applied: &Deployment, minimum: i32) -> Option<i32> {
    (!owns_replicas(applied, |_, _| true)).then_some(minimum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use serde_json::json;

    fn deployment(replicas: i32, manager: &str, fields: serde_json::Value) -> Deployment {
        let mut deployment = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        };
        deployment.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some("Apply".to_owned()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }]);
        deployment
    }

    #[test]
    fn replicas_go_from_the_operator_to_the_autoscaler_without_dropping_to_one() {
        let owned = json!({"f:spec": {"f:replicas": {}, "f:template": {}}});
        let not_owned = json!({"f:spec": {"f:template": {}}});
        assert_eq!(hand_over_before_apply(None, 3), None);
        assert_eq!(
            hand_over_before_apply(Some(&deployment(5, MANAGER, owned.clone())), 3),
            Some(5)
        );
        assert_eq!(
            hand_over_before_apply(Some(&deployment(1, MANAGER, owned.clone())), 3),
            Some(3),
            "never below the minimum"
        );
        assert_eq!(
            hand_over_before_apply(Some(&deployment(5, MANAGER, not_owned.clone())), 3),
            None
        );
        assert_eq!(
            set_after_apply(&deployment(1, MANAGER, not_owned), 3),
            Some(3),
            "just created: only the default"
        );
        assert_eq!(
            set_after_apply(&deployment(0, "kubectl", owned), 3),
            None,
            "someone chose a count (zero switches the HPA off): it stays"
        );
    }
}
