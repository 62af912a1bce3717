//! A model of what the Kubernetes API server does to an object between the request and storage, for the kinds
//! the operator writes: defaulting, the zero values it drops (non-pointer Go fields with `omitempty`), canonical
//! quantities, and the validation rules the operator could trip over. The fake API server of the controller's
//! tests applies it, and the build's properties check every built object against it. Where unsure, stricter.

use crate::build::quantity;
use serde_json::{Value, json};

/// Zero values the server drops: fields that are plain (non-pointer) Go values with `omitempty`.
const OMITTED_WHEN_FALSE: [&str; 6] = [
    "readOnly",
    "stdin",
    "stdinOnce",
    "tty",
    "paused",
    "publishNotReadyAddresses",
];
const OMITTED_WHEN_ZERO: [&str; 2] = ["hostPort", "minReadySeconds"];

/// Fields holding quantities.
fn holds_quantities(name: &str) -> bool {
    matches!(name, "requests" | "limits")
}

/// The object as the server stores it.
pub fn normalize(plural: &str, object: &mut Value) {
    drop_zero_values(object);
    match plural {
        "deployments" => {
            let spec = &mut object["spec"];
            if spec.get("replicas").is_none() {
                spec["replicas"] = json!(1);
            }
            for (field, default) in [
                ("revisionHistoryLimit", json!(10)),
                ("progressDeadlineSeconds", json!(600)),
            ] {
                if spec.get(field).is_none() {
                    spec[field] = default;
                }
            }
            if spec.pointer("/strategy/type").is_none() {
                spec["strategy"]["type"] = json!("RollingUpdate");
            }
            if let Some(containers) = spec
                .pointer_mut("/template/spec/containers")
                .and_then(Value::as_array_mut)
            {
                for port in containers
                    .iter_mut()
                    .filter_map(|container| container.get_mut("ports"))
                    .filter_map(Value::as_array_mut)
                    .flatten()
                {
                    if port.get("protocol").is_none() {
                        port["protocol"] = json!("TCP");
                    }
                }
            }
        }
        "services" => {
            if let Some(ports) = object
                .pointer_mut("/spec/ports")
                .and_then(Value::as_array_mut)
            {
                for port in ports {
                    if port.get("protocol").is_none() {
                        port["protocol"] = json!("TCP");
                    }
                    if port.get("targetPort").is_none() {
                        port["targetPort"] = port["port"].clone();
                    }
                }
            }
            if object.pointer("/spec/type").is_none() {
                object["spec"]["type"] = json!("ClusterIP");
            }
        }
        "persistentvolumeclaims" if object.pointer("/spec/volumeMode").is_none() => {
            object["spec"]["volumeMode"] = json!("Filesystem");
        }
        _ => {}
    }
}

fn drop_zero_values(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|name, child| {
                !(OMITTED_WHEN_FALSE.contains(&name.as_str()) && *child == json!(false)
                    || OMITTED_WHEN_ZERO.contains(&name.as_str()) && *child == json!(0))
            });
            for (name, child) in map.iter_mut() {
                // An ObjectFieldSelector's apiVersion defaults to v1.
                if let (true, Value::Object(selector)) = (name == "fieldRef", &mut *child) {
                    selector.entry("apiVersion").or_insert_with(|| json!("v1"));
                }
                if let (true, Value::Object(quantities)) = (holds_quantities(name), &mut *child) {
                    for amount in quantities.values_mut() {
                        if let Value::String(text) = amount {
                            *text = quantity::canonical(text).0;
                        }
                    }
                }
                if let (true, Value::String(text)) = (name == "sizeLimit", &mut *child) {
                    *text = quantity::canonical(text).0;
                }
                drop_zero_values(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_zero_values),
        _ => {}
    }
}

/// A refusal: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The field path, as the server writes it (`spec.strategy.rollingUpdate`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn cause(field: &str, message: impl Into<String>) -> Cause {
    Cause {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(dns_label)
}

