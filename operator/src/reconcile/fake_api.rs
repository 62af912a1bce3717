//! A fake Kubernetes API server for the controller's tests, in kube's tower-test pattern: the real `kube::Client`
//! talks to it through a mock service. It keeps objects in memory (so a second reconcile sees what the first
//! applied), records every request (so a test asserts the exact writes), and can be told to fail requests.

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const PLURALS: [&str; 13] = [
    "leases",
    "configmaps",
    "services",
    "serviceaccounts",
    "persistentvolumeclaims",
    "secrets",
    "deployments",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "networkpolicies",
    "ingresses",
    "fooddeliveryapps",
    "events",
];

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
}

impl Seen {
    /// Whether it changed something.
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }

    /// `PATCH deployments/shop-order`-style summary (collection plural and name).
    pub fn short(&self) -> String {
        let parts: Vec<&str> = self.path.split('/').collect();
        let at = parts
            .iter()
            .rposition(|part| PLURALS.contains(part))
            .unwrap_or(0);
        format!("{} {}", self.method, parts[at..].join("/"))
    }
}

#[derive(Default)]
struct State {
    /// Collection path -> name -> object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    seen: Vec<Seen>,
    /// Statuses to answer the next matching requests with, instead of serving them.
    failures: Vec<(Method, StatusCode)>,
    /// Path prefixes whose requests never get an answer (a dead connection, a stuck API server).
    hanging: Vec<String>,
    version: u64,
}

/// The fake server's handle for tests.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

fn split(path: &str) -> Option<(String, Option<String>, Option<String>)> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let at = parts.iter().rposition(|part| PLURALS.contains(part))?;
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
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        state
            .objects
            .entry(collection.to_owned())
            .or_default()
            .insert(name, object);
    }

    /// The stored object, if any.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.objects.get(collection)?.get(name).cloned()
    }

    /// Removes an object, as if someone had deleted it by hand.
    pub fn remove(&self, collection: &str, name: &str) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(objects) = state.objects.get_mut(collection) {
            objects.remove(name);
        }
    }

    /// Changes a stored object in place (a hand edit, or a controller writing status).
    pub fn edit(&self, collection: &str, name: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(object) = state
            .objects
            .get_mut(collection)
            .and_then(|objects| objects.get_mut(name))
        {
            change(object);
        }
    }

    /// Names of the stored objects in a collection.
    pub fn names(&self, collection: &str) -> Vec<String> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .objects
            .get(collection)
            .map(|objects| objects.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every request so far, and forgets them.
    pub fn take_seen(&self) -> Vec<Seen> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut state.seen)
    }

    /// Makes the next request with `method` fail with `status`.
    pub fn fail_next(&self, method: Method, status: StatusCode) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.failures.push((method, status));
    }

    /// Requests to paths starting with `prefix` never get an answer from now on.
    pub fn hang_requests_to(&self, prefix: &str) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.hanging.push(prefix.to_owned());
    }

    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let hangs = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .hanging
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()));
        if hangs {
            std::future::pending::<()>().await;
        }
        let query = request.uri().query().unwrap_or_default().to_owned();
        let body = match request.into_body().collect_bytes().await {
            Ok(bytes) => bytes,
            Err(_) => return failure(StatusCode::BAD_REQUEST, "BadRequest"),
        };
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
        });
        if let Some(at) = state
            .failures
            .iter()
            .position(|(failing, _)| *failing == method)
        {
            let (_, status) = state.failures.remove(at);
            let reason = if status == StatusCode::CONFLICT {
                "Conflict"
            } else {
                "InternalError"
            };
            return failure(status, reason);
        }
        let Some((collection, name, subresource)) = split(&path) else {
            return failure(StatusCode::NOT_FOUND, "NotFound");
        };
        state.version += 1;
        let version = state.version.to_string();
        let objects = state.objects.entry(collection.clone()).or_default();
        match (method, name) {
            // Watches end at once: the watcher lists again after its backoff, which is all these tests need.
            (Method::GET, None) if query_value(&query, "watch").as_deref() == Some("true") => {
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Body::empty())
                    .unwrap_or_else(|_| Response::new(Body::empty()))
            }
            (Method::GET, Some(name)) => match objects.get(&name) {
                Some(object) => answer(StatusCode::OK, object),
                None => failure(StatusCode::NOT_FOUND, "NotFound"),
            },
            (Method::GET, None) => {
                let selector = query_value(&query, "labelSelector");
                let items: Vec<Value> = objects
                    .values()
                    .filter(|object| matches_selector(object, selector.as_deref()))
                    .cloned()
                    .collect();
                answer(
                    StatusCode::OK,
                    &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items}),
                )
            }
            (Method::PATCH, Some(name)) => {
                let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                    return failure(StatusCode::BAD_REQUEST, "BadRequest");
                };
                if subresource.as_deref() == Some("status") {
                    let Some(object) = objects.get_mut(&name) else {
                        return failure(StatusCode::NOT_FOUND, "NotFound");
                    };
                    object["status"] = patch["status"].clone();
                    return answer(StatusCode::OK, object);
                }
                if patch.get("series").is_some() {
                    // An Event series update (merge patch).
                    return answer(StatusCode::OK, &patch);
                }
                let previous = objects.get(&name).cloned();
                let mut stored = patch.clone();
                let generation = match &previous {
                    Some(previous) if previous["spec"] == patch["spec"] => {
                        previous["metadata"]["generation"].as_i64().unwrap_or(1)
                    }
                    Some(previous) => previous["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
                    None => 1,
                };
                stored["metadata"]["generation"] = json!(generation);
                stored["metadata"]["resourceVersion"] = json!(version);
                stored["metadata"]["uid"] = json!(format!("uid-{name}"));
                if let Some(status) = previous
                    .as_ref()
                    .map(|previous| previous["status"].clone())
                    .filter(|status| !status.is_null())
                {
                    stored["status"] = status;
                }
                objects.insert(name, stored.clone());
                answer(StatusCode::OK, &stored)
            }
            (Method::PUT, Some(name)) => {
                let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                    return failure(StatusCode::BAD_REQUEST, "BadRequest");
                };
                let Some(current) = objects.get(&name) else {
                    return failure(StatusCode::NOT_FOUND, "NotFound");
                };
                // Optimistic concurrency, as the API server does it.
                if object["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return failure(StatusCode::CONFLICT, "Conflict");
                }
                object["metadata"]["resourceVersion"] = json!(version);
                objects.insert(name, object.clone());
                answer(StatusCode::OK, &object)
            }
            (Method::POST, None) => {
                let Ok(mut object) = serde_json::from_slice::<Value>(&body) else {
                    return failure(StatusCode::BAD_REQUEST, "BadRequest");
                };
                // As the API server's validation of events.k8s.io/v1: a note over 1,024 bytes is refused.
                if object["kind"] == "Event"
                    && object["note"]
                        .as_str()
                        .is_some_and(|note| note.len() > 1024)
                {
                    return failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid");
                }
                let name = object["metadata"]["name"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("generated-{version}"));
                if objects.contains_key(&name) {
                    return failure(StatusCode::CONFLICT, "AlreadyExists");
                }
                object["metadata"]["name"] = json!(name);
                object["metadata"]["resourceVersion"] = json!(version);
                objects.insert(name, object.clone());
                answer(StatusCode::CREATED, &object)
            }
            (Method::DELETE, Some(name)) => match objects.remove(&name) {
                Some(object) => answer(StatusCode::OK, &object),
                None => failure(StatusCode::NOT_FOUND, "NotFound"),
            },
            _ => failure(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }
}
