//! A fake Kubernetes API server for the controller's tests, in kube's tower-test pattern: the real `kube::Client`
//! talks to it through a mock service. It keeps objects in memory (so a second reconcile sees what the first
//! applied), records every request (so a test asserts the exact writes), and can be told to fail requests.
//!
//! It follows the real server's rules where the operator depends on them, and is stricter where unsure:
//! server-side apply with field managers (`field_set`: a field a manager stops sending is removed unless another
//! manager owns it), defaulting, dropped zero values and canonical quantities, validation answered with a real
//! `Status` body (`server_rules`), a resourceVersion that changes only when the stored object does, a new uid on
//! every create, and background garbage collection of dependents.

use super::field_set::{self, Path, fields_of};
use crate::server_rules;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::Resource;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Whether `part` of a path names a collection the fake serves: the owned kinds, and what the operator reads or
/// writes besides them.
fn is_collection(part: &str) -> bool {
    static PLURALS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    PLURALS
        .get_or_init(|| {
            let mut plurals = crate::build::kinds::owned_plurals();
            plurals.extend([
                Lease::plural(&()).into_owned(),
                Secret::plural(&()).into_owned(),
                Event::plural(&()).into_owned(),
                crate::FoodDeliveryApp::plural(&()).into_owned(),
            ]);
            plurals
        })
        .iter()
        .any(|plural| plural == part)
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Whether the server stored something (a new resourceVersion, a deletion): a request that changes nothing,
    /// such as a server-side apply of what is already there, is not a write.
    pub wrote: bool,
}

impl Seen {
    /// Whether it changed something.
    pub fn is_write(&self) -> bool {
        self.wrote
    }

    /// `PATCH deployments/shop-order`-style summary (collection plural and name).
    pub fn short(&self) -> String {
        let parts: Vec<&str> = self.path.split('/').collect();
        let at = parts
            .iter()
            .rposition(|part| is_collection(part))
            .unwrap_or(0);
        format!("{} {}", self.method, parts[at..].join("/"))
    }
}

/// A change to a stored object, made by someone other than the client under test.
type Interleaved = Box<dyn FnOnce(&mut Value) + Send>;

#[derive(Default)]
struct State {
    /// Collection path -> name -> object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    seen: Vec<Seen>,
    /// Statuses to answer the next matching requests with, instead of serving them.
    failures: Vec<(Method, StatusCode)>,
    /// Path prefixes whose requests never get an answer (a dead connection, a stuck API server).
    hanging: Vec<String>,
    /// Writes by someone else that land just before the next request to a path (a controller racing the
    /// operator between its read and its write).
    interleaved: Vec<(String, Interleaved)>,
    version: u64,
    /// Objects ever created, for unique uids.
    created: u64,
}

/// The fake server's handle for tests.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

fn split(path: &str) -> Option<(String, Option<String>, Option<String>)> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let at = parts.iter().rposition(|part| is_collection(part))?;
    Some((
        parts[..=at].join("/"),
        parts.get(at + 1).map(|name| (*name).to_owned()),
        parts.get(at + 2).map(|sub| (*sub).to_owned()),
    ))
}

fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector.split(',').all(|pair| match pair.split_once('=') {
        Some((key, value)) => labels[key] == value,
        None => true,
    })
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == key).then(|| {
            value
                .replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
    })
}

