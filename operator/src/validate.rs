//! Validation of a `FoodDeliveryApp` before anything is built: what the API server would check, evaluated
//! client-side so `render` and a GitOps pipeline see the same verdict without a cluster.
//!
//! 1. The shape: the CRD's own OpenAPI schema (types, required fields, enums, patterns, ranges), strict about
//!    unknown fields as `kubectl apply` is by default;
//! 2. the CEL rules the CRD carries (built in `rules`, so the CRD and this check share one text), with kube's CEL
//!    interpreter.

use crate::resource::FoodDeliveryApp;
use kube::CustomResourceExt;
use serde_json::Value;

/// One thing wrong with an app, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, e.g. `spec.kafka.topicPrefix` (empty for the whole object).
    pub field: String,
    /// What is wrong, in the CRD's words.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(formatter, "{}", self.message)
        } else {
            write!(formatter, "{}: {}", self.field, self.message)
        }
    }
}

/// Why an app was refused.
#[derive(Debug, thiserror::Error)]
pub enum InvalidApp {
    /// Not YAML, or not a FoodDeliveryApp at all.
    #[error("{0}")]
    Unreadable(String),
    /// A FoodDeliveryApp that breaks the schema or a rule.
    #[error("invalid FoodDeliveryApp: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Violations(Vec<Violation>),
}

/// The CRD's openAPIV3Schema as generated.
fn crd_schema() -> Value {
    FoodDeliveryApp::crd()
        .spec
        .versions
        .first()
        .and_then(|version| version.schema.as_ref())
        .and_then(|schema| schema.open_api_v3_schema.as_ref())
        .and_then(|schema| serde_json::to_value(schema).ok())
        .unwrap_or(Value::Null)
}

/// The CRD's schema as the API server applies it to a create or update, strict about unknown fields.
fn strict_schema() -> Value {
    let mut schema = crd_schema();
    forbid_unknown_fields(&mut schema, true);
    schema
}

/// The CRD's CEL rules, compiled once (compiling them is most of the cost of a validation).
fn cel_rules() -> &'static (kube::core::cel::Validator, kube::core::cel::CompiledSchema) {
    static RULES: std::sync::OnceLock<(
        kube::core::cel::Validator,
        kube::core::cel::CompiledSchema,
    )> = std::sync::OnceLock::new();
    RULES.get_or_init(|| {
        (
            kube::core::cel::Validator::new(),
            kube::core::cel::compile_schema(&crd_schema()),
        )
    })
}

/// Sets `additionalProperties: false` on every object schema with declared properties, except the root (its
/// metadata is the API server's business).
fn forbid_unknown_fields(schema: &mut Value, root: bool) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.contains_key("properties") && !object.contains_key("additionalProperties") && !root {
        object.insert("additionalProperties".to_owned(), Value::Bool(false));
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            if !(root && name == "metadata") {
                forbid_unknown_fields(property, false);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = object.get_mut(key) {
            forbid_unknown_fields(inner, false);
        }
    }
}

/// The schema validator, compiled once: the CRD does not change while the process runs.
fn schema_validator() -> Result<&'static jsonschema::Validator, InvalidApp> {
    static VALIDATOR: std::sync::OnceLock<Result<jsonschema::Validator, String>> =
        std::sync::OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&strict_schema())
                .map_err(|error| format!("the CRD schema does not compile: {error}"))
        })
        .as_ref()
        .map_err(|error| InvalidApp::Unreadable(error.clone()))
}

