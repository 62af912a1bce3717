//! A ConfigMap per component with its settings (environment variables): Kafka, logging, peers, guards, then
//! the app's shared config and the component's own. Its fingerprint goes into the pod template, so a change
//! rolls the pods.

use super::metadata::{AppIdentity, fingerprint};
use super::plan::ComponentPlan;
use k8s_openapi::api::core::v1::ConfigMap;

/// The component's ConfigMap, named like its Deployment.
pub fn build_config_map(app: &AppIdentity, component: &ComponentPlan) -> ConfigMap {
    ConfigMap {
        metadata: app.metadata(app.object_name(component.name), Some(component.name), true),
        data: Some(component.settings.clone()),
        ..ConfigMap::default()
    }
}

/// The fingerprint of a component's settings, for the pod template's annotation.
pub fn config_hash(component: &ComponentPlan) -> String {
    let parts: Vec<(&str, &str)> = component
        .settings
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    fingerprint(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{identity, plan_of};

    #[test]
    fn peers_kafka_and_overrides_are_in_the_settings_and_the_hash_follows_them() {
        let plans = plan_of(
            "components: {order: {config: {LOG_LEVEL: debug}, circuitBreaker: {timeoutMs: 610}}}\nconfig: {LOG_LEVEL: warn, FEATURE: x}",
        );
        let order = plans.iter().find(|plan| plan.name == "order").unwrap();
        let data = build_config_map(&identity(), order).data.unwrap();
        assert_eq!(data["PAYMENT_URL"], "http://shop-payment:8080");
        assert_eq!(data["PAYMENT_TIMEOUT_MS"], "610");
        assert_eq!(data["KAFKA_BOOTSTRAP_SERVERS"], "kafka:9092");
        assert_eq!(data["KAFKA_TOPIC_PREFIX"], "food");
        assert_eq!(
            data["LOG_LEVEL"], "debug",
            "the component's own setting wins"
        );
        assert_eq!(data["FEATURE"], "x");
        let gateway = plans.iter().find(|plan| plan.name == "gateway").unwrap();
        let routes = &build_config_map(&identity(), gateway).data.unwrap()["GATEWAY_ROUTES"];
        assert!(
            routes.starts_with("customers=http://shop-customer:8080,orders=http://shop-order:8080"),
            "{routes}"
        );
        let mut changed = order.clone();
        changed.settings.insert("FEATURE".into(), "y".into());
        assert_ne!(config_hash(order), config_hash(&changed));
    }
}