fn answer(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string().into_bytes()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn failure(status: StatusCode, reason: &str) -> Response<Body> {
    answer(
        status,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": reason, "reason": reason, "code": status.as_u16()}),
    )
}

impl FakeApi {
    /// The server's state; a test that panicked while holding it cannot leave it half-written (every change is
    /// made whole under the lock), so carry on.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A client talking to a new fake server, and the server's handle.
    pub fn start() -> (Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = Self::default();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let response = server.serve(request).await;
                respond.send_response(response);
            }
        });
        (Client::new(service, "default"), fake)
    }

    /// Puts an object in place, as if someone had created it.
    pub fn insert(&self, collection: &str, object: Value) {
        let mut state = self.state();
        let mut object = object;
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        state
            .objects
            .entry(collection.to_owned())
            .or_default()
            .insert(name, object);
    }

    /// Changes a stored object as another client's update would (a controller writing `spec.replicas`, a
    /// `kubectl edit`): the fields it changes become `manager`'s and stop being anyone else's.
    pub fn update_as(
        &self,
        manager: &str,
        collection: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let mut state = self.state();
        state.version += 1;
        let version = state.version.to_string();
        let time = time_of(state.version);
        let Some(object) = state
            .objects
            .get_mut(collection)
            .and_then(|objects| objects.get_mut(name))
        else {
            return;
        };
        let before = object.clone();
        change(object);
        let taken = field_set::changed(&before, object);
        let mut managers = managers_of(object);
        for ownership in managers.values_mut() {
            ownership.fields.retain(|path| !taken.contains(path));
        }
        let ownership = managers
            .entry(manager.to_owned())
            .or_insert_with(|| Ownership {
                operation: "Update".to_owned(),
                time: Value::Null,
                fields: BTreeSet::new(),
            });
        ownership.fields.extend(taken);
        ownership.time = time;
        set_managers(object, &managers);
        object["metadata"]["resourceVersion"] = json!(version);
    }

    /// Deletes an object as `kubectl delete` does, its dependents garbage-collected.
    pub fn delete(&self, collection: &str, name: &str) {
        let mut state = self.state();
        delete_with_dependents(&mut state, collection, name);
    }

    /// The stored object, if any.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        let state = self.state();
        state.objects.get(collection)?.get(name).cloned()
    }

    /// Removes an object, as if someone had deleted it by hand.
    pub fn remove(&self, collection: &str, name: &str) {
        let mut state = self.state();
        if let Some(objects) = state.objects.get_mut(collection) {
            objects.remove(name);
        }
    }

    /// Changes a stored object in place (a hand edit, or a controller writing status).
    /// The stored object gets a new resourceVersion, as after any write; its managed fields stay as they were.
    pub fn edit(&self, collection: &str, name: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self.state();
        state.version += 1;
        let version = state.version.to_string();
        if let Some(object) = state
            .objects
            .get_mut(collection)
            .and_then(|objects| objects.get_mut(name))
        {
            change(object);
            object["metadata"]["resourceVersion"] = json!(version);
        }
    }

    /// Names of the stored objects in a collection.
    pub fn names(&self, collection: &str) -> Vec<String> {
        let state = self.state();
        state
            .objects
            .get(collection)
            .map(|objects| objects.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every request so far, and forgets them.
    pub fn take_seen(&self) -> Vec<Seen> {
        let mut state = self.state();
        std::mem::take(&mut state.seen)
    }

    /// Makes the next request with `method` fail with `status`.
    pub fn fail_next(&self, method: Method, status: StatusCode) {
        let mut state = self.state();
        state.failures.push((method, status));
    }

    /// Just before the next request to `collection/name`, someone else changes that object (a new
    /// resourceVersion, as for any write).
    pub fn interleave_before_next(
        &self,
        collection: &str,
        name: &str,
        change: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        let mut state = self.state();
        state
            .interleaved
            .push((format!("{collection}/{name}"), Box::new(change)));
    }

    /// Requests to paths starting with `prefix` never get an answer from now on.
    pub fn hang_requests_to(&self, prefix: &str) {
        let mut state = self.state();
        state.hanging.push(prefix.to_owned());
    }
}

/// One `metadata.managedFields` entry: how the manager last wrote, when it last changed something, what it owns.
#[derive(Debug, Clone)]
struct Ownership {
    operation: String,
    time: Value,
    fields: BTreeSet<Path>,
}

/// Managers and the fields each owns, read from `metadata.managedFields`.
type Managers = BTreeMap<String, Ownership>;

fn managers_of(object: &Value) -> Managers {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            Some((
                entry["manager"].as_str()?.to_owned(),
                Ownership {
                    operation: entry["operation"].as_str().unwrap_or("Update").to_owned(),
                    time: entry["time"].clone(),
                    fields: field_set::from_fields_v1(&entry["fieldsV1"]),
                },
            ))
        })
        .collect()
}

fn set_managers(object: &mut Value, managers: &Managers) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|(_, ownership)| !ownership.fields.is_empty())
        .map(|(manager, ownership)| {
            json!({"manager": manager, "operation": ownership.operation, "apiVersion": object["apiVersion"],
                   "time": ownership.time, "fieldsType": "FieldsV1",
                   "fieldsV1": field_set::to_fields_v1(&ownership.fields)})
        })
        .collect();
    if entries.is_empty() {
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(entries);
    }
}

