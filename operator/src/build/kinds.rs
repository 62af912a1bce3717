//! The kinds the operator owns, listed once. What is done per kind (watch it, grant the operator its verbs, serve
//! it in the tests' fake API server) is derived from [`for_each_owned_kind`], and a test checks the list against
//! [`super::ChildObjects`], so a kind cannot be built without being watched, granted and pruned.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

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

/// A kind the operator creates for its apps, with what the controller needs to know about it.
pub trait OwnedKind: Child {
    /// Whether a change of its status alone deserves a reconcile of the app. A Deployment's does (the app's
    /// status follows it); an HPA rewrites its status every 15 seconds and a PDB whenever a pod comes or goes, and
    /// each would otherwise re-run the whole reconcile.
    const STATUS_TRIGGERS_RECONCILE: bool = true;
}

impl OwnedKind for ServiceAccount {}
impl OwnedKind for ConfigMap {}
impl OwnedKind for PersistentVolumeClaim {}
impl OwnedKind for Service {}
impl OwnedKind for Deployment {}
impl OwnedKind for HorizontalPodAutoscaler {
    const STATUS_TRIGGERS_RECONCILE: bool = false;
}
impl OwnedKind for PodDisruptionBudget {
    const STATUS_TRIGGERS_RECONCILE: bool = false;
}
impl OwnedKind for NetworkPolicy {}
impl OwnedKind for Ingress {}

/// Something done once for each owned kind.
pub trait KindVisitor {
    /// Does it for kind `K`.
    fn visit<K: OwnedKind>(&mut self);
}

/// Calls `visitor` with every owned kind, in the order [`super::ChildObjects`] lists them.
pub fn for_each_owned_kind(visitor: &mut impl KindVisitor) {
    visitor.visit::<ServiceAccount>();
    visitor.visit::<ConfigMap>();
    visitor.visit::<PersistentVolumeClaim>();
    visitor.visit::<Service>();
    visitor.visit::<Deployment>();
    visitor.visit::<HorizontalPodAutoscaler>();
    visitor.visit::<PodDisruptionBudget>();
    visitor.visit::<NetworkPolicy>();
    visitor.visit::<Ingress>();
}

/// The resources (plurals) of the owned kinds.
pub fn owned_plurals() -> Vec<String> {
    struct Plurals(Vec<String>);
    impl KindVisitor for Plurals {
        fn visit<K: OwnedKind>(&mut self) {
            self.0.push(K::plural(&()).into_owned());
        }
    }
    let mut plurals = Plurals(Vec::new());
    for_each_owned_kind(&mut plurals);
    plurals.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::app_with;
    use std::collections::BTreeSet;

    #[test]
    fn the_owned_kinds_are_exactly_the_kinds_an_app_with_every_option_is_built_of() {
        let app = app_with(
            "{sqlite: {}}",
            "defaults: {replicas: 1}
components:
  gateway: {expose: {ingress: {host: food.example.org}}}
  order: {database: {postgres: {urlSecretRef: {name: db, key: url}}}, autoscaling: {minReplicas: 2, maxReplicas: 4}}
logging: {persistence: {size: 1Gi, accessMode: ReadWriteMany}}
networkPolicy: {enabled: true}",
        );
        let built: BTreeSet<String> = crate::build::build(&app)
            .to_json()
            .unwrap()
            .into_iter()
            .map(|(plural, _)| plural)
            .collect();
        let owned: BTreeSet<String> = owned_plurals().into_iter().collect();
        assert_eq!(owned.len(), owned_plurals().len(), "each kind once");
        assert_eq!(built, owned);
    }
}
