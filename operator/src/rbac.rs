//! The permissions the operator uses, derived from the kinds it applies, watches and prunes: the Helm chart's
//! ClusterRole must grant exactly these (a test compares them).

use crate::build::kinds::{KindVisitor, OwnedKind, for_each_owned_kind};
use crate::resource::FoodDeliveryApp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Resource;
use std::collections::BTreeSet;

/// One RBAC rule: API group, resource (plural, with subresource), verbs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    /// The API group ("" for core).
    pub group: String,
    /// The resource, e.g. `deployments` or `fooddeliveryapps/status`.
    pub resource: String,
    /// The verbs, sorted.
    pub verbs: BTreeSet<String>,
}

fn permission<K: Resource<DynamicType = ()>>(suffix: &str, verbs: &[&str]) -> Permission {
    Permission {
        group: K::group(&()).into_owned(),
        resource: format!("{}{suffix}", K::plural(&())),
        verbs: verbs.iter().map(|verb| (*verb).to_owned()).collect(),
    }
}

/// Children: watched (get, list, watch), applied (patch; create when apply creates), pruned (delete).
const CHILD_VERBS: [&str; 6] = ["create", "delete", "get", "list", "patch", "watch"];

/// Every permission the controller needs, sorted by group and resource.
pub fn required() -> Vec<Permission> {
    struct Children(Vec<Permission>);
    impl KindVisitor for Children {
        fn visit<K: OwnedKind>(&mut self) {
            self.0.push(permission::<K>("", &CHILD_VERBS));
        }
    }
    let mut children = Children(Vec::new());
    for_each_owned_kind(&mut children);
    let mut permissions = children.0;
    permissions.extend([
        permission::<FoodDeliveryApp>("", &["get", "list", "watch"]),
        permission::<FoodDeliveryApp>("/status", &["patch"]),
        // Dereference: the database Secrets must exist (their values are never read by the operator's logic); the
        // internal credential's Secret is created once.
        permission::<Secret>("", &["create", "get"]),
        // Events are created, then patched when they repeat (a series).
        permission::<Event>("", &["create", "patch"]),
        // Leader election.
        permission::<Lease>("", &["create", "get", "update"]),
    ]);
    permissions.sort();
    permissions
}