/// A distinct, valid timestamp for the write that will get resourceVersion `version`.
fn time_of(version: u64) -> Value {
    let second = 1_800_000_000_i64.saturating_add(i64::try_from(version).unwrap_or(0));
    k8s_openapi::jiff::Timestamp::from_second(second)
        .map(|time| json!(time.to_string()))
        .unwrap_or(Value::Null)
}

/// Removes an object and, as the garbage collector does in the background, everything it owns (transitively).
fn delete_with_dependents(state: &mut State, collection: &str, name: &str) -> Option<Value> {
    let removed = state.objects.get_mut(collection)?.remove(name)?;
    state.version += 1;
    let mut gone: Vec<Value> = vec![removed["metadata"]["uid"].clone()];
    while let Some(uid) = gone.pop() {
        if uid.is_null() {
            continue;
        }
        for objects in state.objects.values_mut() {
            let dependents: Vec<String> = objects
                .iter()
                .filter(|(_, object)| {
                    object["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|owners| owners.iter().any(|owner| owner["uid"] == uid))
                })
                .map(|(name, _)| name.clone())
                .collect();
            for dependent in dependents {
                if let Some(object) = objects.remove(&dependent) {
                    gone.push(object["metadata"]["uid"].clone());
                }
            }
        }
    }
    Some(removed)
}

fn invalid(plural: &str, name: &str, causes: &[server_rules::Cause]) -> Response<Body> {
    let details: Vec<String> = causes
        .iter()
        .map(|cause| format!("{}: {}", cause.field, cause.message))
        .collect();
    answer(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{plural} {name:?} is invalid: {}", details.join(", ")),
                "reason": "Invalid", "code": 422,
                "details": {"name": name, "kind": plural, "causes": causes.iter().map(|cause| json!({
                    "reason": "FieldValueInvalid", "message": cause.message, "field": cause.field})).collect::<Vec<_>>()}}),
    )
}

/// What the server sets itself, never part of an applied configuration's fields.
fn strip_server_fields(config: &mut Value) {
    if let Value::Object(map) = config {
        map.remove("status");
        if let Some(Value::Object(metadata)) = map.get_mut("metadata") {
            for field in [
                "managedFields",
                "resourceVersion",
                "uid",
                "generation",
                "creationTimestamp",
            ] {
                metadata.remove(field);
            }
        }
    }
}

/// Server-side apply of `config` by `manager` onto the stored `previous` (none: a create). `Err` is the answer
/// to send instead.
fn server_side_apply(
    plural: &str,
    name: &str,
    previous: Option<&Value>,
    mut config: Value,
    manager: &str,
    force: bool,
    now: Value,
) -> Result<Value, Box<Response<Body>>> {
    strip_server_fields(&mut config);
    let mut object = previous.cloned().unwrap_or_else(|| json!({}));
    let mut managers = managers_of(&object);
    let mut applied = fields_of(&config);
    // As the server's fieldmanager strips them: identity and server-set fields are nobody's.
    applied.retain(|path| !field_set::server_set(path));
    // A field applied with another value than the one stored conflicts with its other owners; with force the
    // applier takes it from them. Applying the value already there shares the field instead.
    let conflicting: BTreeSet<Path> = applied
        .iter()
        .filter(|path| !matches!(path.last(), Some(field_set::Step::Key(_))))
        .filter(|path| field_set::value_at(&object, path) != field_set::value_at(&config, path))
        .cloned()
        .collect();
    if !force {
        let conflicts = managers
            .iter()
            .filter(|(other, _)| other.as_str() != manager)
            .any(|(_, ownership)| !ownership.fields.is_disjoint(&conflicting));
        if conflicts {
            return Err(Box::new(failure(StatusCode::CONFLICT, "Conflict")));
        }
    }
    let before = managers.remove(manager);
    let owned_before = before
        .as_ref()
        .map(|ownership| ownership.fields.clone())
        .unwrap_or_default();
    for ownership in managers.values_mut() {
        ownership.fields.retain(|path| !conflicting.contains(path));
    }
    let kept: BTreeSet<Path> = managers
        .values()
        .flat_map(|ownership| ownership.fields.iter().cloned())
        .chain(applied.iter().cloned())
        .collect();
    for path in owned_before.difference(&applied) {
        let still_owned = kept.iter().any(|owned| owned.starts_with(path));
        if !still_owned && !field_set::is_key_of_kept_element(path, &kept) {
            field_set::remove(&mut object, path, &kept);
        }
    }
    field_set::merge(&mut object, &config);
    server_rules::normalize(plural, &mut object);
    object["metadata"]["name"] = json!(name);
    // The applier's entry gets a new time only when its apply changed something: a no-op apply is no write.
    let content = |object: &Value| {
        let mut object = object.clone();
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("managedFields");
        }
        object
    };
    let unchanged = previous.is_some_and(|previous| content(previous) == content(&object))
        && owned_before == applied;
    let time = match before {
        Some(before) if unchanged => before.time,
        _ => now,
    };
    managers.insert(
        manager.to_owned(),
        Ownership {
            operation: "Apply".to_owned(),
            time,
            fields: applied,
        },
    );
    set_managers(&mut object, &managers);
    let causes = server_rules::validate(plural, previous, &object);
    if !causes.is_empty() {
        return Err(Box::new(invalid(plural, name, &causes)));
    }
    Ok(object)
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

