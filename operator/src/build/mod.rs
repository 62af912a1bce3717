//! The build stage: from a validated app to every object the operator applies. Pure: no client, no clock, no
//! randomness; the same app always gives the same objects. One module per Kubernetes kind; `plan` decides the
//! per-component settings they share.

pub mod configmap;
pub mod credential;
pub mod deployment;
pub mod hpa;
pub mod ingress;
pub mod kinds;
pub mod metadata;
pub mod networkpolicy;
pub mod pdb;
pub mod plan;
pub mod pvc;
pub mod quantity;
pub mod service;
pub mod serviceaccount;

use crate::resource::FoodDeliveryApp;
use food_delivery_contract::Component;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use metadata::AppIdentity;

/// Every object of one app, one field per kind. Whoever applies them destructures this without `..`, so a new
/// kind cannot be built without being applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildObjects {
    /// The app's ServiceAccount.
    pub service_account: ServiceAccount,
    /// One per component.
    pub config_maps: Vec<ConfigMap>,
    /// SQLite volumes and the shared log volume.
    pub volume_claims: Vec<PersistentVolumeClaim>,
    /// One per component.
    pub services: Vec<Service>,
    /// One per component.
    pub deployments: Vec<Deployment>,
    /// One per autoscaled component.
    pub autoscalers: Vec<HorizontalPodAutoscaler>,
    /// One per component running two or more replicas at least.
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    /// The app's policy and the gateway's, when enabled.
    pub network_policies: Vec<NetworkPolicy>,
    /// The gateway's Ingress, when configured.
    pub ingresses: Vec<Ingress>,
}

/// Builds every object of `app` (validated beforehand: see `validate`).
pub fn build(app: &FoodDeliveryApp) -> ChildObjects {
    let plans = plan::plan(&AppIdentity::of(app).name, &app.spec);
    build_planned(app, &plans)
}

/// Builds every object of `app` from its components' `plans` (what [`plan::plan`] gives), for a caller that
/// needs the plans itself.
pub fn build_planned(app: &FoodDeliveryApp, plans: &[plan::ComponentPlan]) -> ChildObjects {
    let identity = AppIdentity::of(app);
    let spec = &app.spec;
    let volumes_owned = plan::volumes_follow_app(spec);
    let mut volume_claims: Vec<PersistentVolumeClaim> = plans
        .iter()
        .filter_map(|component| pvc::build_data_claim(&identity, component, volumes_owned))
        .collect();
    if let Some(persistence) = spec
        .logging
        .as_ref()
        .and_then(|logging| logging.persistence.as_ref())
    {
        volume_claims.push(pvc::build_log_claim(&identity, persistence, volumes_owned));
    }
    ChildObjects {
        service_account: serviceaccount::build_service_account(&identity),
        config_maps: plans
            .iter()
            .map(|component| configmap::build_config_map(&identity, component))
            .collect(),
        volume_claims,
        services: plans
            .iter()
            .map(|component| service::build_service(&identity, component))
            .collect(),
        deployments: plans
            .iter()
            .map(|component| deployment::build_deployment(&identity, spec, component))
            .collect(),
        autoscalers: plans
            .iter()
            .filter_map(|component| hpa::build_autoscaler(&identity, component))
            .collect(),
        disruption_budgets: plans
            .iter()
            .filter_map(|component| pdb::build_disruption_budget(&identity, component))
            .collect(),
        network_policies: networkpolicy::build_network_policy(&identity, spec)
            .into_iter()
            .chain(networkpolicy::build_gateway_network_policy(&identity, spec))
            .collect(),
        ingresses: plans
            .iter()
            .filter(|component| component.component == Component::Gateway)
            .filter_map(|gateway| ingress::build_ingress(&identity, gateway))
            .collect(),
    }
}

