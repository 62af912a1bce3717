//! Properties of the build over random specs: every spec validation accepts renders, and the checklist holds
//! for every object; anything else is refused with an error, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_operator::build::{ChildObjects, build};
use food_delivery_operator::server_rules;
use food_delivery_operator::validate::validate_value;
use k8s_openapi::api::apps::v1::Deployment;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const COMPONENTS: [&str; 8] = [
    "gateway", "customer", "order", "payment", "kitchen", "delivery", "mypage", "stamp",
];

fn database() -> impl Strategy<Value = Value> {
    // Mostly PostgreSQL: SQLite with any scaling is (rightly) refused, and the properties need valid apps.
    prop_oneof![
        1 => Just(json!({"sqlite": {"storage": {"size": "2Gi"}}})),
        3 => Just(json!({"postgres": {"urlSecretRef": {"name": "db", "key": "url"}}})),
    ]
}

fn autoscaling() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of((1..5i32, 1..9i32, 10..95i32).prop_map(|(min, max, cpu)| {
        json!({"minReplicas": min, "maxReplicas": max, "targetCPUUtilizationPercentage": cpu})
    }))
}

fn component(name: &'static str) -> impl Strategy<Value = Option<Value>> {
    proptest::option::of((
        proptest::option::of(any::<bool>()),
        proptest::option::of(0..5i32),
        autoscaling(),
        proptest::option::of(database()),
    ))
    .prop_map(move |component| {
        component.map(|(enabled, replicas, autoscaling, database)| {
            let mut object = serde_json::Map::new();
            if let Some(enabled) = enabled {
                object.insert("enabled".into(), json!(enabled));
            }
            if let Some(replicas) = replicas {
                object.insert("replicas".into(), json!(replicas));
            }
            if let Some(autoscaling) = autoscaling {
                object.insert("autoscaling".into(), autoscaling);
            }
            if let (Some(database), false) = (database, name == "gateway") {
                object.insert("database".into(), database);
            }
            Value::Object(object)
        })
    })
}

/// Random apps: many valid, many breaking a rule on purpose.
fn app() -> impl Strategy<Value = Value> {
    let components = COMPONENTS.map(component);
    (
        prop_oneof![Just("shop"), Just("good-morning"), Just("a")],
        database(),
        proptest::option::of(0..4i32),
        autoscaling(),
        components,
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            Just(None),
            Just(Some("sha256:".to_owned() + &"ab".repeat(32)))
        ],
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
        proptest::option::of(("[0-9]{1,2}%?", "[0-9]{1,2}%?")),
        proptest::collection::btree_map(
            prop_oneof![9 => "[-._a-zA-Z0-9]{1,8}", 1 => "[A-Z]{1,3}[ =][A-Z]{1,3}"],
            "[a-z]{0,4}",
            0..3,
        ),
    )
        .prop_map(
            |(
                name,
                database,
                replicas,
                autoscaling,
                components,
                network_policy,
                logs,
                digest,
                tag,
                rollout,
                config,
            )| {
                let mut defaults = serde_json::Map::new();
                if let Some(replicas) = replicas {
                    defaults.insert("replicas".into(), json!(replicas));
                }
                if let Some(autoscaling) = autoscaling {
                    defaults.insert("autoscaling".into(), autoscaling);
                }
                let mut listed = serde_json::Map::new();
                for (name, component) in COMPONENTS.iter().zip(components) {
                    if let Some(component) = component {
                        listed.insert((*name).to_owned(), component);
                    }
                }
                let mut image = json!({"repository": "example/food", "tag": tag});
                if let Some(digest) = digest {
                    image["digest"] = json!(digest);
                }
                let mut spec = json!({
                    "image": image,
                    "kafka": {"bootstrapServers": "kafka:9092"},
                    "database": database,
                    "defaults": defaults,
                    "components": listed,
                    "networkPolicy": {"enabled": network_policy},
                });
                if logs {
                    spec["logging"] =
                        json!({"persistence": {"size": "1Gi", "accessMode": "ReadWriteOnce"}});
                }
                if let Some((max_surge, max_unavailable)) = rollout {
                    spec["rollout"] =
                        json!({"maxSurge": max_surge, "maxUnavailable": max_unavailable});
                }
                spec["config"] = json!(config);
                json!({
                    "apiVersion": "fooddelivery.dev/v1alpha1",
                    "kind": "FoodDeliveryApp",
                    "metadata": {"name": name, "namespace": "food"},
                    "spec": spec,
                })
            },
        )
}

fn minimum(deployment: &Deployment, autoscaled: &BTreeMap<String, i32>) -> i32 {
    let name = deployment.metadata.name.clone().unwrap();
    autoscaled
        .get(&name)
        .copied()
        .unwrap_or_else(|| deployment.spec.clone().unwrap().replicas.unwrap_or(1))
}

