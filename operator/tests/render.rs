//! `render` on the examples: the output equals the reviewed golden files, every object is valid against the
//! Kubernetes 1.33 schema, and the command refuses bad input with a message naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_testkit::assert_valid_kubernetes;
use std::io::Write;
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_food-delivery-operator");

const EXAMPLES: [(&str, &str, &str); 3] = [
    (
        "minimal",
        include_str!("../../examples/minimal.yaml"),
        include_str!("golden/minimal.yaml"),
    ),
    (
        "production",
        include_str!("../../examples/production.yaml"),
        include_str!("golden/production.yaml"),
    ),
    (
        "original-checklist",
        include_str!("../../examples/original-checklist.yaml"),
        include_str!("golden/original-checklist.yaml"),
    ),
];

#[test]
fn each_example_renders_exactly_its_reviewed_golden_file() {
    for (name, example, golden) in EXAMPLES {
        let rendered = food_delivery_operator::render(example).unwrap();
        assert!(
            rendered == golden,
            "examples/{name}.yaml no longer renders operator/tests/golden/{name}.yaml; if the change is intended, \
             run scripts/update-golden.sh and review the diff"
        );
    }
}

#[test]
fn every_rendered_object_is_valid_against_the_kubernetes_schema() {
    let all: String = EXAMPLES.iter().map(|(_, _, golden)| *golden).collect();
    assert_valid_kubernetes(&all);
}

#[test]
fn render_prints_the_objects_and_refuses_an_invalid_app_naming_the_field() {
    let output = Command::new(BINARY)
        .args(["render", "-f", "../examples/minimal.yaml"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap(), EXAMPLES[0].2);

    let invalid = EXAMPLES[0].1.replace(
        "tag: \"0.1.0\"",
        "tag: \"0.1.0\"\n    pullPolicy: Sometimes",
    );
    let mut child = Command::new(BINARY)
        .args(["render", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(invalid.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        output.stdout.is_empty(),
        "nothing is rendered for an invalid app"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("spec.image.pullPolicy"), "{stderr}");

    let missing = Command::new(BINARY)
        .args(["render", "-f", "no-such-file.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such-file.yaml"));
}

#[test]
fn render_warns_when_the_pools_at_full_scale_do_not_fit_the_database() {
    let production = include_str!("../../examples/production.yaml");
    assert!(
        food_delivery_operator::render_warnings(production)
            .unwrap()
            .is_empty(),
        "the production example gives a budget that fits"
    );
    let without_budget = production.replace("      maxConnections: 400\n", "");
    let warnings = food_delivery_operator::render_warnings(&without_budget).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("79 pods"), "{}", warnings[0]);
}

#[test]
fn each_command_explains_itself_in_its_help() {
    let help = |command: &str| {
        let output = Command::new(BINARY)
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8(output.stdout).unwrap()
    };
    let run = help("run");
    assert!(run.starts_with("Run the controller"), "{run}");
    assert!(!run.contains("Validate"), "{run}");
    let render = help("render");
    assert!(render.starts_with("Validate a FoodDeliveryApp"), "{render}");
    assert!(help("crd").starts_with("Print the FoodDeliveryApp CustomResourceDefinition"));
}