impl ChildObjects {
    /// Every object as the JSON sent to the API server, with the resource (plural) it goes to, in [`Self::to_yaml`]'s
    /// order.
    pub fn to_json(&self) -> Result<Vec<(String, serde_json::Value)>, serde_json::Error> {
        fn add<K>(
            objects: &[K],
            into: &mut Vec<(String, serde_json::Value)>,
        ) -> Result<(), serde_json::Error>
        where
            K: kube::Resource<DynamicType = ()> + serde::Serialize,
        {
            for object in objects {
                into.push((K::plural(&()).into_owned(), serde_json::to_value(object)?));
            }
            Ok(())
        }
        let Self {
            service_account,
            config_maps,
            volume_claims,
            services,
            deployments,
            autoscalers,
            disruption_budgets,
            network_policies,
            ingresses,
        } = self;
        let mut all = Vec::new();
        add(std::slice::from_ref(service_account), &mut all)?;
        add(config_maps, &mut all)?;
        add(volume_claims, &mut all)?;
        add(services, &mut all)?;
        add(deployments, &mut all)?;
        add(autoscalers, &mut all)?;
        add(disruption_budgets, &mut all)?;
        add(network_policies, &mut all)?;
        add(ingresses, &mut all)?;
        Ok(all)
    }

    /// Every object as one multi-document YAML stream, in a stable order (kinds as a cluster needs them:
    /// identity and configuration first, workloads next, policies last).
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::ser::Error> {
        let Self {
            service_account,
            config_maps,
            volume_claims,
            services,
            deployments,
            autoscalers,
            disruption_budgets,
            network_policies,
            ingresses,
        } = self;
        let mut documents = vec![serde_saphyr::to_string(service_account)?];
        for object in config_maps {
            documents.push(serde_saphyr::to_string(object)?);
        }
        for object in volume_claims {
            documents.push(serde_saphyr::to_string(object)?);
        }
        for object in services {
            documents.push(serde_saphyr::to_string(object)?);
        }
        for object in deployments {
            documents.push(serde_saphyr::to_string(object)?);
        }
        for object in autoscalers {
            documents.push(serde_saphyr::to_string(object)?);
        }
        for object in disruption_budgets {
            documents.push(serde_saphyr::to_string(object)?);
        }
        for object in network_policies {
            documents.push(serde_saphyr::to_string(object)?);
        }
        for object in ingresses {
            documents.push(serde_saphyr::to_string(object)?);
        }
        Ok(documents
            .iter()
            .map(|document| format!("---\n{document}"))
            .collect())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::build::plan::ComponentPlan;

    /// An app called `shop` on SQLite, with `spec_extra` (YAML lines, indented by the caller) added to its spec.
    pub fn app_with(database: &str, spec_extra: &str) -> FoodDeliveryApp {
        let extra: String = spec_extra
            .lines()
            .map(|line| format!("  {line}\n"))
            .collect();
        let yaml = format!(
            "apiVersion: fooddelivery.dev/v1alpha1\nkind: FoodDeliveryApp\nmetadata: {{name: shop, namespace: food}}\nspec:\n  image: {{repository: example/food, tag: '1.0'}}\n  kafka: {{bootstrapServers: 'kafka:9092'}}\n  database: {database}\n{extra}"
        );
        crate::validate::parse_app(&yaml).unwrap_or_else(|error| panic!("{error}\n{yaml}"))
    }

    pub fn identity() -> AppIdentity {
        AppIdentity::of(&app_with("{sqlite: {}}", ""))
    }

    pub fn plan_of(spec_extra: &str) -> Vec<ComponentPlan> {
        let app = app_with("{sqlite: {}}", spec_extra);
        plan::plan("shop", &app.spec)
    }

    pub fn plan_of_postgres(spec_extra: &str) -> Vec<ComponentPlan> {
        let app = app_with(
            "{postgres: {urlSecretRef: {name: db, key: url}}}",
            spec_extra,
        );
        plan::plan("shop", &app.spec)
    }

    #[test]
    fn a_disabled_component_has_no_objects_and_the_gateway_does_not_route_to_it() {
        let app = app_with("{sqlite: {}}", "components: {stamp: {enabled: false}}");
        let objects = build(&app);
        assert_eq!(objects.deployments.len(), 7);
        assert!(
            objects
                .deployments
                .iter()
                .all(|deployment| deployment.metadata.name.as_deref() != Some("shop-stamp"))
        );
        let gateway = objects
            .config_maps
            .iter()
            .find(|map| {
                map.metadata
                    .name
                    .as_deref()
                    .is_some_and(|name| name.starts_with("shop-gateway-"))
            })
            .unwrap();
        assert!(!gateway.data.as_ref().unwrap()["GATEWAY_ROUTES"].contains("stamps="));
    }
}