fn check_invariants(name: &str, objects: &ChildObjects) {
    let autoscaled: BTreeMap<String, i32> = objects
        .autoscalers
        .iter()
        .map(|hpa| {
            let spec = hpa.spec.clone().unwrap();
            (spec.scale_target_ref.name, spec.min_replicas.unwrap())
        })
        .collect();
    let budgets: Vec<String> = objects
        .disruption_budgets
        .iter()
        .map(|pdb| pdb.metadata.name.clone().unwrap())
        .collect();
    for deployment in &objects.deployments {
        let deployment_name = deployment.metadata.name.clone().unwrap();
        let component = deployment_name.strip_prefix(&format!("{name}-")).unwrap();
        let spec = deployment.spec.clone().unwrap();
        // The selector is a function of the app's name and the component, nothing else.
        let selector = spec.selector.match_labels.clone().unwrap();
        assert_eq!(selector.len(), 2);
        assert_eq!(selector["app.kubernetes.io/instance"], name);
        assert_eq!(selector["app.kubernetes.io/component"], component);
        // No replica count when an HPA owns it, one otherwise.
        assert_eq!(
            spec.replicas.is_none(),
            autoscaled.contains_key(&deployment_name),
            "{deployment_name}"
        );
        // A budget exactly when at least two replicas always run.
        assert_eq!(
            budgets.contains(&deployment_name),
            minimum(deployment, &autoscaled) >= 2,
            "{deployment_name}"
        );
        let pod = spec.template.spec.unwrap();
        let pod_security = pod.security_context.unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(
            pod_security.seccomp_profile.unwrap().type_,
            "RuntimeDefault"
        );
        for container in &pod.containers {
            let resources = container.resources.clone().unwrap();
            let requests = resources.requests.unwrap();
            assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
            assert!(resources.limits.unwrap().contains_key("memory"));
            assert!(container.startup_probe.is_some());
            assert!(container.readiness_probe.is_some());
            assert!(container.liveness_probe.is_some());
            let security = container.security_context.clone().unwrap();
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert_eq!(security.read_only_root_filesystem, Some(true));
            assert_eq!(security.run_as_non_root, Some(true));
            assert_eq!(security.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        }
        // A pod on a ReadWriteOnce volume never has a second writer.
        let on_volume = pod
            .volumes
            .unwrap_or_default()
            .iter()
            .any(|volume| volume.name == "data");
        if on_volume {
            assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
            assert!(spec.replicas.unwrap_or(0) <= 1);
        }
    }
}

/// What the API server would refuse among the built objects, after its defaulting.
fn refused_by_the_server(objects: &ChildObjects) -> Vec<String> {
    objects
        .to_json()
        .unwrap()
        .into_iter()
        .flat_map(|(plural, mut object)| {
            server_rules::normalize(&plural, &mut object);
            let name = object["metadata"]["name"].clone();
            server_rules::validate(&plural, None, &object)
                .into_iter()
                .map(move |cause| format!("{plural} {name}: {}: {}", cause.field, cause.message))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_valid_spec_renders_with_the_whole_checklist(app in app()) {
        if let Ok(valid) = validate_value(&app) {
            let objects = build(&valid);
            check_invariants(app["metadata"]["name"].as_str().unwrap(), &objects);
            prop_assert!(objects.to_yaml().is_ok());
            let refused = refused_by_the_server(&objects);
            prop_assert!(refused.is_empty(), "the CRD accepted what the server refuses: {refused:#?}");
        }
    }

    #[test]
    fn anything_at_any_field_is_refused_or_rendered_never_a_panic(
        app in app(),
        path in proptest::sample::select(vec![
            "spec", "spec.image", "spec.image.tag", "spec.kafka", "spec.kafka.topicPrefix", "spec.database",
            "spec.defaults", "spec.defaults.replicas", "spec.components", "spec.components.order",
            "spec.rollout", "spec.logging", "metadata", "kind",
        ]),
        value in prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            Just(json!({})),
            Just(json!([1, "x"])),
            Just(json!({"replicas": -3, "autoscaling": {"minReplicas": 9, "maxReplicas": 1}})),
        ],
    ) {
        let mut app = app;
        let mut at = &mut app;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = &mut at[*part];
        }
        if let Some(object) = at.as_object_mut() {
            object.insert(parts[parts.len() - 1].to_owned(), value);
        }
        if let Ok(valid) = validate_value(&app) {
            check_invariants(valid.metadata.name.as_deref().unwrap(), &build(&valid));
        }
    }
}

#[test]
fn the_generator_gives_enough_valid_apps_for_the_properties_to_mean_something() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = app();
    let valid = (0..400)
        .filter(|_| validate_value(&strategy.new_tree(&mut runner).unwrap().current()).is_ok())
        .count();
    assert!(
        (100..400).contains(&valid),
        "{valid} of 400 generated apps are valid"
    );
}