impl FakeApi {
    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let hangs = self
            .state()
            .hanging
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()));
        if hangs {
            std::future::pending::<()>().await;
        }
        let query = request.uri().query().unwrap_or_default().to_owned();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = match request.into_body().collect_bytes().await {
            Ok(bytes) => bytes,
            Err(_) => return failure(StatusCode::BAD_REQUEST, "BadRequest"),
        };
        let mut state = self.state();
        if let Some(at) = state
            .interleaved
            .iter()
            .position(|(target, _)| path == *target)
        {
            let (_, change) = state.interleaved.remove(at);
            if let Some((collection, Some(name), _)) = split(&path) {
                state.version += 1;
                let version = state.version.to_string();
                if let Some(object) = state
                    .objects
                    .get_mut(&collection)
                    .and_then(|objects| objects.get_mut(&name))
                {
                    change(object);
                    object["metadata"]["resourceVersion"] = json!(version);
                }
            }
        }
        let version_before = state.version;
        let response = Self::handle(&mut state, &method, &path, &query, &content_type, &body);
        let wrote = state.version != version_before;
        state.seen.push(Seen {
            method,
            path,
            wrote,
        });
        response
    }

    fn handle(
        state: &mut State,
        method: &Method,
        path: &str,
        query: &str,
        content_type: &str,
        body: &[u8],
    ) -> Response<Body> {
        if let Some(at) = state
            .failures
            .iter()
            .position(|(failing, _)| failing == method)
        {
            let (_, status) = state.failures.remove(at);
            let reason = if status == StatusCode::CONFLICT {
                "Conflict"
            } else {
                "InternalError"
            };
            return failure(status, reason);
        }
        let Some((collection, name, subresource)) = split(path) else {
            return failure(StatusCode::NOT_FOUND, "NotFound");
        };
        let plural = collection.rsplit('/').next().unwrap_or_default().to_owned();
        let current_version = state.version.to_string();
        match (method.clone(), name) {
            // Watches end at once: the watcher lists again after its backoff, which is all these tests need.
            (Method::GET, None) if query_value(query, "watch").as_deref() == Some("true") => {
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Body::empty())
                    .unwrap_or_else(|_| Response::new(Body::empty()))
            }
            (Method::GET, Some(name)) => match state
                .objects
                .get(&collection)
                .and_then(|objects| objects.get(&name))
            {
                Some(object) => answer(StatusCode::OK, object),
                None => failure(StatusCode::NOT_FOUND, "NotFound"),
            },
            (Method::GET, None) => {
                let selector = query_value(query, "labelSelector");
                let items: Vec<Value> = state
                    .objects
                    .get(&collection)
                    .into_iter()
                    .flat_map(BTreeMap::values)
                    .filter(|object| matches_selector(object, selector.as_deref()))
                    .cloned()
                    .collect();
                answer(
                    StatusCode::OK,
                    &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": current_version}, "items": items}),
                )
            }
            (Method::PATCH, Some(name)) => {
                let Ok(patch) = serde_json::from_slice::<Value>(body) else {
                    return failure(StatusCode::BAD_REQUEST, "BadRequest");
                };
                let previous = state
                    .objects
                    .get(&collection)
                    .and_then(|objects| objects.get(&name))
                    .cloned();
                let stored = if subresource.as_deref() == Some("status") {
                    let Some(mut object) = previous.clone() else {
                        return failure(StatusCode::NOT_FOUND, "NotFound");
                    };
                    object["status"] = patch["status"].clone();
                    object
                } else if content_type.starts_with("application/apply-patch") {
                    let Some(manager) = query_value(query, "fieldManager") else {
                        return failure(StatusCode::BAD_REQUEST, "BadRequest");
                    };
                    let force = query_value(query, "force").as_deref() == Some("true");
                    match server_side_apply(
                        &plural,
                        &name,
                        previous.as_ref(),
                        patch,
                        &manager,
                        force,
                        time_of(state.version + 1),
                    ) {
                        Ok(object) => object,
                        Err(refusal) => return *refusal,
                    }
                } else {
                    let Some(mut object) = previous.clone() else {
                        return failure(StatusCode::NOT_FOUND, "NotFound");
                    };
                    merge_patch(&mut object, &patch);
                    object
                };
                Self::store(state, &collection, &name, previous.as_ref(), stored)
            }
            (Method::PUT, Some(name)) => {
                let Ok(object) = serde_json::from_slice::<Value>(body) else {
                    return failure(StatusCode::BAD_REQUEST, "BadRequest");
                };
                let Some(current) = state
                    .objects
                    .get(&collection)
                    .and_then(|objects| objects.get(&name))
                    .cloned()
                else {
                    return failure(StatusCode::NOT_FOUND, "NotFound");
                };
                // Optimistic concurrency, as the API server does it.
                if object["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return failure(StatusCode::CONFLICT, "Conflict");
                }
                Self::store(state, &collection, &name, Some(&current), object)
            }
            (Method::POST, None) => {
                let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
                    return failure(StatusCode::BAD_REQUEST, "BadRequest");
                };
                let name = object["metadata"]["name"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("generated-{}", state.created + 1));
                object["metadata"]["name"] = json!(name);
                let causes = server_rules::validate(&plural, None, &object);
                if !causes.is_empty() {
                    return invalid(&plural, &name, &causes);
                }
                if state
                    .objects
                    .get(&collection)
                    .is_some_and(|objects| objects.contains_key(&name))
                {
                    return failure(StatusCode::CONFLICT, "AlreadyExists");
                }
                let response = Self::store(state, &collection, &name, None, object);
                let (parts, body) = response.into_parts();
                let mut response = Response::from_parts(parts, body);
                *response.status_mut() = StatusCode::CREATED;
                response
            }
            (Method::DELETE, Some(name)) => {
                // Preconditions, as the server checks them: the object must still be the one the client saw.
                let preconditions = serde_json::from_slice::<Value>(body)
                    .ok()
                    .map(|options| options["preconditions"].clone())
                    .filter(Value::is_object);
                let current = state
                    .objects
                    .get(&collection)
                    .and_then(|objects| objects.get(&name));
                if let (Some(preconditions), Some(current)) = (preconditions, current) {
                    let differs = ["uid", "resourceVersion"].iter().any(|field| {
                        preconditions.get(*field).is_some_and(|wanted| {
                            !wanted.is_null() && Some(wanted) != current["metadata"].get(*field)
                        })
                    });
                    if differs {
                        return failure(StatusCode::CONFLICT, "Conflict");
                    }
                }
                match delete_with_dependents(state, &collection, &name) {
                    Some(object) => answer(StatusCode::OK, &object),
                    None => failure(StatusCode::NOT_FOUND, "NotFound"),
                }
            }
            _ => failure(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }

    /// Stores `object` in place of `previous` unless nothing changed; a change gets a new resourceVersion, a create
    /// a new uid, a spec change a new generation.
    fn store(
        state: &mut State,
        collection: &str,
        name: &str,
        previous: Option<&Value>,
        mut object: Value,
    ) -> Response<Body> {
        if let Some(previous) = previous {
            for field in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
                if let Some(value) = previous["metadata"].get(field) {
                    object["metadata"][field] = value.clone();
                }
            }
            if previous == &object {
                return answer(StatusCode::OK, previous);
            }
            if previous.get("spec") != object.get("spec") {
                let generation = previous["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                object["metadata"]["generation"] = json!(generation);
            }
        } else {
            state.created += 1;
            object["metadata"]["uid"] = json!(format!("uid-{}", state.created));
            object["metadata"]["creationTimestamp"] = json!("2027-01-15T08:00:00Z");
            if object.get("spec").is_some() {
                object["metadata"]["generation"] = json!(1);
            }
        }
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        state
            .objects
            .entry(collection.to_owned())
            .or_default()
            .insert(name.to_owned(), object.clone());
        answer(StatusCode::OK, &object)
    }
}
