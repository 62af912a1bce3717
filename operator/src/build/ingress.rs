//! An Ingress in front of the gateway, when the spec asks for one.

use super::metadata::AppIdentity;
use super::plan::ComponentPlan;
use food_delivery_contract::Component;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

/// The gateway's Ingress, if configured.
pub fn build_ingress(app: &AppIdentity, gateway: &ComponentPlan) -> Option<Ingress> {
    let ingress = gateway.expose.as_ref()?.ingress.as_ref()?;
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: app.object_name(Component::Gateway),
            port: Some(ServiceBackendPort {
                name: Some("http".to_owned()),
                number: None,
            }),
        }),
        ..IngressBackend::default()
    };
    Some(Ingress {
        metadata: app.metadata(
            app.object_name(Component::Gateway),
            Some(Component::Gateway),
            true,
        ),
        spec: Some(IngressSpec {
            ingress_class_name: ingress.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(ingress.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend,
                    }],
                }),
            }]),
            tls: ingress.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![ingress.host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{identity, plan_of};

    #[test]
    fn the_gateway_gets_an_ingress_only_when_asked_with_tls_when_given() {
        let plans = plan_of(
            "components: {gateway: {expose: {ingress: {host: food.example.org, className: nginx, tlsSecretName: tls}}}}",
        );
        let spec = build_ingress(&identity(), &plans[0]).unwrap().spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some("food.example.org"));
        let backend = rule.http.clone().unwrap().paths[0]
            .backend
            .service
            .clone()
            .unwrap();
        assert_eq!(backend.name, "shop-gateway");
        assert_eq!(spec.tls.unwrap()[0].secret_name.as_deref(), Some("tls"));
        assert!(build_ingress(&identity(), &plan_of("")[0]).is_none());
    }
}
