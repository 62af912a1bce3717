//! Who owns a Deployment's `spec.replicas` when an HPA scales it. Pure.
//!
//! With server-side apply, a field the operator stops sending is removed unless another manager owns it, and a
//! Deployment without `replicas` is defaulted to 1. So switching a component to autoscaling by just leaving the
//! field out would drop it to one pod until the HPA reacts, and a new autoscaled Deployment would start with one
//! pod and report Ready. Instead (the handover Kubernetes documents for server-side apply):
//! - while the operator still owns the field, a second field manager first applies the current count (never
//!   below the minimum), and only then does the operator's apply leave the field out. The field stays, owned by
//!   the handover manager until the HPA changes it;
//! - a new autoscaled Deployment is created without the field and the handover manager sets the HPA's minimum
//!   right after, so the operator never owns it (a count left below the minimum, should that second write not
//!   arrive, is put back by the next reconcile).

use crate::build::metadata::MANAGER;
use k8s_openapi::api::apps::v1::Deployment;

/// The field manager that holds `spec.replicas` between the operator and the HPA.
pub const HANDOVER_MANAGER: &str = "food-delivery-operator-replicas-handover";

/// What to do about `spec.replicas` of an autoscaled Deployment before applying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    /// It does not exist yet: once created, the handover manager sets this count.
    SetAfterCreate(i32),
    /// The operator still owns the field: the handover manager applies this count first.
    HandOver(i32),
    /// Someone else owns it (the HPA, or the handover manager): leave it out.
    LeaveToTheAutoscaler,
}

/// The configuration the handover manager applies: nothing but the count.
pub fn handover(name: &str, count: i32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": count},
    })
}

/// Whether the operator's own apply still owns `spec.replicas` of `live`.
pub fn operator_owns_replicas(live: &Deployment) -> bool {
    live.metadata.managed_fields.iter().flatten().any(|entry| {
        entry.manager.as_deref() == Some(MANAGER)
            && entry.operation.as_deref() == Some("Apply")
            && entry
                .fields_v1
                .as_ref()
                .is_some_and(|fields| fields.0.pointer("/f:spec/f:replicas").is_some())
    })
}

/// The plan for an autoscaled Deployment (`live`: as listed, if it exists) whose HPA keeps at least `minimum`.
pub fn for_autoscaled(live: Option<&Deployment>, minimum: i32) -> Replicas {
    let Some(live) = live else {
        return Replicas::SetAfterCreate(minimum);
    };
    let current = live.spec.as_ref().and_then(|spec| spec.replicas);
    // Below the minimum (a count set after creation that never arrived, someone scaling by hand) the HPA would
    // take its time; the handover manager puts the minimum back at once.
    if operator_owns_replicas(live) || current.is_none_or(|current| current < minimum) {
        Replicas::HandOver(current.unwrap_or(minimum).max(minimum))
    } else {
        Replicas::LeaveToTheAutoscaler
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
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
        assert_eq!(for_autoscaled(None, 3), Replicas::SetAfterCreate(3));
        let owned = json!({"f:spec": {"f:replicas": {}, "f:template": {}}});
        assert_eq!(
            for_autoscaled(Some(&deployment(5, MANAGER, owned.clone())), 3),
            Replicas::HandOver(5)
        );
        assert_eq!(
            for_autoscaled(Some(&deployment(1, MANAGER, owned)), 3),
            Replicas::HandOver(3),
            "never below the minimum"
        );
        assert_eq!(
            for_autoscaled(
                Some(&deployment(
                    5,
                    MANAGER,
                    json!({"f:spec": {"f:template": {}}})
                )),
                3
            ),
            Replicas::LeaveToTheAutoscaler
        );
        assert_eq!(
            for_autoscaled(
                Some(&deployment(
                    1,
                    "horizontal-pod-autoscaler",
                    json!({"f:spec": {"f:replicas": {}}})
                )),
                3
            ),
            Replicas::HandOver(3),
            "a count below the minimum is put back"
        );
    }
}
