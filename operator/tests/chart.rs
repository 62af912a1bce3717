//! The Helm chart, rendered and linted by Helm's own engine (helm-python-sdk): schema-valid objects for
//! Kubernetes 1.33, the same CRD as crds/, least privilege (exactly the operator's permissions) and a values
//! schema that refuses mistakes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_operator::rbac::{Permission, required};
use food_delivery_testkit::{assert_valid_kubernetes, python_tool};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../charts/food-delivery-operator"
);

/// Runs `program` (Python, with `helm` imported and `chart` loaded) and returns its JSON output.
fn helm(program: &str, argument: &Value) -> Value {
    let script = format!(
        "import json, sys\nimport helm_python as helm\nchart = helm.Chart.load(sys.argv[1])\nargument = json.loads(sys.argv[2])\n{program}"
    );
    let output = Command::new(python_tool("python"))
        .args(["-c", &script, CHART, &argument.to_string()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every object the chart renders with `values`, by kind/name.
fn render(values: &Value) -> BTreeMap<String, Value> {
    let manifests = helm(
        "print(json.dumps(chart.render(argument, name='food', namespace='operators', is_install=True)))",
        values,
    );
    let mut objects = BTreeMap::new();
    for (template, text) in manifests.as_object().unwrap() {
        if template.ends_with("NOTES.txt") {
            continue;
        }
        for document in text.as_str().unwrap().split("\n---") {
            let object: Value = serde_saphyr::from_str(document).unwrap_or(Value::Null);
            if object.is_object() {
                let key = format!(
                    "{}/{}",
                    object["kind"].as_str().unwrap(),
                    object["metadata"]["name"].as_str().unwrap()
                );
                objects.insert(key, object);
            }
        }
    }
    objects
}

fn to_yaml(objects: &BTreeMap<String, Value>) -> String {
    objects
        .values()
        .filter(|object| object["kind"] != "ServiceMonitor")
        .map(|object| format!("---\n{}", serde_saphyr::to_string(object).unwrap()))
        .collect()
}

#[test]
fn the_chart_renders_schema_valid_objects_with_default_and_custom_values_and_lints_clean() {
    let defaults = render(&json!({}));
    let kinds: BTreeSet<&str> = defaults
        .values()
        .map(|object| object["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ])
    );
    assert_valid_kubernetes(&to_yaml(&defaults));
    let deployment = &defaults["Deployment/food-food-delivery-operator"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    assert_eq!(
        pod["containers"][0]["image"],
        "ghcr.io/food-delivery-operator/food-delivery:0.1.0"
    );

    let custom = render(&json!({
        "watchNamespace": "food", "replicaCount": 1, "image": {"repository": "example/food", "tag": "dev"},
        "metrics": {"serviceMonitor": {"enabled": true}}, "podDisruptionBudget": {"enabled": true},
        "podAnnotations": {"rolled": "1"},
    }));
    assert_eq!(
        custom["Deployment/food-food-delivery-operator"]["spec"]["template"]["metadata"]["annotations"]
            ["rolled"],
        "1",
        "a pod annotation rolls the operator (the kind workflow's upgrade step)"
    );
    assert!(
        custom.contains_key("Role/food-food-delivery-operator"),
        "one namespace: a Role"
    );
    assert!(
        !custom.keys().any(|key| key.starts_with("ClusterRole")),
        "and no cluster-wide grant"
    );
    assert!(
        !custom.contains_key("PodDisruptionBudget/food-food-delivery-operator"),
        "no PDB for one replica"
    );
    assert!(custom.contains_key("ServiceMonitor/food-food-delivery-operator"));
    assert_eq!(
        custom["Role/food-food-delivery-operator"]["metadata"]["namespace"],
        "food"
    );
    assert_valid_kubernetes(&to_yaml(&custom));

    let report = helm(
        "print(json.dumps(helm.lint(sys.argv[1], argument, strict=True, kube_version='v1.33.0')))",
        &json!({}),
    );
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    let findings: Vec<&Value> = report["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|message| message["severity"].as_i64().unwrap() >= 2)
        .collect();
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn the_charts_crd_is_the_committed_one() {
    let chart = std::fs::read_to_string(format!(
        "{CHART}/crds/fooddeliveryapps.fooddelivery.dev.yaml"
    ))
    .unwrap();
    assert!(
        chart == include_str!("../../crds/fooddeliveryapps.fooddelivery.dev.yaml"),
        "charts/food-delivery-operator/crds is stale: scripts/update-golden.sh copies crds/ into the chart"
    );
}

#[test]
fn the_role_grants_exactly_what_the_operator_uses() {
    let objects = render(&json!({}));
    let mut granted: Vec<Permission> = Vec::new();
    for key in [
        "ClusterRole/food-food-delivery-operator",
        "Role/food-food-delivery-operator-leader",
    ] {
        for rule in objects[key]["rules"].as_array().unwrap() {
            let verbs: BTreeSet<String> = rule["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|verb| verb.as_str().unwrap().to_owned())
                .collect();
            assert!(!verbs.contains("*"), "no wildcards");
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    granted.push(Permission {
                        group: group.as_str().unwrap().to_owned(),
                        resource: resource.as_str().unwrap().to_owned(),
                        verbs: verbs.clone(),
                    });
                }
            }
        }
    }
    granted.sort();
    assert_eq!(granted, required());
}

#[test]
fn the_values_schema_refuses_a_wrong_type_and_an_unknown_key() {
    let verdicts = helm(
        "out = []\nfor values in argument:\n    try:\n        chart.validate_schema(values)\n        out.append('ok')\n    except Exception as error:\n        out.append(str(error))\nprint(json.dumps(out))",
        &json!([{}, {"replicaCount": "two"}, {"replicaz": 2}, {"image": {"pullPolicy": "Sometimes"}}]),
    );
    let verdicts: Vec<&str> = verdicts
        .as_array()
        .unwrap()
        .iter()
        .map(|verdict| verdict.as_str().unwrap())
        .collect();
    assert_eq!(verdicts[0], "ok");
    assert!(verdicts[1].contains("replicaCount"), "{}", verdicts[1]);
    assert!(verdicts[2].contains("replicaz"), "{}", verdicts[2]);
    assert!(verdicts[3].contains("pullPolicy"), "{}", verdicts[3]);
}
