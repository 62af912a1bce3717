//! PersistentVolumeClaims: one per SQLite component, one for the shared log volume. They carry no owner
//! reference unless the spec says volumes follow the app: deleting a resource must not silently delete data.

use super::metadata::AppIdentity;
use super::plan::{ComponentPlan, Storage};
use super::quantity;
use crate::resource::{AccessMode, LogPersistenceSpec};
use food_delivery_contract::Component;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use std::collections::BTreeMap;

/// The claim name of a component's SQLite volume.
pub fn data_claim_name(app: &AppIdentity, component: Component) -> String {
    format!("{}-{component}-data", app.name)
}

/// The claim name of the shared log volume.
pub fn log_claim_name(app: &AppIdentity) -> String {
    format!("{}-logs", app.name)
}

fn claim(
    app: &AppIdentity,
    name: String,
    component: Option<Component>,
    access_mode: &str,
    size: &str,
    storage_class_name: Option<String>,
    owned: bool,
) -> PersistentVolumeClaim {
    let mut metadata = app.metadata(name, component, owned);
    // A claim may outlive the app without an owner: it must not carry Argo CD's tracking label (see label::APP).
    if let Some(labels) = metadata.labels.as_mut() {
        labels.remove(super::metadata::label::INSTANCE);
    }
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![access_mode.to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    quantity::canonical(size),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name,
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The SQLite volume of a component, if it has one.
pub fn build_data_claim(
    app: &AppIdentity,
    component: &ComponentPlan,
    owned: bool,
) -> Option<PersistentVolumeClaim> {
    match &component.storage {
        Storage::Sqlite {
            size,
            storage_class_name,
        } => Some(claim(
            app,
            data_claim_name(app, component.component),
            Some(component.component),
            "ReadWriteOnce",
            size,
            storage_class_name.clone(),
            owned,
        )),
        _ => None,
    }
}

/// The shared log volume.
pub fn build_log_claim(
    app: &AppIdentity,
    persistence: &LogPersistenceSpec,
    owned: bool,
) -> PersistentVolumeClaim {
    // Validation requires the mode; without it only ReadWriteOnce binds with any storage class.
    let access_mode = match persistence.access_mode.unwrap_or(AccessMode::ReadWriteOnce) {
        AccessMode::ReadWriteMany => "ReadWriteMany",
        AccessMode::ReadWriteOnce => "ReadWriteOnce",
    };
    claim(
        app,
        log_claim_name(app),
        None,
        access_mode,
        persistence.size.as_deref().unwrap_or("1Gi"),
        persistence.storage_class_name.clone(),
        owned,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{identity, plan_of};

    #[test]
    fn sqlite_components_get_a_retained_read_write_once_claim() {
        let plans = plan_of("");
        let order = plans
            .iter()
            .find(|plan| plan.component == Component::Order)
            .unwrap();
        let claim = build_data_claim(&identity(), order, false).unwrap();
        let spec = claim.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), ["ReadWriteOnce"]);
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "1Gi"
        );
        assert!(claim.metadata.owner_references.is_none());
        let gateway = plans
            .iter()
            .find(|plan| plan.component == Component::Gateway)
            .unwrap();
        assert!(build_data_claim(&identity(), gateway, false).is_none());
    }
}
