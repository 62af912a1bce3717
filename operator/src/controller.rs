//! `food-delivery-operator run`: the kube-runtime Controller for FoodDeliveryApp, watching every owned kind so a
//! child edited or deleted by hand is healed; per-object exponential backoff; a Lease so only one replica
//! reconciles; `/healthz`, `/readyz` and `/metrics`.

use crate::build::kinds::{KindVisitor, OwnedKind, for_each_owned_kind};
use crate::build::metadata::{MANAGER, label};
use crate::leader::{Elector, LeaseSettings};
use crate::reconcile::children::ChildCaches;
use crate::reconcile::{self, Context, ReconcileError};
use crate::resource::FoodDeliveryApp;
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Reconciliations by result.
pub const RECONCILIATIONS: &str = "operator_reconciliations_total";
/// Reconcile duration in seconds.
pub const RECONCILE_DURATION: &str = "operator_reconcile_duration_seconds";
/// Failed reconciliations by error kind.
pub const RECONCILE_ERRORS: &str = "operator_reconcile_errors_total";

/// Apps reconciled at the same time.
pub const RECONCILE_CONCURRENCY: u16 = 8;

/// How `run` is configured.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub http_address: SocketAddr,
    /// The Lease this replica competes for.
    pub lease: LeaseSettings,
    /// Watch one namespace only (None: all).
    pub namespace: Option<String>,
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No cluster configuration, or the API refused.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The HTTP port could not be bound.
    #[error("cannot serve health and metrics on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// Another replica took the Lease: stop, so this pod restarts as a candidate.
    #[error("lost the leader Lease")]
    LostLease,
}

/// How long a failure count is kept without a new failure: twice the longest backoff, so a count is only forgotten
/// for an app that stopped failing or is gone.
const FORGET_FAILURES_AFTER: Duration = Duration::from_secs(600);

/// The wait after `failures` consecutive failures of one object: 5 s doubling to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let seconds = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(10));
    Duration::from_secs(seconds.min(300))
}

struct Operator {
    context: Arc<Context>,
    resource: ApiResource,
    /// Consecutive failures per app and when the last one happened. An app deleted while failing is never
    /// reconciled again, so entries not refreshed for [`FORGET_FAILURES_AFTER`] are dropped.
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

fn key(object: &DynamicObject) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// The apps are watched untyped and decoded one by one: with typed watches, one stored object that does not
/// decode fails the whole list and no app is reconciled at all.
async fn reconcile_one(
    object: Arc<DynamicObject>,
    operator: Arc<Operator>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let decoded =
        serde_json::to_value(&*object).and_then(serde_json::from_value::<FoodDeliveryApp>);
    let result = match decoded {
        Ok(app) => reconcile::reconcile(Arc::new(app), operator.context.clone()).await,
        Err(problem) => reconcile::undecodable(
            &operator.context,
            &object,
            &operator.resource,
            problem.to_string(),
        )
        .await
        .map(|()| Action::await_change()),
    };
    metrics::histogram!(RECONCILE_DURATION).record(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!(RECONCILIATIONS, "result" => outcome).increment(1);
    if result.is_ok() {
        operator
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key(&object));
    }
    result
}

fn error_policy(
    app: Arc<DynamicObject>,
    error: &ReconcileError,
    operator: Arc<Operator>,
) -> Action {
    metrics::counter!(RECONCILE_ERRORS, "kind" => error.metric_label()).increment(1);
    let mut failures = operator
        .failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_FAILURES_AFTER);
    let (count, last) = failures.entry(key(&app)).or_insert((0, now));
    *count += 1;
    *last = now;
    let wait = backoff(*count);
    tracing::warn!(app = %key(&app), %error, retry_in_s = wait.as_secs(), "reconcile failed");
    // The policy cannot wait; the Warning Event goes out on its own.
    let reference = app.object_ref(&operator.resource);
    let note = format!("{error}; retrying in {} s", wait.as_secs());
    let context = operator.context.clone();
    tokio::spawn(async move {
        reconcile::publish_about(
            &context,
            &reference,
            kube::runtime::events::EventType::Warning,
            reconcile::status::Reason::ReconcileFailed,
            note,
        )
        .await;
    });
    Action::requeue(wait)
}

