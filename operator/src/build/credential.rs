//! The internal credential's Secret: one per app, generated once by the reconcile (the build stays pure: it is
//! handed the token), owned by the app, and given as `INTERNAL_TOKEN` to the services that own internal writes
//! and to their callers (payment and order). `render` never shows it: it is not one of the built children.

use super::metadata::AppIdentity;
use super::plan::ComponentPlan;
use food_delivery_contract::{INTERNAL_CALLERS, INTERNAL_WRITES, RESOURCE_OWNERS};
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;

/// The key of the token in the Secret.
pub const TOKEN_KEY: &str = "token";

/// `<app>-internal`.
pub fn secret_name(app: &AppIdentity) -> String {
    format!("{}-internal", app.name)
}

/// Whether a component gets the credential: it owns an internal write, or calls one.
pub fn needs_credential(component: &ComponentPlan) -> bool {
    let owns_internal_write = RESOURCE_OWNERS.iter().any(|(resource, owner)| {
        *owner == component.component && INTERNAL_WRITES.contains(resource)
    });
    owns_internal_write || INTERNAL_CALLERS.contains(&component.component)
}

/// The Secret holding `token`.
pub fn build_credential_secret(app: &AppIdentity, token: String) -> Secret {
    Secret {
        metadata: app.metadata(secret_name(app), None, true),
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_owned(), token)])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::plan_of;

    #[test]
    fn payment_and_its_caller_get_the_credential_and_nobody_else() {
        let plans = plan_of("");
        let with: Vec<&str> = plans
            .iter()
            .filter(|plan| needs_credential(plan))
            .map(|plan| plan.component.name())
            .collect();
        assert_eq!(with, ["order", "payment"]);
    }
}
