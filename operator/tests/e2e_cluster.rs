//! Real-cluster end-to-end tests (a kind cluster): install the CRD, run the operator, apply the minimal example,
//! wait for Ready, delete a Service and see it come back, change the config and see the pods roll, then what the
//! fake API server cannot show: two minutes after Ready the operator writes nothing, and deleting the app keeps
//! its retained volumes.
//!
//! No cluster can run where CI runs; these tests need `FOOD_DELIVERY_E2E_KUBECONFIG` (a kubeconfig), and read
//! `FOOD_DELIVERY_E2E_IMAGE` (repository:tag loaded into the cluster) and `FOOD_DELIVERY_E2E_KAFKA` (bootstrap
//! servers reachable from the pods). With `FOOD_DELIVERY_E2E_INSTALLED_OPERATOR=1` they use the operator the chart
//! installed instead of running one in the test. Without the kubeconfig they print why they are skipped and pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_operator::controller::{RunOptions, run_with};
use food_delivery_operator::leader::LeaseSettings;
use food_delivery_operator::resource::FoodDeliveryApp;
use food_delivery_testkit::eventually_every;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(600);
/// How often a wait asks the cluster again: a real API server, shared with the controller under test.
const POLL: Duration = Duration::from_secs(2);

async fn cluster() -> Option<Client> {
    let Some(path) = std::env::var_os("FOOD_DELIVERY_E2E_KUBECONFIG") else {
        eprintln!(
            "skipped: no Kubernetes cluster here. Set FOOD_DELIVERY_E2E_KUBECONFIG to a kind cluster's kubeconfig \
             (with the image loaded and Kafka reachable) to run the real-cluster tests."
        );
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(path).expect("a readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Some(Client::try_from(config).expect("a client"))
}

/// Every child's `food-delivery-operator` managedFields entry (kind/name -> fields and time).
async fn operator_entries(client: &Client, namespace: &str) -> BTreeMap<String, Value> {
    let mut entries = BTreeMap::new();
    let selector =
        ListParams::default().labels("app.kubernetes.io/managed-by=food-delivery-operator");
    macro_rules! collect {
        ($kind:ty) => {
            for object in Api::<$kind>::namespaced(client.clone(), namespace)
                .list(&selector)
                .await
                .unwrap()
            {
                let entry = object
                    .metadata
                    .managed_fields
                    .unwrap_or_default()
                    .into_iter()
                    .find(|entry| entry.manager.as_deref() == Some("food-delivery-operator"));
                entries.insert(
                    format!(
                        "{} {}",
                        stringify!($kind),
                        object.metadata.name.unwrap_or_default()
                    ),
                    serde_json::to_value(entry).unwrap(),
                );
            }
        };
    }
    collect!(Deployment);
    collect!(Service);
    collect!(ConfigMap);
    collect!(PersistentVolumeClaim);
    entries
}

fn is_ready(app: &FoodDeliveryApp) -> bool {
    app.status.as_ref().is_some_and(|status| {
        status.observed_generation == app.metadata.generation
            && status
                .conditions
                .iter()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimal_example_becomes_ready_heals_a_deleted_service_and_rolls_on_a_config_change() {
    let Some(client) = cluster().await else {
        return;
    };
    let apply = PatchParams::apply("food-delivery-e2e").force();
    let crd: CustomResourceDefinition = serde_saphyr::from_str(include_str!(
        "../../crds/fooddeliveryapps.fooddelivery.dev.yaml"
    ))
    .unwrap();
    Api::<CustomResourceDefinition>::all(client.clone())
        .patch(
            "fooddeliveryapps.fooddelivery.dev",
            &apply,
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    let namespace = format!("food-e2e-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .unwrap();
    let in_test = std::env::var_os("FOOD_DELIVERY_E2E_INSTALLED_OPERATOR").is_none();
    let operator = in_test.then(|| {
        tokio::spawn(run_with(
            client.clone(),
            RunOptions {
                http_address: ([127, 0, 0, 1], 0).into(),
                lease: LeaseSettings {
                    name: "food-delivery-operator".into(),
                    namespace: namespace.clone(),
                    identity: "e2e".into(),
                    duration: Duration::from_secs(15),
                },
                namespace: Some(namespace.clone()),
            },
        ))
    });

    let mut manifest: Value =
        serde_saphyr::from_str(include_str!("../../examples/minimal.yaml")).unwrap();
    manifest["metadata"]["namespace"] = json!(namespace);
    if let Ok(image) = std::env::var("FOOD_DELIVERY_E2E_IMAGE") {
        let (repository, tag) = image
            .rsplit_once(':')
            .expect("FOOD_DELIVERY_E2E_IMAGE is repository:tag");
        manifest["spec"]["image"] =
            json!({"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"});
    }
    if let Ok(kafka) = std::env::var("FOOD_DELIVERY_E2E_KAFKA") {
        manifest["spec"]["kafka"]["bootstrapServers"] = json!(kafka);
    }
    let apps: Api<FoodDeliveryApp> = Api::namespaced(client.clone(), &namespace);
    apps.patch("minimal", &apply, &Patch::Apply(&manifest))
        .await
        .unwrap();
    eventually_every(POLL, WAIT, "the app to be Ready", async || {
        apps.get("minimal").await.ok().filter(is_ready)
    })
    .await;

    // Self-healing: a Service deleted by hand comes back.
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    services
        .delete("minimal-order", &DeleteParams::default())
        .await
        .unwrap();
    eventually_every(POLL, WAIT, "the Service to come back", async || {
        services.get_opt("minimal-order").await.ok().flatten()
    })
    .await;

    // A config change rolls the pods: a new config hash, a new generation, rolled out and Ready again.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let generation_before = deployments
        .get("minimal-order")
        .await
        .unwrap()
        .metadata
        .generation;
    manifest["spec"]["config"] = json!({"E2E_MARKER": "rolled"});
    apps.patch("minimal", &apply, &Patch::Apply(&manifest))
        .await
        .unwrap();
    eventually_every(POLL, WAIT, "the order pods to roll", async || {
        let deployment = deployments.get("minimal-order").await.ok()?;
        let status = deployment.status.clone()?;
        (deployment.metadata.generation > generation_before
            && status.observed_generation == deployment.metadata.generation
            && status.updated_replicas == status.replicas)
            .then_some(())
    })
    .await;
    eventually_every(POLL, WAIT, "Ready again", async || {
        apps.get("minimal").await.ok().filter(is_ready)
    })
    .await;

    // A soak: once Ready, the operator's own field manager changes nothing on any child for two minutes (the
    // server keeps the time of a manager's managedFields entry unless its apply changed something).
    let soak = Duration::from_secs(
        std::env::var("FOOD_DELIVERY_E2E_SOAK_SECONDS")
            .ok()
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or(120),
    );
    let before = operator_entries(&client, &namespace).await;
    assert!(!before.is_empty());
    tokio::time::sleep(soak).await;
    let after = operator_entries(&client, &namespace).await;
    assert_eq!(before, after, "the operator wrote during the soak");

    // Retain (the default): deleting the app garbage-collects its children but keeps the data volumes.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let claim_names: Vec<String> = claims
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|claim| claim.metadata.name.clone())
        .collect();
    assert!(
        !claim_names.is_empty(),
        "the minimal example has SQLite volumes"
    );
    apps.delete("minimal", &DeleteParams::background())
        .await
        .unwrap();
    eventually_every(POLL, WAIT, "the Deployments to be collected", async || {
        deployments
            .list(&Default::default())
            .await
            .ok()
            .filter(|list| list.items.is_empty())
    })
    .await;
    for name in &claim_names {
        let claim = claims.get(name).await.unwrap();
        assert!(
            claim.metadata.owner_references.is_none()
                && claim.metadata.deletion_timestamp.is_none(),
            "{name} outlives the app"
        );
    }

    if let Some(operator) = operator {
        operator.abort();
    }
    Api::<Namespace>::all(client)
        .delete(&namespace, &DeleteParams::default())
        .await
        .unwrap();
}
