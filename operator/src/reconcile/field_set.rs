//! Server-side apply's field sets as structured-merge-diff computes them, for the kinds the operator writes: the
//! set of fields an applied configuration sets (maps field by field, lists by the keys Kubernetes declares for
//! them, every other list whole), their FieldsV1 form in `metadata.managedFields`, and the merge and removal the
//! fake API server performs with them. The operator itself uses the sets to tell that an apply would change
//! nothing (see `apply::already_applied`).

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// A field of a map or struct.
    Field(String),
    /// The element of an associative list with these key fields (canonical JSON, keys sorted).
    Key(String),
    /// A member of a set-like list.
    Member(String),
}

/// A path from the object's root.
pub type Path = Vec<Step>;

/// How the API declares a list (`+listType`, `+listMapKey`).
enum ListKind {
    /// Merged element by element, identified by these fields (with their defaults).
    Map(&'static [(&'static str, Option<&'static str>)]),
    /// Scalars merged as a set.
    Set,
    /// Replaced whole: every list without a marker.
    Atomic,
}

/// How a member of a set-like list is named in a path: its JSON.
fn member_name(item: &Value) -> String {
    item.to_string()
}

/// The field names leading to a value, keys of associative lists left out.
fn names(path: &[Step]) -> Vec<&str> {
    path.iter()
        .filter_map(|step| match step {
            Step::Field(name) => Some(name.as_str()),
            _ => None,
        })
        .collect()
}

fn list_kind(path: &[Step]) -> ListKind {
    let names = names(path);
    let last = names.last().copied().unwrap_or_default();
    let parent = names.len().checked_sub(2).map(|at| names[at]);
    match last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => ListKind::Map(&[("name", None)]),
        "volumeMounts" => ListKind::Map(&[("mountPath", None)]),
        "ports" if matches!(parent, Some("containers" | "initContainers")) => {
            ListKind::Map(&[("containerPort", None), ("protocol", Some("TCP"))])
        }
        // A Service's ports.
        "ports" if names == ["spec", "ports"] => {
            ListKind::Map(&[("port", None), ("protocol", Some("TCP"))])
        }
        "topologySpreadConstraints" => {
            ListKind::Map(&[("topologyKey", None), ("whenUnsatisfiable", None)])
        }
        "ownerReferences" => ListKind::Map(&[("uid", None)]),
        "conditions" => ListKind::Map(&[("type", None)]),
        "finalizers" => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// Maps owned whole (`+structType=atomic`, `+mapType=atomic`): label selectors, and the references a pod's
/// environment reads (`fieldRef`, `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef`).
fn atomic_map(path: &[Step]) -> bool {
    matches!(
        names(path).last().copied(),
        Some(
            "selector"
                | "podSelector"
                | "namespaceSelector"
                | "labelSelector"
                | "fieldRef"
                | "resourceFieldRef"
                | "configMapKeyRef"
                | "secretKeyRef"
        )
    )
}

fn key_of(element: &Value, keys: &[(&str, Option<&str>)]) -> String {
    let key: BTreeMap<&str, Value> = keys
        .iter()
        .filter_map(|(field, default)| {
            let value = element
                .get(*field)
                .cloned()
                .or_else(|| default.map(|default| Value::String(default.to_owned())))?;
            Some((*field, value))
        })
        .collect();
    serde_json::to_string(&key).unwrap_or_default()
}

/// Every field `config` sets, as SSA records them for its manager.
pub fn fields_of(config: &Value) -> BTreeSet<Path> {
    let mut fields = BTreeSet::new();
    collect(config, &mut Vec::new(), &mut fields);
    fields
}

fn collect(value: &Value, path: &mut Path, fields: &mut BTreeSet<Path>) {
    match value {
        Value::Null => {}
        Value::Object(map) if !map.is_empty() && !atomic_map(path) => {
            for (name, child) in map {
                path.push(Step::Field(name.clone()));
                collect(child, path, fields);
                path.pop();
            }
        }
        Value::Array(items) => match list_kind(path) {
            ListKind::Map(keys) => {
                for item in items {
                    path.push(Step::Key(key_of(item, keys)));
                    fields.insert(path.clone());
                    collect(item, path, fields);
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    fields.insert([path.clone(), vec![Step::Member(member_name(item))]].concat());
                }
            }
            ListKind::Atomic => {
                fields.insert(path.clone());
            }
        },
        _ => {
            fields.insert(path.clone());
        }
    }
}

/// Fields no manager owns: `apiVersion`, `kind` and the object's identity in `metadata`.
pub fn server_set(path: &Path) -> bool {
    use Step::Field;
    match path.as_slice() {
        [Field(field)] => field == "apiVersion" || field == "kind",
        [Field(metadata), Field(field), ..] if metadata == "metadata" => matches!(
            field.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "selfLink"
                | "managedFields"
        ),
        _ => false,
    }
}

/// The value at `path`, if any.
pub fn value_at<'a>(value: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut at = value;
    for (depth, step) in path.iter().enumerate() {
        at = match step {
            Step::Field(name) => at.get(name)?,
            Step::Key(key) => {
                let ListKind::Map(keys) = list_kind(&path[..depth]) else {
                    return None;
                };
                at.as_array()?
                    .iter()
                    .find(|item| key_of(item, keys) == *key)?
            }
            Step::Member(member) => at
                .as_array()?
                .iter()
                .find(|item| member_name(item) == *member)?,
        };
    }
    Some(at)
}

/// The keyed lists among `fields`: the paths whose elements are identified by key.
pub fn keyed_lists(fields: &BTreeSet<Path>) -> BTreeSet<Path> {
    fields
        .iter()
        .filter_map(|path| match path.split_last() {
            Some((Step::Key(_), list)) => Some(list.to_vec()),
            _ => None,
        })
        .collect()
}

/// The keys of the elements of the keyed list at `list` in `value`, in their order, counting only the elements
/// `fields` holds (elements only someone else owns do not count).
pub fn keys_in_order(value: &Value, list: &[Step], fields: &BTreeSet<Path>) -> Vec<String> {
    let ListKind::Map(keys) = list_kind(list) else {
        return Vec::new();
    };
    value_at(value, list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|item| key_of(item, keys))
        .filter(|key| fields.contains(&[list, &[Step::Key(key.clone())]].concat()))
        .collect()
}

/// Merges an applied configuration into the live object.
pub fn merge(live: &mut Value, config: &Value) {
    merge_at(live, config, &mut Vec::new());
}

fn merge_at(live: &mut Value, config: &Value, path: &mut Path) {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) if !atomic_map(path) => {
            for (name, child) in config {
                if child.is_null() {
                    continue;
                }
                path.push(Step::Field(name.clone()));
                match live.get_mut(name) {
                    Some(existing) => merge_at(existing, child, path),
                    None => {
                        live.insert(name.clone(), child.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(live), Value::Array(config)) => match list_kind(path) {
            ListKind::Map(keys) => {
                // The applied order wins (elements only others own follow): reordering a list is a change.
                let mut merged = Vec::with_capacity(live.len().max(config.len()));
                for item in config {
                    let key = key_of(item, keys);
                    path.push(Step::Key(key.clone()));
                    match live
                        .iter()
                        .position(|existing| key_of(existing, keys) == key)
                    {
                        Some(at) => {
                            let mut existing = live.remove(at);
                            merge_at(&mut existing, item, path);
                            merged.push(existing);
                        }
                        None => merged.push(item.clone()),
                    }
                    path.pop();
                }
                merged.append(live);
                *live = merged;
            }
            ListKind::Set => {
                for item in config {
                    if !live.contains(item) {
                        live.push(item.clone());
                    }
                }
            }
            ListKind::Atomic => live.clone_from(config),
        },
        (live, config) => *live = config.clone(),
    }
}

/// Whether `path` is a key field of a list element that stays (someone still owns something in it): the server
/// keeps an element's key fields as long as the element exists.
pub fn is_key_of_kept_element(path: &[Step], kept: &BTreeSet<Path>) -> bool {
    let [element @ .., Step::Field(field)] = path else {
        return false;
    };
    let Some((Step::Key(_), list)) = element.split_last() else {
        return false;
    };
    let ListKind::Map(keys) = list_kind(list) else {
        return false;
    };
    keys.iter().any(|(key, _)| key == field) && kept.iter().any(|owned| owned.starts_with(element))
}

/// Removes the value at `path` and any map or list left empty by it that `kept` does not hold.
pub fn remove(live: &mut Value, path: &[Step], kept: &BTreeSet<Path>) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let Some(parent) = value_at_mut(live, parent_path) else {
        return;
    };
    match (last, parent) {
        (Step::Field(name), Value::Object(map)) => {
            map.remove(name);
        }
        (Step::Key(key), Value::Array(items)) => {
            if let ListKind::Map(keys) = list_kind(parent_path) {
                items.retain(|item| key_of(item, keys) != *key);
            }
        }
        (Step::Member(member), Value::Array(items)) => {
            items.retain(|item| member_name(item) != *member);
        }
        _ => return,
    }
    let emptied = value_at(live, parent_path).is_some_and(|parent| match parent {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    });
    if emptied && !parent_path.is_empty() && !kept.contains(parent_path) {
        remove(live, parent_path, kept);
    }
}

fn value_at_mut<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    let mut at = value;
    for (depth, step) in path.iter().enumerate() {
        at = match step {
            Step::Field(name) => at.get_mut(name)?,
            Step::Key(key) => {
                let ListKind::Map(keys) = list_kind(&path[..depth]) else {
                    return None;
                };
                at.as_array_mut()?
                    .iter_mut()
                    .find(|item| key_of(item, keys) == *key)?
            }
            Step::Member(member) => at
                .as_array_mut()?
                .iter_mut()
                .find(|item| member_name(item) == *member)?,
        };
    }
    Some(at)
}

/// The fields whose value differs between `before` and `after` (what an Update takes ownership of).
pub fn changed(before: &Value, after: &Value) -> BTreeSet<Path> {
    fields_of(after)
        .into_iter()
        .filter(|path| value_at(before, path) != value_at(after, path))
        .collect()
}

/// A field set in the FieldsV1 form of `metadata.managedFields`.
pub fn to_fields_v1(fields: &BTreeSet<Path>) -> Value {
    fn step_name(step: &Step) -> String {
        match step {
            Step::Field(name) => format!("f:{name}"),
            Step::Key(key) => format!("k:{key}"),
            Step::Member(member) => format!("v:{member}"),
        }
    }
    fn insert(node: &mut Map<String, Value>, steps: &[Step]) {
        if let Some((first, rest)) = steps.split_first() {
            let child = node
                .entry(step_name(first))
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(child) = child {
                insert(child, rest);
            }
        }
    }
    // A path owned itself and also holding owned fields (a keyed list element always) carries the "." mark.
    fn mark(node: &mut Map<String, Value>, fields: &BTreeSet<Path>, path: &mut Path) {
        for (name, child) in node.iter_mut() {
            let Some(step) = parse_step(name) else {
                continue;
            };
            let keyed = matches!(step, Step::Key(_));
            path.push(step);
            if let Value::Object(child) = child {
                mark(child, fields, path);
                if fields.contains(path.as_slice()) && (keyed || !child.is_empty()) {
                    child.insert(".".to_owned(), Value::Object(Map::new()));
                }
            }
            path.pop();
        }
    }
    let mut root = Map::new();
    for path in fields {
        insert(&mut root, path);
    }
    mark(&mut root, fields, &mut Vec::new());
    Value::Object(root)
}

fn parse_step(name: &str) -> Option<Step> {
    let (kind, rest) = name.split_once(':')?;
    Some(match kind {
        "f" => Step::Field(rest.to_owned()),
        "k" => Step::Key(rest.to_owned()),
        "v" => Step::Member(rest.to_owned()),
        _ => return None,
    })
}

/// The field set a FieldsV1 value describes.
pub fn from_fields_v1(value: &Value) -> BTreeSet<Path> {
    fn walk(node: &Value, path: &mut Path, fields: &mut BTreeSet<Path>) {
        let Some(map) = node.as_object() else {
            return;
        };
        if (map.is_empty() || map.contains_key(".")) && !path.is_empty() {
            fields.insert(path.clone());
        }
        for (name, child) in map {
            if let Some(step) = parse_step(name) {
                path.push(step);
                walk(child, path, fields);
                path.pop();
            }
        }
    }
    let mut fields = BTreeSet::new();
    walk(value, &mut Vec::new(), &mut fields);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_atomic_lists_are_replaced() {
        let mut live = json!({"spec": {"containers": [{"name": "a", "image": "1", "args": ["x", "y"]}],
                                        "tolerations": [{"key": "k"}]}});
        merge(
            &mut live,
            &json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "args": ["z"]}],
                             "tolerations": []}}),
        );
        assert_eq!(
            live,
            json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "a", "image": "1", "args": ["z"]}],
                            "tolerations": []}})
        );
    }

    #[test]
    fn the_applied_order_of_a_keyed_list_wins() {
        let mut live = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        merge(
            &mut live,
            &json!({"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}),
        );
        assert_eq!(
            live,
            json!({"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]})
        );
    }

    #[test]
    fn field_sets_round_trip_through_fields_v1() {
        let config = json!({"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
            "spec": {"selector": {"matchLabels": {"a": "1"}}, "ports": [{"port": 80, "name": "http"}],
                     "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}}});
        let fields = fields_of(&config);
        assert!(fields.contains(&vec![
            Step::Field("spec".into()),
            Step::Field("selector".into())
        ]));
        assert!(fields.contains(&vec![
            Step::Field("spec".into()),
            Step::Field("ports".into()),
            Step::Key(r#"{"port":80,"protocol":"TCP"}"#.into()),
            Step::Field("name".into())
        ]));
        assert_eq!(from_fields_v1(&to_fields_v1(&fields)), fields);
        let v1 = to_fields_v1(&fields);
        assert_eq!(
            v1["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"c"}"#]["."],
            json!({})
        );
    }

    #[test]
    fn removing_the_last_field_of_a_map_removes_the_map_unless_it_is_kept() {
        let mut live = json!({"metadata": {"labels": {"a": "1"}}, "data": {"k": "v"}});
        remove(
            &mut live,
            &[Step::Field("data".into()), Step::Field("k".into())],
            &BTreeSet::new(),
        );
        assert_eq!(live, json!({"metadata": {"labels": {"a": "1"}}}));
    }
}
