//! A Service per component on the HTTP port; the gateway's type is configurable, the others are ClusterIP.

use super::metadata::AppIdentity;
use super::plan::ComponentPlan;
use crate::resource::ServiceType;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The component's Service, named like its Deployment (peers reach it at `http://<app>-<component>:8080`).
pub fn build_service(app: &AppIdentity, component: &ComponentPlan) -> Service {
    let service_type = match component
        .expose
        .as_ref()
        .and_then(|expose| expose.service_type)
    {
        Some(ServiceType::LoadBalancer) => "LoadBalancer",
        Some(ServiceType::NodePort) => "NodePort",
        Some(ServiceType::ClusterIP) | None => "ClusterIP",
    };
    Service {
        metadata: app.metadata(
            app.object_name(component.component),
            Some(component.component),
            true,
        ),
        spec: Some(ServiceSpec {
            type_: Some(service_type.to_owned()),
            selector: Some(app.selector(component.component)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: i32::from(food_delivery_contract::HTTP_PORT),
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{identity, plan_of};
    use food_delivery_contract::Component;

    #[test]
    fn the_gateway_type_is_configurable_and_the_rest_are_cluster_ip() {
        let plans = plan_of("components: {gateway: {expose: {serviceType: LoadBalancer}}}");
        for plan in &plans {
            let spec = build_service(&identity(), plan).spec.unwrap();
            let expected = if plan.component == Component::Gateway {
                "LoadBalancer"
            } else {
                "ClusterIP"
            };
            assert_eq!(spec.type_.as_deref(), Some(expected), "{}", plan.component);
            assert_eq!(
                spec.selector.unwrap().len(),
                2,
                "instance and component only"
            );
        }
    }
}
