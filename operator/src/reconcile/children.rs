//! Where the reconcile finds the app's children: the controller's watch caches when they hold a complete list of
//! the kind, a LIST otherwise (before a cache is ready, and in tests that run a reconcile on its own).
//!
//! A cache may lag the server by a moment, which is harmless only if everything that writes or reports from it
//! is checked against the server first. So the reconcile trusts the cache for one decision only, "this child is
//! already as wanted, send nothing"; a lag there is corrected by the watch event that follows (an object edited or
//! deleted since triggers another reconcile once the cache holds the change). Every other case reads the object
//! fresh (`get`) before applying it, so Created, Updated and Healed are judged from the server's own state, and a
//! prune of an object that is gone already is not an error.

use super::apply::Child;
use crate::build::metadata::{MANAGER, label};
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The controller's watch caches of the children, one per kind. A kind without one is listed from the API.
#[derive(Clone, Default)]
pub struct ChildCaches(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

/// One kind's cache and whether its watch is working.
struct Cache<K: Child> {
    store: Store<K>,
    live: Arc<AtomicBool>,
}

impl ChildCaches {
    /// Reads kind `K` from `store` from now on, while `live` says its watch works (the watch sets it: false on an
    /// error, true again on the next event). A cache whose watch keeps failing would otherwise stay frozen and
    /// trusted: a deleted child never put back, drift never healed.
    pub fn insert<K: Child>(&mut self, store: Store<K>, live: Arc<AtomicBool>) {
        self.0
            .insert(TypeId::of::<K>(), Arc::new(Cache { store, live }));
    }

    #[cfg(any(test, feature = "fake-api"))]
    fn insert_live<K: Child>(&mut self, store: Store<K>) {
        self.insert(store, Arc::new(AtomicBool::new(true)));
    }

    /// Caches of every kind holding what the API server holds in `namespaces` now, trimmed as the controller's
    /// are; they do not follow later changes (for tests and benchmarks: a cache lagging the server, at its worst).
    #[cfg(any(test, feature = "fake-api"))]
    pub async fn snapshot(client: &Client, namespaces: &[&str]) -> Result<Self, kube::Error> {
        use k8s_openapi::api::apps::v1::Deployment;
        use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
        use k8s_openapi::api::core::v1::{
            ConfigMap, PersistentVolumeClaim, Service, ServiceAccount,
        };
        use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
        use k8s_openapi::api::policy::v1::PodDisruptionBudget;
        let mut caches = Self::default();
        caches.insert_live(snapshot_of::<ServiceAccount>(client, namespaces).await?);
        caches.insert_live(snapshot_of::<ConfigMap>(client, namespaces).await?);
        caches.insert_live(snapshot_of::<PersistentVolumeClaim>(client, namespaces).await?);
        caches.insert_live(snapshot_of::<Service>(client, namespaces).await?);
        caches.insert_live(snapshot_of::<Deployment>(client, namespaces).await?);
        caches.insert_live(snapshot_of::<HorizontalPodAutoscaler>(client, namespaces).await?);
        caches.insert_live(snapshot_of::<PodDisruptionBudget>(client, namespaces).await?);
        caches.insert_live(snapshot_of::<NetworkPolicy>(client, namespaces).await?);
        caches.insert_live(snapshot_of::<Ingress>(client, namespaces).await?);
        Ok(caches)
    }

    /// The cache of kind `K`, once its first complete list has arrived (an empty cache before that would look
    /// like a namespace without children, and the reconcile would create what exists and prune nothing).
    fn ready<K: Child>(&self) -> Option<&Store<K>> {
        let cache = self.0.get(&TypeId::of::<K>())?.downcast_ref::<Cache<K>>()?;
        cache.store.wait_until_ready().now_or_never()?.ok()?;
        cache.live.load(Ordering::SeqCst).then_some(&cache.store)
    }
}

/// A complete cache of kind `K` in `namespaces` as the server holds it now.
#[cfg(any(test, feature = "fake-api"))]
async fn snapshot_of<K: Child>(
    client: &Client,
    namespaces: &[&str],
) -> Result<Store<K>, kube::Error> {
    use kube::runtime::watcher::Event;
    let (store, mut writer) = kube::runtime::reflector::store::<K>();
    writer.apply_watcher_event(&Event::Init);
    for namespace in namespaces {
        let listed = Api::<K>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await?;
        for mut object in listed.items {
            super::apply::trim_for_cache(object.meta_mut());
            writer.apply_watcher_event(&Event::InitApply(object));
        }
    }
    writer.apply_watcher_event(&Event::InitDone);
    Ok(store)
}

/// The label selector of the operator's objects of app `app`, for kind `K`. Claims are selected by the operator's
/// mark alone and filtered by [`belongs_to`]: they do not carry `app.kubernetes.io/instance` (see `label::APP`).
/// Every other kind is selected by instance, which objects made before `label::APP` existed carry too, so an
/// upgrade of the operator still finds (and prunes) them.
fn managed_selector<K: Child>(app: &str) -> String {
    if is_claim::<K>() {
        format!("{}={MANAGER}", label::MANAGED_BY)
    } else {
        format!("{}={app},{}={MANAGER}", label::INSTANCE, label::MANAGED_BY)
    }
}

fn is_claim<K: Child>() -> bool {
    K::kind(&()) == "PersistentVolumeClaim"
}

/// Whether an object the selector found is app `app`'s.
fn belongs_to(metadata: &ObjectMeta, app: &str) -> bool {
    metadata.labels.as_ref().is_some_and(|labels| {
        [label::APP, label::INSTANCE]
            .iter()
            .any(|key| labels.get(*key).map(String::as_str) == Some(app))
    })
}

/// Whether a cached object is one [`managed_selector`] and [`belongs_to`] would find.
fn selected<K: Child>(object: &K, namespace: &str, app: &str) -> bool {
    let label_is =
        |key: &str, value: &str| object.labels().get(key).is_some_and(|found| found == value);
    object.meta().namespace.as_deref() == Some(namespace)
        && label_is(label::MANAGED_BY, MANAGER)
        && (is_claim::<K>() || label_is(label::INSTANCE, app))
        && belongs_to(object.meta(), app)
}

/// The app's children of one kind as the reconcile found them.
pub struct Children<K> {
    /// The objects.
    pub objects: Vec<K>,
    /// Whether they came from a watch cache (which may lag the server by a moment).
    from_cache: bool,
}

impl<K: Child> Children<K> {
    /// The children of kind `K` of app `app`: from the cache when it is ready, else listed.
    pub async fn of(
        client: &Client,
        caches: &ChildCaches,
        namespace: &str,
        app: &str,
    ) -> Result<Self, kube::Error> {
        if let Some(store) = caches.ready::<K>() {
            let objects = store
                .state_filter(|object| selected(object, namespace, app))
                .into_iter()
                .map(|object| (*object).clone())
                .collect();
            return Ok(Self {
                objects,
                from_cache: true,
            });
        }
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let listed = api
            .list(&ListParams::default().labels(&managed_selector::<K>(app)))
            .await?;
        Ok(Self {
            objects: listed
                .items
                .into_iter()
                .filter(|object| belongs_to(object.meta(), app))
                .collect(),
            from_cache: false,
        })
    }

    /// The child named `name`, as found.
    pub fn find(&self, name: &str) -> Option<&K> {
        self.objects.iter().find(|object| object.name_any() == name)
    }

    /// The child named `name`: settled from the cache when `settled` holds for the cached object (nothing to do,
    /// and a lag is corrected by the event that follows), else as the server holds it now (a listed object is
    /// that already; a cached one is read again).
    pub async fn current(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        settled: impl Fn(&K) -> bool,
    ) -> Result<Current<K>, kube::Error> {
        match self.find(name) {
            Some(found) if self.from_cache && settled(found) => Ok(Current::Settled(found.clone())),
            Some(found) if !self.from_cache => Ok(Current::Live(Some(found.clone()))),
            None if !self.from_cache => Ok(Current::Live(None)),
            _ => Api::<K>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map(Current::Live),
        }
    }
}

/// What [`Children::current`] found.
pub enum Current<K> {
    /// The cached object, for which the decision holds: nothing to do.
    Settled(K),
    /// The object as the server holds it (`None`: it does not exist).
    Live(Option<K>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim};
    use std::collections::BTreeMap;

    fn labelled<K: Child + Default>(namespace: &str, labels: &[(&str, &str)]) -> K {
        let mut object = K::default();
        object.meta_mut().namespace = Some(namespace.to_owned());
        object.meta_mut().labels = Some(
            labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        );
        object
    }

    #[test]
    fn the_cache_yields_what_the_label_selector_would_list() {
        let managed = (label::MANAGED_BY, MANAGER);
        let config_map =
            |namespace, labels: &[(&str, &str)]| labelled::<ConfigMap>(namespace, labels);
        assert!(selected(
            &config_map("food", &[managed, (label::INSTANCE, "shop")]),
            "food",
            "shop"
        ));
        assert!(!selected(
            &config_map("other", &[managed, (label::INSTANCE, "shop")]),
            "food",
            "shop"
        ));
        assert!(!selected(
            &config_map("food", &[managed, (label::INSTANCE, "shop-2")]),
            "food",
            "shop"
        ));
        assert!(!selected(
            &config_map("food", &[(label::INSTANCE, "shop")]),
            "food",
            "shop"
        ));
        // Claims carry the project's own label instead of the instance (which Argo CD tracks).
        let claim = labelled::<PersistentVolumeClaim>("food", &[managed, (label::APP, "shop")]);
        assert!(selected(&claim, "food", "shop"));
        assert!(!selected(&claim, "food", "other"));
        let config_map_with_app_only = config_map("food", &[managed, (label::APP, "shop")]);
        assert!(
            !selected(&config_map_with_app_only, "food", "shop"),
            "other kinds are selected by instance, as the LIST does"
        );
    }

    #[tokio::test]
    async fn a_cache_whose_watch_fails_is_not_trusted_and_the_children_are_listed() {
        use crate::reconcile::fake_api::FakeApi;
        use kube::runtime::watcher::Event;
        let (client, fake) = FakeApi::start();
        fake.insert(
            "/api/v1/namespaces/food/configmaps",
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "shop-settings", "namespace": "food", "labels": {
                    label::MANAGED_BY: MANAGER, label::INSTANCE: "shop", label::APP: "shop"}}}),
        );
        // A complete but old listing: it missed the ConfigMap.
        let (store, mut writer) = kube::runtime::reflector::store::<ConfigMap>();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
        let live = Arc::new(AtomicBool::new(true));
        let mut caches = ChildCaches::default();
        caches.insert(store, live.clone());
        let found = || async {
            Children::<ConfigMap>::of(&client, &caches, "food", "shop")
                .await
                .unwrap()
                .objects
                .iter()
                .map(ResourceExt::name_any)
                .collect::<Vec<_>>()
        };
        assert!(found().await.is_empty(), "trusted while its watch works");
        live.store(false, Ordering::SeqCst);
        assert_eq!(
            found().await,
            ["shop-settings"],
            "listed once the watch fails"
        );
    }
}