async fn serve_health(address: SocketAddr, ready: Arc<AtomicBool>) -> Result<(), RunError> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    let router = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let body = handle
                    .as_ref()
                    .map(|handle| handle.render())
                    .unwrap_or_default();
                async move { body }
            }),
        );
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| RunError::Bind(address, error))?;
    axum::serve(listener, router)
        .await
        .map_err(|error| RunError::Bind(address, error))
}

/// The events of an owned kind that deserve a reconcile of the app: a deletion, a new object, and a change that
/// moved the generation (a spec change, by hand or otherwise). Status churn is left out: an HPA rewrites its
/// status every 15 seconds and a PDB whenever a pod comes or goes, and each of those would otherwise re-run the
/// whole reconcile of the app. Objects without a generation always count.
#[derive(Debug, Default)]
pub struct SpecChanges {
    /// The generation last seen per object uid.
    generations: HashMap<String, i64>,
}

impl SpecChanges {
    /// Whether this event deserves a reconcile of the object's owner (an initial listing's objects are recorded;
    /// whether they trigger is decided when the listing is complete).
    pub fn worth_a_reconcile<K: Resource>(&mut self, event: &watcher::Event<K>) -> bool {
        match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                let (Some(uid), Some(generation)) =
                    (object.meta().uid.clone(), object.meta().generation)
                else {
                    return true;
                };
                let previous = self.generations.insert(uid, generation);
                previous != Some(generation)
            }
            watcher::Event::Delete(object) => {
                if let Some(uid) = &object.meta().uid {
                    self.generations.remove(uid);
                }
                true
            }
            watcher::Event::Init | watcher::Event::InitDone => false,
        }
    }
}

/// Every change of most owned kinds deserves a reconcile of their app.
fn every_change<K>(_: &watcher::Event<K>) -> bool {
    true
}

/// Only what [`SpecChanges`] lets through.
fn spec_changes_only<K: Resource>() -> impl FnMut(&watcher::Event<K>) -> bool + Send + 'static {
    let mut changes = SpecChanges::default();
    move |event| changes.worth_a_reconcile(event)
}

/// The watch of an owned kind: it feeds the cache the reconcile reads the kind from (see `reconcile::children`) and
/// yields the objects whose change deserves a reconcile of their app (`worth`). A change reaches the cache before it
/// triggers anything, so the reconcile finds what triggered it. A (re)listing is different: its objects enter the
/// cache all at once when it completes, so they trigger only then, every one of them (what changed while the watch
/// was down is not known). The cache counts as live only while its watch works.
fn cached_watch<K>(
    api: Api<K>,
    config: watcher::Config,
    caches: &mut ChildCaches,
    mut worth: impl FnMut(&watcher::Event<K>) -> bool + Send + 'static,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: reconcile::apply::Child,
{
    let (store, writer) = reflector::store();
    let live = Arc::new(AtomicBool::new(false));
    caches.insert(store.clone(), live.clone());
    reflector(
        writer,
        watcher(api, config)
            .default_backoff()
            .modify(|object| reconcile::apply::trim_for_cache(object.meta_mut())),
    )
    .flat_map(move |event| {
        let triggers: Vec<Result<K, watcher::Error>> = match event {
            Err(error) => {
                live.store(false, Ordering::SeqCst);
                vec![Err(error)]
            }
            Ok(event) => {
                let worth_it = worth(&event);
                match event {
                    watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
                        live.store(true, Ordering::SeqCst);
                        if worth_it {
                            vec![Ok(object)]
                        } else {
                            Vec::new()
                        }
                    }
                    watcher::Event::InitDone => {
                        live.store(true, Ordering::SeqCst);
                        store
                            .state()
                            .iter()
                            .map(|object| Ok(object.as_ref().clone()))
                            .collect()
                    }
                    watcher::Event::Init | watcher::Event::InitApply(_) => Vec::new(),
                }
            }
        };
        futures::stream::iter(triggers)
    })
}

/// Adds the cached watch of every owned kind to the controller (see `build::kinds`).
struct OwnedWatches<'client> {
    client: &'client Client,
    namespace: Option<&'client str>,
    config: watcher::Config,
    caches: ChildCaches,
    /// Each kind's watch, as the step that adds it to the controller (each kind's stream has its own type).
    added: Vec<AddWatch>,
}