/// `(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?`, at most 63 characters.
fn label_value(text: &str) -> bool {
    let alphanumeric = |byte: Option<u8>| byte.is_some_and(|byte| byte.is_ascii_alphanumeric());
    text.is_empty()
        || text.len() <= 63
            && alphanumeric(text.bytes().next())
            && alphanumeric(text.bytes().last())
            && text
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
}

fn label_key(text: &str) -> bool {
    let (prefix, name) = match text.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, text),
    };
    prefix.is_none_or(dns_subdomain) && !name.is_empty() && label_value(name)
}

fn config_map_key(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte))
        && text != "."
        && text != ".."
}

/// An int-or-percent that means zero.
fn is_zero(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Number(number)) => number.as_i64() == Some(0),
        Some(Value::String(text)) => text.trim_end_matches('%').parse::<f64>() == Ok(0.0),
        _ => false,
    }
}

/// What the server refuses in `object` (stored form; `previous` is the stored object it replaces).
pub fn validate(plural: &str, previous: Option<&Value>, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let name_is_valid = if plural == "services" {
        dns_label(name) && name.starts_with(|first: char| first.is_ascii_lowercase())
    } else {
        plural == "events" || dns_subdomain(name)
    };
    if !name_is_valid {
        causes.push(cause(
            "metadata.name",
            format!("Invalid value: {name:?}: a lowercase RFC 1123 name must consist of lower case alphanumeric characters or '-'"),
        ));
    }
    let label_maps = [
        ("metadata.labels", object.pointer("/metadata/labels")),
        (
            "spec.template.metadata.labels",
            object.pointer("/spec/template/metadata/labels"),
        ),
    ];
    for (field, labels) in label_maps {
        for (key, value) in labels.and_then(Value::as_object).into_iter().flatten() {
            if !label_key(key) {
                causes.push(cause(field, format!("Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.'")));
            }
            if !value.as_str().is_some_and(label_value) {
                causes.push(cause(
                    field,
                    format!("Invalid value: {value}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)"),
                ));
            }
        }
    }
    match plural {
        "configmaps" => {
            for key in object["data"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(key, _)| key)
            {
                if !config_map_key(key) {
                    causes.push(cause(
                        "data",
                        format!("Invalid value: {key:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
                    ));
                }
            }
            if let Some(previous) = previous
                && previous["immutable"] == json!(true)
                && (previous["data"] != object["data"]
                    || previous["binaryData"] != object["binaryData"]
                    || object["immutable"] != json!(true))
            {
                causes.push(cause(
                    "data",
                    "Forbidden: field is immutable when `immutable` is set",
                ));
            }
        }
        "deployments" => {
            if object.pointer("/spec/selector").is_none() {
                causes.push(cause("spec.selector", "Required value"));
            }
            let containers = object
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array);
            if containers.is_none_or(Vec::is_empty) {
                causes.push(cause("spec.template.spec.containers", "Required value"));
            }
            if object.pointer("/spec/strategy/type") == Some(&json!("Recreate"))
                && object.pointer("/spec/strategy/rollingUpdate").is_some()
            {
                causes.push(cause(
                    "spec.strategy.rollingUpdate",
                    "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                ));
            }
            let rolling = object.pointer("/spec/strategy/rollingUpdate");
            if is_zero(rolling.and_then(|rolling| rolling.get("maxSurge")))
                && is_zero(rolling.and_then(|rolling| rolling.get("maxUnavailable")))
            {
                causes.push(cause(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "Invalid value: 0: may not be 0 when `maxSurge` is 0",
                ));
            }
            if let Some(previous) = previous
                && previous.pointer("/spec/selector") != object.pointer("/spec/selector")
            {
                causes.push(cause("spec.selector", "Invalid value: field is immutable"));
            }
            let template_labels = object.pointer("/spec/template/metadata/labels");
            let selects = object
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .all(|(key, value)| {
                    template_labels.and_then(|labels| labels.get(key)) == Some(value)
                });
            if !selects {
                causes.push(cause(
                    "spec.template.metadata.labels",
                    "Invalid value: `selector` does not match template `labels`",
                ));
            }
        }
        "persistentvolumeclaims" => {
            if let Some(previous) = previous {
                let mut before = previous["spec"].clone();
                let mut after = object["spec"].clone();
                // Only the requested size may change after creation (and only grow), and the attributes class.
                for spec in [&mut before, &mut after] {
                    if let Value::Object(spec) = spec {
                        spec.remove("resources");
                        spec.remove("volumeAttributesClassName");
                        // Bound by the volume controller, not by the creator.
                        spec.remove("volumeName");
                    }
                }
                if before != after {
                    causes.push(cause(
                        "spec",
                        "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                    ));
                }
                let size = |claim: &Value| {
                    claim
                        .pointer("/spec/resources/requests/storage")
                        .and_then(Value::as_str)
                        .and_then(bytes)
                };
                if let (Some(before), Some(after)) = (size(previous), size(object))
                    && after < before
                {
                    causes.push(cause(
                        "spec.resources.requests.storage",
                        "Forbidden: field can not be less than previous value",
                    ));
                }
            }
        }
        "events"
            if object["note"]
                .as_str()
                .is_some_and(|note| note.len() > 1024) =>
        {
            causes.push(cause("note", "Too long: may not be more than 1024 bytes"));
        }
        _ => {}
    }
    causes
}

/// A storage size in bytes (binary and decimal suffixes), for comparing sizes.
fn bytes(text: &str) -> Option<u128> {
    let split = text
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: u128 = number.parse().ok()?;
    let factor: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_drops_plain_zero_values_defaults_and_canonicalises_quantities() {
        let mut deployment = json!({"spec": {"template": {"spec": {"containers": [{"name": "c",
            "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}},
            "volumeMounts": [{"name": "d", "mountPath": "/d", "readOnly": false}]}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "x", "readOnly": false}}]}}}});
        normalize("deployments", &mut deployment);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"],
            json!({"claimName": "x"})
        );
        assert_eq!(
            pod["containers"][0]["volumeMounts"][0],
            json!({"name": "d", "mountPath": "/d"})
        );
        assert_eq!(
            pod["containers"][0]["resources"]["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(deployment["spec"]["replicas"], 1);
    }

    #[test]
    fn the_server_refuses_what_the_operator_could_send_wrong() {
        let deployment = json!({"metadata": {"name": "a-order", "labels": {"app.kubernetes.io/version": "1.0+build"}},
            "spec": {"strategy": {"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": 0}},
                     "selector": {"matchLabels": {"a": "1"}},
                     "template": {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c"}]}}}});
        let fields: Vec<String> = validate("deployments", None, &deployment)
            .into_iter()
            .map(|cause| cause.field)
            .collect();
        assert_eq!(
            fields,
            [
                "metadata.labels",
                "spec.strategy.rollingUpdate.maxUnavailable"
            ]
        );
        let claim = |size: &str, class: &str| {
            json!({"metadata": {"name": "a-data"},
            "spec": {"storageClassName": class, "resources": {"requests": {"storage": size}}}})
        };
        assert!(
            validate(
                "persistentvolumeclaims",
                Some(&claim("1Gi", "a")),
                &claim("2Gi", "a")
            )
            .is_empty()
        );
        assert_eq!(
            validate(
                "persistentvolumeclaims",
                Some(&claim("1Gi", "a")),
                &claim("1Gi", "b")
            )
            .len(),
            1
        );
        assert_eq!(
            validate(
                "persistentvolumeclaims",
                Some(&claim("2Gi", "a")),
                &claim("1Gi", "a")
            )
            .len(),
            1
        );
        assert_eq!(
            validate(
                "configmaps",
                None,
                &json!({"metadata": {"name": "a"}, "data": {"bad key": "1"}})
            )
            .len(),
            1
        );
        assert_eq!(
            validate("services", None, &json!({"metadata": {"name": "1abc"}})).len(),
            1
        );
    }
}
