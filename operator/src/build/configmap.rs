//! A ConfigMap per component with its settings (environment variables): Kafka, logging, peers, guards, then
//! the app's shared config and the component's own.
//!
//! Named after its content and immutable: a change of settings is a new ConfigMap, and the pod template names
//! it, so the change rolls the pods and a rollback (`kubectl rollout undo`, or a failed rollout's old pods)
//! runs with the settings of its own revision instead of the newest ones. The ones earlier revisions use are
//! kept as long as the Deployment keeps their ReplicaSets (see [`kept_config_maps`]).

use super::metadata::{AppIdentity, fingerprint, label};
use super::plan::ComponentPlan;
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::{BTreeMap, BTreeSet};

/// Earlier revisions' ConfigMaps kept per component: as many as the ReplicaSets a Deployment keeps
/// (`revisionHistoryLimit`).
pub const REVISIONS_KEPT: usize = 5;

/// The name of a component's ConfigMap: `<app>-<component>-<first 10 digits of its settings' fingerprint>`.
pub fn config_map_name(app: &AppIdentity, component: &ComponentPlan) -> String {
    let hash = config_hash(component);
    format!("{}-{}", app.object_name(component.component), &hash[..10])
}

/// The component's ConfigMap.
pub fn build_config_map(app: &AppIdentity, component: &ComponentPlan) -> ConfigMap {
    ConfigMap {
        metadata: app.metadata(
            config_map_name(app, component),
            Some(component.component),
            true,
        ),
        data: Some(component.settings.clone()),
        immutable: Some(true),
        ..ConfigMap::default()
    }
}

fn component_of(config_map: &ConfigMap) -> &str {
    config_map
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(label::COMPONENT))
        .map_or("", String::as_str)
}

/// Which of the app's existing ConfigMaps (`listed`) to keep besides the `wanted` ones: per component still
/// running, the [`REVISIONS_KEPT`] newest others, for the ReplicaSets of earlier revisions.
pub fn kept_config_maps(listed: &[ConfigMap], wanted: &[ConfigMap]) -> BTreeSet<String> {
    let running: BTreeSet<&str> = wanted.iter().map(component_of).collect();
    let wanted: BTreeSet<&str> = wanted
        .iter()
        .filter_map(|config_map| config_map.metadata.name.as_deref())
        .collect();
    let mut earlier: BTreeMap<&str, Vec<&ConfigMap>> = BTreeMap::new();
    for config_map in listed {
        let name = config_map.metadata.name.as_deref().unwrap_or_default();
        let component = component_of(config_map);
        if wanted.contains(name) || !running.contains(component) {
            continue;
        }
        earlier.entry(component).or_default().push(config_map);
    }
    let mut kept: BTreeSet<String> = wanted.iter().map(|name| (*name).to_owned()).collect();
    for mut config_maps in earlier.into_values() {
        // Newest first; the name breaks ties so the choice is stable.
        config_maps.sort_by(|left, right| {
            let created = |config_map: &ConfigMap| {
                config_map
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|time| time.0)
            };
            created(right)
                .cmp(&created(left))
                .then_with(|| left.metadata.name.cmp(&right.metadata.name))
        });
        kept.extend(
            config_maps
                .into_iter()
                .take(REVISIONS_KEPT)
                .filter_map(|config_map| config_map.metadata.name.clone()),
        );
    }
    kept
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
    use food_delivery_contract::Component;

    #[test]
    fn a_long_payment_timeout_lengthens_every_deadline_around_the_payment_call() {
        let settings_of = |plans: &[crate::build::plan::ComponentPlan], name: &str| {
            let component = plans
                .iter()
                .find(|plan| plan.component.name() == name)
                .unwrap();
            build_config_map(&identity(), component).data.unwrap()
        };
        let short = plan_of("components: {order: {circuitBreaker: {timeoutMs: 610}}}");
        for name in ["order", "gateway"] {
            let data = settings_of(&short, name);
            assert!(
                !data.contains_key("HTTP_REQUEST_TIMEOUT_MS"),
                "{name}: the default fits"
            );
            assert!(!data.contains_key("GATEWAY_ROUTE_TIMEOUTS_MS"), "{name}");
        }
        let medium = plan_of("components: {order: {circuitBreaker: {timeoutMs: 10000}}}");
        assert_eq!(
            settings_of(&medium, "gateway")["GATEWAY_ROUTE_TIMEOUTS_MS"],
            "orders=14000"
        );
        assert!(!settings_of(&medium, "order").contains_key("HTTP_REQUEST_TIMEOUT_MS"));
        let long = plan_of("components: {order: {circuitBreaker: {timeoutMs: 600000}}}");
        assert_eq!(
            settings_of(&long, "order")["HTTP_REQUEST_TIMEOUT_MS"],
            "602000"
        );
        let gateway = settings_of(&long, "gateway");
        assert_eq!(gateway["GATEWAY_ROUTE_TIMEOUTS_MS"], "orders=604000");
        assert_eq!(gateway["HTTP_REQUEST_TIMEOUT_MS"], "604000");
    }

    #[test]
    fn peers_kafka_and_overrides_are_in_the_settings_and_the_hash_follows_them() {
        let plans = plan_of(
            "components: {order: {config: {LOG_LEVEL: debug}, circuitBreaker: {timeoutMs: 610}}}\nconfig: {LOG_LEVEL: warn, FEATURE: x}",
        );
        let order = plans
            .iter()
            .find(|plan| plan.component == Component::Order)
            .unwrap();
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
        let gateway = plans
            .iter()
            .find(|plan| plan.component == Component::Gateway)
            .unwrap();
        let routes = &build_config_map(&identity(), gateway).data.unwrap()["GATEWAY_ROUTES"];
        assert!(
            routes.starts_with("customers=http://shop-customer:8080,orders=http://shop-order:8080"),
            "{routes}"
        );
        let mut changed = order.clone();
        changed.settings.insert("FEATURE".into(), "y".into());
        assert_ne!(config_hash(order), config_hash(&changed));
        let config_map = build_config_map(&identity(), order);
        assert_eq!(config_map.immutable, Some(true));
        assert_ne!(
            config_map.metadata.name,
            build_config_map(&identity(), &changed).metadata.name,
            "new settings, new ConfigMap"
        );
    }

    #[test]
    fn the_configmaps_of_the_last_revisions_are_kept_per_component() {
        let config_map = |name: &str, component: &str, second: i64| {
            let mut config_map = ConfigMap::default();
            config_map.metadata.name = Some(name.to_owned());
            config_map.metadata.labels = Some(BTreeMap::from([(
                label::COMPONENT.to_owned(),
                component.to_owned(),
            )]));
            config_map.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::from_second(second).unwrap(),
                ));
            config_map
        };
        let listed: Vec<ConfigMap> = (0..8)
            .map(|index| config_map(&format!("order-{index}"), "order", index))
            .chain([
                config_map("kitchen-0", "kitchen", 0),
                config_map("kitchen-1", "kitchen", 1),
                config_map("stamp-0", "stamp", 0),
            ])
            .collect();
        let wanted = [
            config_map("order-7", "order", 7),
            config_map("kitchen-1", "kitchen", 1),
        ];
        let kept = kept_config_maps(&listed, &wanted);
        // stamp is disabled: its ConfigMaps go with its Deployment.
        let expected: BTreeSet<String> = [
            "order-7",
            "order-6",
            "order-5",
            "order-4",
            "order-3",
            "order-2",
            "kitchen-1",
            "kitchen-0",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(kept, expected);
    }
}
