//! The committed CRD is what the code generates, and the Kubernetes API accepts it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_testkit::assert_valid_kubernetes;

const COMMITTED: &str = include_str!("../../crds/fooddeliveryapps.fooddelivery.dev.yaml");

#[test]
fn the_committed_crd_is_what_the_operator_generates() {
    let generated = food_delivery_operator::crd_yaml().unwrap();
    assert!(
        generated == COMMITTED,
        "crds/ is stale; regenerate it with\n  cargo run -p food-delivery-operator -- crd > crds/fooddeliveryapps.fooddelivery.dev.yaml"
    );
}

#[test]
fn the_crd_is_valid_against_the_kubernetes_schema() {
    assert_valid_kubernetes(COMMITTED);
}

#[test]
fn the_crd_is_namespaced_with_status_short_name_category_and_printer_columns() {
    let crd: serde_json::Value = serde_saphyr::from_str(COMMITTED).unwrap();
    let spec = &crd["spec"];
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["shortNames"][0], "fda");
    assert_eq!(spec["names"]["categories"][0], "food");
    let version = &spec["versions"][0];
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|column| column["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Ready", "Components", "Version", "Age"]);
    let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
    assert_eq!(status["observedGeneration"]["type"], "integer");
    assert_eq!(status["observedGeneration"]["format"], "int64");
}

#[test]
fn a_new_app_starts_with_observed_generation_minus_one_so_kstatus_waits_for_the_operator() {
    let crd: serde_json::Value = serde_saphyr::from_str(COMMITTED).unwrap();
    let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    assert_eq!(
        status["default"],
        serde_json::json!({"observedGeneration": -1})
    );
}