fn field_of(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// Checks `object` (a parsed manifest) against the schema and the CEL rules; returns the typed app.
pub fn validate_value(object: &Value) -> Result<FoodDeliveryApp, InvalidApp> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "FoodDeliveryApp" || api_version != "fooddelivery.dev/v1alpha1" {
        return Err(InvalidApp::Unreadable(format!(
            "expected apiVersion fooddelivery.dev/v1alpha1 and kind FoodDeliveryApp, found '{api_version}' '{kind}'"
        )));
    }
    if let Some(problem) = name_problem(object.pointer("/metadata/name")) {
        return Err(InvalidApp::Violations(vec![Violation {
            field: "metadata.name".to_owned(),
            message: problem,
        }]));
    }
    let validator = schema_validator()?;
    let mut violations: Vec<Violation> = validator
        .iter_errors(object)
        .map(|error| Violation {
            field: field_of(error.instance_path().as_str()),
            message: error.to_string(),
        })
        .chain(config_key_problems(object))
        .collect();
    if !violations.is_empty() {
        violations.sort_by(|left, right| left.field.cmp(&right.field));
        return Err(InvalidApp::Violations(violations));
    }
    let app: FoodDeliveryApp = serde_json::from_value(object.clone())
        .map_err(|error| InvalidApp::Unreadable(format!("not a FoodDeliveryApp: {error}")))?;
    let (validator, rules) = cel_rules();
    let typed = serde_json::to_value(&app)
        .map_err(|error| InvalidApp::Unreadable(format!("not a FoodDeliveryApp: {error}")))?;
    if let Err(errors) = validator.validate_compiled(rules, &typed, None) {
        return Err(InvalidApp::Violations(
            errors
                .into_vec()
                .into_iter()
                .map(|error| Violation {
                    field: error.field_path,
                    message: error.message,
                })
                .collect(),
        ));
    }
    Ok(app)
}

/// `config` keys a ConfigMap would refuse (they become ConfigMap keys and the pods' environment variable names).
/// Checked here and not by a CEL rule in the CRD: a regular expression over map keys of unbounded length can
/// exceed the API server's cost budget for rules, which would make the whole CRD uninstallable.
fn config_key_problems(object: &Value) -> Vec<Violation> {
    let shared = object
        .pointer("/spec/config")
        .map(|config| ("spec.config".to_owned(), config));
    let own = object
        .pointer("/spec/components")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, component)| {
            Some((
                format!("spec.components.{name}.config"),
                component.get("config")?,
            ))
        });
    shared
        .into_iter()
        .chain(own)
        .flat_map(|(field, config)| {
            config
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, _)| key)
                .filter(|key| {
                    key.is_empty()
                        || key.len() > 253
                        || *key == "."
                        || *key == ".."
                        || !key
                            .bytes()
                            .all(|byte| byte.is_ascii_alphanumeric() || b"-._".contains(&byte))
                })
                .map(move |key| Violation {
                    field: field.clone(),
                    message: format!(
                        "key {key:?}: keys may contain only letters, digits, '-', '_' and '.' (at most 253 characters, not '.' or '..')"
                    ),
                })
        })
        .collect()
}

/// The longest app name whose objects still have valid names: a Service is named `<app>-<component>` and must
/// be a DNS label of at most 63 characters; the longest component name is 8 characters plus the dash.
pub const MAX_NAME_LENGTH: usize = 63 - "-customer".len();

/// What is wrong with the app's name, if anything (the API server checks names only as DNS subdomains; the
/// objects derived from it need more).
fn name_problem(name: Option<&Value>) -> Option<String> {
    let Some(name) = name.and_then(Value::as_str) else {
        return Some("is required".to_owned());
    };
    let label = name.len() <= MAX_NAME_LENGTH
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!label).then(|| {
        format!(
            "'{name}' must be a DNS label of at most {MAX_NAME_LENGTH} characters (lowercase letters, digits, '-', \
             starting with a letter): the app's Services are named <app>-<component>"
        )
    })
}

