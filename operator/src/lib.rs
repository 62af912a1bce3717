//! The food-delivery operator: the `FoodDeliveryApp` custom resource, the pure build of the objects it implies,
//! and the commands that print them.

pub mod build;
pub mod resource;
pub mod validate;

pub use resource::{FoodDeliveryApp, FoodDeliveryAppSpec, FoodDeliveryAppStatus};

use kube::CustomResourceExt;

/// The CRD as YAML, exactly as committed in `crds/`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&FoodDeliveryApp::crd())
}
