//! Names, labels, selectors and owner references of everything the operator creates for one app.
//! Selectors use only the instance and the component: nothing that changes between releases, because a
//! Deployment's selector cannot change.

use crate::resource::FoodDeliveryApp;
use food_delivery_contract::Component;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use std::collections::BTreeMap;

/// Label keys (the Kubernetes recommended set).
pub mod label {
    /// The application's name: `food-delivery`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// The app instance: the FoodDeliveryApp's name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// The component, e.g. `order`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// The larger application: `food-delivery`.
    pub const PART_OF: &str = "app.kubernetes.io/part-of";
    /// The tool managing it.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// The image version.
    pub const VERSION: &str = "app.kubernetes.io/version";
    /// The project's own mark of the app an object belongs to, which the operator selects its children by.
    /// `app.kubernetes.io/instance` is also Argo CD's default tracking label: an object without an owner that
    /// carried it (a retained volume) would be pruned by an Argo CD Application of the same name.
    pub const APP: &str = "fooddelivery.dev/app";
}

/// The value of `app.kubernetes.io/managed-by`, also the field manager.
pub const MANAGER: &str = "food-delivery-operator";

/// Who the objects belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct AppIdentity {
    /// The app's name.
    pub name: String,
    /// Its namespace (absent when rendering a manifest without one).
    pub namespace: Option<String>,
    /// The owner reference, when the app exists in a cluster (it has a uid).
    pub owner: Option<OwnerReference>,
    /// The version label: the image tag, or the digest's first 12 characters.
    pub version: String,
}

impl AppIdentity {
    /// The identity of `app`.
    pub fn of(app: &FoodDeliveryApp) -> Self {
        let image = &app.spec.image;
        let version = match (&image.digest, &image.tag) {
            (Some(digest), _) => digest
                .trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect(),
            (None, Some(tag)) => label_value(tag),
            (None, None) => "unknown".to_owned(),
        };
        Self {
            name: app.metadata.name.clone().unwrap_or_default(),
            namespace: app.metadata.namespace.clone(),
            owner: app.controller_owner_ref(&()),
            version,
        }
    }

    /// `<app>-<component>`: the name of a component's Deployment, Service, ConfigMap, HPA and PDB.
    pub fn object_name(&self, component: Component) -> String {
        format!("{}-{component}", self.name)
    }

    /// What selects a component's pods: instance and component, nothing else.
    pub fn selector(&self, component: Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            (label::INSTANCE.to_owned(), self.name.clone()),
            (label::COMPONENT.to_owned(), component.name().to_owned()),
        ])
    }

    /// What selects every pod of the app.
    pub fn app_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(label::INSTANCE.to_owned(), self.name.clone())])
    }

    /// The full label set of an object (of a component, or of the whole app).
    pub fn labels(&self, component: Option<Component>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (label::NAME.to_owned(), "food-delivery".to_owned()),
            (label::INSTANCE.to_owned(), self.name.clone()),
            (label::PART_OF.to_owned(), "food-delivery".to_owned()),
            (label::MANAGED_BY.to_owned(), MANAGER.to_owned()),
            (label::VERSION.to_owned(), self.version.clone()),
        ]);
        if let Some(component) = component {
            labels.insert(label::COMPONENT.to_owned(), component.name().to_owned());
        }
        labels
    }

    /// Metadata of an object called `name`; owned objects are garbage-collected with the app. Objects carry the
    /// project's own app label besides the recommended set (pods do not: adding it would restart them all).
    pub fn metadata(&self, name: String, component: Option<Component>, owned: bool) -> ObjectMeta {
        let mut labels = self.labels(component);
        labels.insert(label::APP.to_owned(), self.name.clone());
        ObjectMeta {
            name: Some(name),
            namespace: self.namespace.clone(),
            labels: Some(labels),
            owner_references: self
                .owner
                .clone()
                .filter(|_| owned)
                .map(|owner| vec![owner]),
            ..ObjectMeta::default()
        }
    }
}

/// `text` cut to what a label value may hold: at most 63 characters, starting and ending with a letter or digit.
/// An image tag may be 128 characters and start with `_`; the server would refuse it as the version label.
pub fn label_value(text: &str) -> String {
    let cut: String = text.chars().take(63).collect();
    cut.trim_matches(|character: char| !character.is_ascii_alphanumeric())
        .to_owned()
}

/// FNV-1a, 64 bits: a stable fingerprint of configuration (not a security hash; it only has to change when
/// the configuration does, identically on every build and every Rust version).
pub fn fingerprint(parts: &[(&str, &str)]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (key, value) in parts {
        for byte in key.bytes().chain([0]).chain(value.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_becomes_a_label_value_the_server_accepts() {
        assert_eq!(label_value("0.1.0"), "0.1.0");
        assert_eq!(label_value("_build-7_"), "build-7");
        assert_eq!(label_value(&"a".repeat(128)).len(), 63);
        assert_eq!(
            label_value(&format!("{}-x", "b".repeat(62))),
            "b".repeat(62)
        );
    }

    #[test]
    fn the_fingerprint_is_stable_and_changes_with_any_setting() {
        let base = fingerprint(&[("A", "1"), ("B", "2")]);
        assert_eq!(base, fingerprint(&[("A", "1"), ("B", "2")]));
        assert_ne!(base, fingerprint(&[("A", "1"), ("B", "3")]));
        assert_ne!(
            base,
            fingerprint(&[("A", "12"), ("B", "")]),
            "boundaries count"
        );
        assert_eq!(fingerprint(&[]), "cbf29ce484222325");
    }
}