/// Parses one YAML document and validates it.
pub fn parse_app(yaml: &str) -> Result<FoodDeliveryApp, InvalidApp> {
    let object: Value = serde_saphyr::from_str(yaml)
        .map_err(|error| InvalidApp::Unreadable(format!("not YAML: {error}")))?;
    validate_value(&object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        serde_saphyr::from_str(include_str!("../../examples/minimal.yaml")).unwrap()
    }

    fn postgres() -> Value {
        serde_saphyr::from_str(include_str!("../../examples/production.yaml")).unwrap()
    }

    /// Sets `value` at the dotted `path` (creating objects on the way).
    fn with(mut object: Value, path: &str, value: Value) -> Value {
        let mut at = &mut object;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = at
                .as_object_mut()
                .unwrap()
                .entry(part.to_string())
                .or_insert_with(|| json!({}));
        }
        at.as_object_mut()
            .unwrap()
            .insert(parts[parts.len() - 1].to_owned(), value);
        object
    }

    fn without(mut object: Value, path: &str) -> Value {
        let mut at = &mut object;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = at.get_mut(*part).unwrap();
        }
        at.as_object_mut().unwrap().remove(parts[parts.len() - 1]);
        object
    }

    #[test]
    fn every_example_is_valid() {
        for example in [
            include_str!("../../examples/minimal.yaml"),
            include_str!("../../examples/production.yaml"),
            include_str!("../../examples/original-checklist.yaml"),
        ] {
            if let Err(error) = parse_app(example) {
                panic!("{error}\n{example}");
            }
        }
    }

    #[test]
    fn invalid_specs_are_refused_with_a_message_naming_the_field_and_the_rule() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "a rollout that could never replace a pod",
                with(
                    postgres(),
                    "spec.rollout",
                    json!({"maxSurge": "0%", "maxUnavailable": "0"}),
                ),
                "maxSurge and maxUnavailable cannot both be 0",
            ),
            (
                "a rollout whose surge is zero and whose unavailability defaults to zero",
                with(postgres(), "spec.rollout", json!({"maxSurge": "0"})),
                "maxSurge and maxUnavailable cannot both be 0",
            ),
            (
                "a log volume without an access mode",
                with(
                    postgres(),
                    "spec.logging",
                    json!({"persistence": {"size": "1Gi"}}),
                ),
                "logging.persistence.accessMode: choose ReadWriteMany",
            ),
            (
                "a config key a ConfigMap refuses",
                with(postgres(), "spec.config", json!({"LOG LEVEL": "info"})),
                "key \"LOG LEVEL\": keys may contain only",
            ),
            (
                "a component config key a ConfigMap refuses",
                with(
                    postgres(),
                    "spec.components.order",
                    json!({"config": {"A=B": "1"}}),
                ),
                "key \"A=B\": keys may contain only",
            ),
            (
                "min above max",
                with(
                    postgres(),
                    "spec.defaults.autoscaling",
                    json!({"minReplicas": 5, "maxReplicas": 2}),
                ),
                "minReplicas must not exceed maxReplicas",
            ),
            (
                "two databases",
                with(
                    minimal(),
                    "spec.database.postgres",
                    json!({"urlSecretRef": {"name": "db", "key": "url"}}),
                ),
                "set exactly one of postgres or sqlite",
            ),
            (
                "no database",
                with(minimal(), "spec.database", json!({})),
                "set exactly one of postgres or sqlite",
            ),
            (
                "sqlite with replicas",
                with(minimal(), "spec.components.order", json!({"replicas": 2})),
                "components.order: SQLite (a ReadWriteOnce volume) allows one replica",
            ),
            (
                "sqlite with default replicas",
                with(minimal(), "spec.defaults", json!({"replicas": 3})),
                "components.customer: SQLite",
            ),
            (
                "sqlite with autoscaling",
                with(
                    minimal(),
                    "spec.components.mypage",
                    json!({"autoscaling": {"minReplicas": 2}}),
                ),
                "components.mypage: SQLite",
            ),
            (
                "component sqlite override with replicas",
                with(
                    postgres(),
                    "spec.components.stamp",
                    json!({"database": {"sqlite": {}}, "autoscaling": {"maxReplicas": 3}}),
                ),
                "components.stamp: SQLite",
            ),
            (
                "bad topic prefix",
                with(minimal(), "spec.kafka.topicPrefix", json!("food/orders")),
                "kafka.topicPrefix may contain only",
            ),
            (
                "dot topic prefix",
                with(minimal(), "spec.kafka.topicPrefix", json!("..")),
                "cannot be '.' or '..'",
            ),
            (
                "no tag or digest",
                without(minimal(), "spec.image.tag"),
                "image: set a tag or a digest",
            ),
            (
                "bad digest",
                with(minimal(), "spec.image.digest", json!("sha256:xyz")),
                "spec.image.digest",
            ),
            (
                "negative replicas",
                with(postgres(), "spec.defaults.replicas", json!(-1)),
                "spec.defaults.replicas",
            ),
            (
                "unknown field",
                with(minimal(), "spec.replicaz", json!(3)),
                "replicaz",
            ),
            (
                "wrong type",
                with(minimal(), "spec.kafka.topicPartitions", json!("many")),
                "spec.kafka.topicPartitions",
            ),
            (
                "unknown enum",
                with(minimal(), "spec.image.pullPolicy", json!("Sometimes")),
                "spec.image.pullPolicy",
            ),
            ("missing kafka", without(minimal(), "spec.kafka"), "kafka"),
            (
                "no name",
                without(minimal(), "metadata.name"),
                "metadata.name: is required",
            ),
            (
                "bad name",
                with(minimal(), "metadata.name", json!("Shop_1")),
                "metadata.name: 'Shop_1' must be a DNS label",
            ),
            (
                "long name",
                with(minimal(), "metadata.name", json!("a".repeat(55))),
                "at most 54 characters",
            ),
        ];
        for (name, object, expected) in cases {
            match validate_value(&object) {
                Ok(_) => panic!("{name}: accepted"),
                Err(error) => {
                    let text = error.to_string();
                    assert!(
                        text.contains(expected),
                        "{name}: '{text}' does not mention '{expected}'"
                    );
                }
            }
        }
    }

    #[test]
    fn what_a_claim_cannot_change_is_refused_on_update_and_not_on_create() {
        let app = |class: &str, mode: &str| -> FoodDeliveryApp {
            let object = with(
                minimal(),
                "spec.logging",
                json!({"persistence": {"size": "1Gi", "accessMode": mode, "storageClassName": class}}),
            );
            validate_value(&object).unwrap()
        };
        let before = app("fast", "ReadWriteOnce");
        assert!(
            kube::core::cel::validate_cel_update(&app("fast", "ReadWriteOnce"), &before).is_ok()
        );
        let errors = kube::core::cel::validate_cel_update(&app("slow", "ReadWriteMany"), &before)
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("persistence.storageClassName cannot change"),
            "{errors}"
        );
        assert!(errors.contains("accessMode cannot change"), "{errors}");
    }

    #[test]
    fn a_data_volumes_class_cannot_change_once_it_exists_for_the_app_or_one_component() {
        let app = |path: &str, class: Option<&str>| -> FoodDeliveryApp {
            let storage = match class {
                Some(class) => json!({"size": "1Gi", "storageClassName": class}),
                None => json!({"size": "1Gi"}),
            };
            let object = with(minimal(), path, json!({"sqlite": {"storage": storage}}));
            validate_value(&object).unwrap()
        };
        for path in ["spec.database", "spec.components.kitchen.database"] {
            let before = app(path, Some("fast"));
            assert!(
                kube::core::cel::validate_cel_update(&app(path, Some("fast")), &before).is_ok(),
                "{path}: the same class"
            );
            for after in [Some("slow"), None] {
                let errors = kube::core::cel::validate_cel_update(&app(path, after), &before)
                    .unwrap_err()
                    .to_string();
                assert!(
                    errors.contains("storage.storageClassName cannot change"),
                    "{path} -> {after:?}: {errors}"
                );
            }
        }
    }

    #[test]
    fn sqlite_rules_accept_what_they_should() {
        let accepted = [
            with(minimal(), "spec.components.order", json!({"replicas": 1})),
            with(
                minimal(),
                "spec.components.order",
                json!({"enabled": false, "replicas": 3}),
            ),
            with(
                minimal(),
                "spec.components.order",
                json!({"database": {"postgres": {"urlSecretRef": {"name": "db", "key": "url"}}}, "replicas": 3}),
            ),
            with(minimal(), "spec.components.gateway", json!({"replicas": 3})),
            with(
                postgres(),
                "spec.components.stamp",
                json!({"database": {"sqlite": {}}, "replicas": 1}),
            ),
        ];
        for object in accepted {
            if let Err(error) = validate_value(&object) {
                panic!("{error}: {object}");
            }
        }
    }

    #[test]
    fn something_else_is_not_a_food_delivery_app() {
        let error = parse_app("apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("expected apiVersion fooddelivery.dev/v1alpha1")
        );
        assert!(parse_app(": : :").is_err());
    }
}
