//! The food-delivery operator: the `FoodDeliveryApp` custom resource, the pure build of the objects it implies,
//! and the commands that print them.

pub mod build;
pub mod controller;
pub mod leader;
pub mod rbac;
pub mod reconcile;
pub mod resource;
pub mod rules;
pub mod server_rules;
pub mod validate;

pub use resource::{FoodDeliveryApp, FoodDeliveryAppSpec, FoodDeliveryAppStatus};

use kube::CustomResourceExt;

/// The CRD as YAML, exactly as committed in `crds/`.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(&FoodDeliveryApp::crd())
}

/// Validates a FoodDeliveryApp manifest and renders every object the operator would apply, as YAML.
pub fn render(manifest: &str) -> Result<String, validate::InvalidApp> {
    let app = validate::parse_app(manifest)?;
    build::build(&app)
        .to_yaml()
        .map_err(|error| validate::InvalidApp::Unreadable(format!("cannot write YAML: {error}")))
}

/// What `render` warns about in a valid manifest: what applies but will not run well (a fleet whose PostgreSQL
/// pools do not fit the server at full scale). The operator reports the same as Warning Events.
pub fn render_warnings(manifest: &str) -> Result<Vec<String>, validate::InvalidApp> {
    let app = validate::parse_app(manifest)?;
    let name = app.metadata.name.clone().unwrap_or_default();
    Ok(build::plan::plan_with_shortfalls(&name, &app.spec).1)
}