/// Adds one kind's watch to the controller.
type AddWatch = Box<dyn FnOnce(Controller<DynamicObject>) -> Controller<DynamicObject> + Send>;

impl KindVisitor for OwnedWatches<'_> {
    fn visit<K: OwnedKind>(&mut self) {
        let api = owned::<K>(self.client, self.namespace);
        let config = self.config.clone();
        let caches = &mut self.caches;
        self.added.push(if K::STATUS_TRIGGERS_RECONCILE {
            let stream = cached_watch(api, config, caches, every_change);
            Box::new(move |controller| controller.owns_stream(stream))
        } else {
            let stream = cached_watch(api, config, caches, spec_changes_only());
            Box::new(move |controller| controller.owns_stream(stream))
        });
    }
}

fn owned<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs the operator until SIGTERM or Ctrl-C (or the Lease is lost), with the cluster from the environment
/// (in-cluster service account, or KUBECONFIG).
pub async fn run(options: RunOptions) -> Result<(), RunError> {
    run_with(Client::try_default().await?, options).await
}

/// Runs the operator with `client`.
pub async fn run_with(client: Client, options: RunOptions) -> Result<(), RunError> {
    let ready = Arc::new(AtomicBool::new(false));
    let health = tokio::spawn(serve_health(options.http_address, ready.clone()));
    // Wait to lead: only one replica reconciles. Readiness means "able to lead" (the API server answers and the
    // Lease can be read), not "leading": a standby must be Ready, or a second replica never becomes available,
    // a rollout next to the old leader never completes, `helm --wait` hangs and the PDB blocks draining.
    let renew_every = options.lease.duration / 3;
    // A leader that could not renew for this long stops: by the time the Lease runs out another replica may lead.
    let renew_deadline = options.lease.duration * 2 / 3;
    let mut elector = Elector::new(options.lease.clone());
    loop {
        match elector.try_hold(&client).await {
            Ok(true) => break,
            Ok(false) => {
                ready.store(true, Ordering::SeqCst);
                tracing::info!(lease = %options.lease.name, "another replica leads; waiting");
            }
            // A transient error (the API server restarting, a network blip) is not a reason to die at start.
            Err(error) => {
                ready.store(false, Ordering::SeqCst);
                tracing::warn!(%error, "cannot read the Lease; retrying");
            }
        }
        tokio::time::sleep(renew_every).await;
    }
    tracing::info!(identity = %options.lease.identity, "leading");
    ready.store(true, Ordering::SeqCst);
    let elector = Arc::new(tokio::sync::Mutex::new(elector));
    let (lost_sender, mut lost) = tokio::sync::watch::channel(false);
    let renewing = {
        let client = client.clone();
        let elector = elector.clone();
        // After a failed renewal, try again sooner than the regular renewal.
        let retry_every = renew_every.min(Duration::from_secs(2));
        tokio::spawn(async move {
            let mut renewed_at = tokio::time::Instant::now();
            let mut wait = renew_every;
            loop {
                tokio::time::sleep(wait).await;
                // Each attempt is bounded by what is left of the renew deadline: a request hanging on a dead
                // connection must not keep this replica leading after the Lease ran out for the others.
                let left = renew_deadline.saturating_sub(renewed_at.elapsed());
                let attempt = tokio::time::timeout(left, async {
                    elector.lock().await.try_hold(&client).await
                })
                .await;
                match attempt {
                    Ok(Ok(true)) => {
                        renewed_at = tokio::time::Instant::now();
                        wait = renew_every;
                    }
                    // Refused: someone else holds it, or the Lease changed under us (a 409 from an unrelated write
                    // ends up here too). The next attempt reads it again and tells which.
                    Ok(Ok(false)) => {
                        tracing::warn!("the Lease was not renewed; reading it again");
                        wait = retry_every / 4;
                        if elector.lock().await.holder_is_other(&client).await {
                            let _ = lost_sender.send(true);
                            return;
                        }
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "cannot renew the Lease; retrying");
                        wait = retry_every;
                    }
                    Err(_) => {
                        tracing::warn!("renewing the Lease did not finish in time");
                        wait = Duration::ZERO;
                    }
                }
                if renewed_at.elapsed() >= renew_deadline {
                    tracing::error!(
                        "could not renew the Lease in time; stopping before another replica leads"
                    );
                    let _ = lost_sender.send(true);
                    return;
                }
            }
        })
    };
    let namespace = options.namespace.as_deref();
    let resource = ApiResource::erase::<FoodDeliveryApp>(&());
    let children = watcher::Config::default().labels(&format!("{}={MANAGER}", label::MANAGED_BY));
    let mut watches = OwnedWatches {
        client: &client,
        namespace,
        config: children,
        caches: ChildCaches::default(),
        added: Vec::new(),
    };
    for_each_owned_kind(&mut watches);
    let OwnedWatches { caches, added, .. } = watches;
    let operator = Arc::new(Operator {
        context: Arc::new(Context {
            client: client.clone(),
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: MANAGER.to_owned(),
                    instance: Some(options.lease.identity.clone()),
                },
            ),
            now: reconcile::wall_clock,
            caches,
        }),
        failures: Mutex::new(HashMap::new()),
        resource: resource.clone(),
    });
    let apps: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let controller = added
        .into_iter()
        .fold(
            Controller::new_with(apps, watcher::Config::default(), resource),
            |controller, add| add(controller),
        )
        // Bounded: a thousand apps changing at once must not send a thousand reconciles' requests together; a
        // burst of events for one app (a rollout touching every child) collapses into one reconcile.
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(RECONCILE_CONCURRENCY)
                .debounce(Duration::from_secs(1)),
        )
        .shutdown_on_signal()
        .run(reconcile_one, error_policy, operator)
        .for_each(|result| async move {
            match result {
                Ok((app, _)) => tracing::debug!(app = %app.name, "reconciled"),
                // An object that cannot be decoded or a watch hiccup is logged; the stream goes on.
                Err(error) => tracing::debug!(%error, "controller"),
            }
        });
    let result = tokio::select! {
        () = controller => Ok(()),
        _ = lost.wait_for(|lost| *lost) => Err(RunError::LostLease),
    };
    renewing.abort();
    if result.is_ok() {
        // Shut down by a signal: hand the Lease to a standby now rather than after it expires.
        let released = tokio::time::timeout(Duration::from_secs(5), async {
            elector.lock().await.release(&client).await
        })
        .await;
        if !matches!(released, Ok(Ok(()))) {
            tracing::warn!(
                ?released,
                "could not release the Lease; it expires by itself"
            );
        }
    }
    health.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fake_api::FakeApi;
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    /// The minimal example as the API server stores it, at generation 1.
    fn stored_minimal_app() -> serde_json::Value {
        let mut app: serde_json::Value =
            serde_saphyr::from_str(include_str!("../../examples/minimal.yaml")).unwrap();
        app["metadata"]["uid"] = json!("app-uid");
        app["metadata"]["generation"] = json!(1);
        app["metadata"]["resourceVersion"] = json!("1");
        app
    }

    /// A replica `operator-0` in namespace food, serving health on a free port (returned).
    fn replica_options() -> (RunOptions, u16) {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let options = RunOptions {
            http_address: SocketAddr::from(([127, 0, 0, 1], port)),
            lease: LeaseSettings {
                name: "food-delivery-operator".into(),
                namespace: "food".into(),
                identity: "operator-0".into(),
                duration: Duration::from_secs(15),
            },
            namespace: Some("food".into()),
        };
        (options, port)
    }

    /// The raw answer to `GET path` on the replica's health port; empty while nothing listens there yet.
    async fn health_get(port: u16, path: &str) -> String {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            return String::new();
        };
        tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)
            .await
            .unwrap();
        answer
    }

    #[test]
    fn status_churn_of_an_autoscaler_triggers_no_reconcile_and_a_spec_change_or_deletion_does() {
        let hpa = |generation: i64, current: i32| HorizontalPodAutoscaler {
            metadata: kube::api::ObjectMeta {
                uid: Some("hpa-1".to_owned()),
                generation: Some(generation),
                ..kube::api::ObjectMeta::default()
            },
            status: Some(
                k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus {
                    current_replicas: Some(current),
                    ..Default::default()
                },
            ),
            ..HorizontalPodAutoscaler::default()
        };
        let mut changes = SpecChanges::default();
        let mut triggers = |event| changes.worth_a_reconcile(&event);
        assert!(
            triggers(watcher::Event::InitApply(hpa(1, 2))),
            "first sight"
        );
        let status_changes = (3..103)
            .filter(|current| triggers(watcher::Event::Apply(hpa(1, *current))))
            .count();
        assert_eq!(status_changes, 0, "100 status updates, no reconcile");
        assert!(triggers(watcher::Event::Apply(hpa(2, 5))), "a spec change");
        assert!(triggers(watcher::Event::Delete(hpa(2, 5))), "a deletion");
        assert!(
            triggers(watcher::Event::Apply(hpa(2, 5))),
            "recreated after deletion"
        );
        let config_map = ConfigMap::default();
        assert!(
            changes.worth_a_reconcile(&watcher::Event::Apply(config_map)),
            "no generation: every change counts"
        );
    }

    /// A listing's objects trigger their apps only once the whole listing is in the cache, so the reconcile they
    /// trigger reads them from it.
    #[tokio::test]
    async fn a_listing_triggers_its_objects_once_the_cache_holds_them() {
        use crate::reconcile::children::Children;
        let (client, fake) = FakeApi::start();
        let config_maps = "/api/v1/namespaces/food/configmaps";
        for name in ["shop-a", "shop-b"] {
            fake.insert(
                config_maps,
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "food", "labels": {
                        label::MANAGED_BY: MANAGER, label::INSTANCE: "shop", label::APP: "shop"}}}),
            );
        }
        let mut caches = ChildCaches::default();
        let watch = cached_watch(
            Api::<ConfigMap>::namespaced(client.clone(), "food"),
            watcher::Config::default(),
            &mut caches,
            every_change,
        );
        futures::pin_mut!(watch);
        let first = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(first.name_any().starts_with("shop-"));
        // Gone from the server: only the cache can still name them.
        fake.remove(config_maps, "shop-a");
        fake.remove(config_maps, "shop-b");
        let mut cached: Vec<String> = Children::<ConfigMap>::of(&client, &caches, "food", "shop")
            .await
            .unwrap()
            .objects
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        cached.sort();
        assert_eq!(cached, ["shop-a", "shop-b"]);
    }

    #[test]
    fn failures_back_off_exponentially_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=9)
            .map(|failures| backoff(failures).as_secs())
            .collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(0).as_secs(), 5);
        assert_eq!(backoff(u32::MAX).as_secs(), 300);
    }

    #[tokio::test]
    async fn run_leads_then_reconciles_an_app_it_finds_and_serves_health() {
        let (client, fake) = FakeApi::start();
        let apps = "/apis/fooddelivery.dev/v1alpha1/namespaces/food/fooddeliveryapps";
        fake.insert(apps, stored_minimal_app());
        // One stored object the operator cannot decode must not stop it from reconciling the others.
        fake.insert(
            apps,
            json!({"apiVersion": "fooddelivery.dev/v1alpha1", "kind": "FoodDeliveryApp",
                   "metadata": {"name": "broken", "namespace": "food", "uid": "b", "resourceVersion": "1"},
                   "spec": {"image": 5}}),
        );
        let (options, port) = replica_options();
        let running = tokio::spawn(run_with(client, options));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let app = fake.get(apps, "minimal").unwrap();
            if app["status"]["observedGeneration"] == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "no status written: {app}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            fake.names("/apis/apps/v1/namespaces/food/deployments")
                .len(),
            8
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let broken = loop {
            let broken = fake.get(apps, "broken").unwrap();
            if !broken["status"].is_null() {
                break broken;
            }
            assert!(Instant::now() < deadline, "the broken app got no status");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let stalled = broken["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|condition| condition["type"] == "Stalled")
            .unwrap()
            .clone();
        assert_eq!(stalled["status"], "True");
        assert_eq!(stalled["reason"], "InvalidSpec");
        assert!(
            stalled["message"]
                .as_str()
                .unwrap()
                .contains("cannot read the FoodDeliveryApp")
        );
        let lease = fake
            .get(
                "/apis/coordination.k8s.io/v1/namespaces/food/leases",
                "food-delivery-operator",
            )
            .unwrap();
        assert_eq!(lease["spec"]["holderIdentity"], "operator-0");
        assert!(
            health_get(port, "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            health_get(port, "/readyz")
                .await
                .starts_with("HTTP/1.1 200"),
            "ready once leading"
        );
        running.abort();
    }

    /// The leader's renewal hangs (a dead connection to the API server): it must stop leading within the renew
    /// deadline, not when TCP gives up, or it keeps reconciling next to the replica that took the Lease over.
    #[tokio::test]
    async fn a_leader_whose_renewal_hangs_stops_within_the_renew_deadline() {
        let (client, fake) = FakeApi::start();
        let (mut options, _) = replica_options();
        options.lease.duration = Duration::from_secs(3);
        let running = tokio::spawn(run_with(client, options));
        let leases = "/apis/coordination.k8s.io/v1/namespaces/food/leases";
        let deadline = Instant::now() + Duration::from_secs(10);
        while fake.get(leases, "food-delivery-operator").is_none() {
            assert!(Instant::now() < deadline, "never led");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fake.hang_requests_to(leases);
        let stopped = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("a leader that cannot renew kept running")
            .unwrap();
        assert!(matches!(result, Err(RunError::LostLease)), "{result:?}");
        assert!(
            stopped.elapsed() < Duration::from_secs(3),
            "stopped {:?} after the API hung; the Lease lasts 3 s",
            stopped.elapsed()
        );
    }

    /// Two operator replicas: the standby is Ready (able to lead) while another leads, and reconciles nothing.
    #[tokio::test]
    async fn a_standby_is_ready_and_leaves_the_apps_to_the_leader() {
        let (client, fake) = FakeApi::start();
        let apps = "/apis/fooddelivery.dev/v1alpha1/namespaces/food/fooddeliveryapps";
        fake.insert(apps, stored_minimal_app());
        fake.insert(
            "/apis/coordination.k8s.io/v1/namespaces/food/leases",
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": "food-delivery-operator", "namespace": "food", "resourceVersion": "1"},
                   "spec": {"holderIdentity": "operator-1", "leaseDurationSeconds": 15,
                            "renewTime": "2099-01-01T00:00:00.000000Z"}}),
        );
        let (options, port) = replica_options();
        let running = tokio::spawn(run_with(client, options));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !health_get(port, "/readyz")
            .await
            .starts_with("HTTP/1.1 200")
        {
            assert!(Instant::now() < deadline, "a standby must be Ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let app = fake.get(apps, "minimal").unwrap();
        assert!(app["status"].is_null(), "the standby reconciled: {app}");
        running.abort();
    }

    #[tokio::test]
    async fn a_failed_reconcile_backs_off_per_app_and_says_so_in_a_warning() {
        let (client, fake) = FakeApi::start();
        let resource = ApiResource::erase::<FoodDeliveryApp>(&());
        let operator = Arc::new(Operator {
            context: Arc::new(Context {
                client: client.clone(),
                recorder: Recorder::new(
                    client,
                    Reporter {
                        controller: MANAGER.to_owned(),
                        instance: None,
                    },
                ),
                now: reconcile::wall_clock,
                caches: Default::default(),
            }),
            resource: resource.clone(),
            failures: Mutex::new(HashMap::new()),
        });
        let mut app = DynamicObject::new("shop", &resource).within("food");
        app.metadata.uid = Some("uid".into());
        let app = Arc::new(app);
        let error = || ReconcileError::NoNamespace;
        // An app deleted while it was failing is never reconciled again; its count must not stay for ever.
        if let Some(long_ago) = Instant::now().checked_sub(FORGET_FAILURES_AFTER * 2) {
            operator
                .failures
                .lock()
                .unwrap()
                .insert("food/deleted-long-ago".to_owned(), (3, long_ago));
        }
        assert_eq!(
            error_policy(app.clone(), &error(), operator.clone()),
            Action::requeue(Duration::from_secs(5))
        );
        assert!(
            !operator
                .failures
                .lock()
                .unwrap()
                .contains_key("food/deleted-long-ago"),
            "a stale failure count is forgotten"
        );
        assert_eq!(
            error_policy(app.clone(), &error(), operator.clone()),
            Action::requeue(Duration::from_secs(10))
        );
        let events = "/apis/events.k8s.io/v1/namespaces/food/events";
        let deadline = Instant::now() + Duration::from_secs(5);
        while fake.names(events).is_empty() {
            assert!(Instant::now() < deadline, "no Warning event");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let event = fake.get(events, &fake.names(events)[0]).unwrap();
        assert_eq!(event["reason"], "ReconcileFailed");
        assert_eq!(event["type"], "Warning");
    }
}
