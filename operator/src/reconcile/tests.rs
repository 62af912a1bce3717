//! The reconcile against the fake API server: the exact writes of a first reconcile, none for a second, healing,
//! pruning, stalls, failures and status transitions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::children::ChildCaches;
use super::fake_api::{FakeApi, Seen};
use super::{Context, reconcile};
use crate::resource::FoodDeliveryApp;
use http::{Method, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use std::sync::Arc;

const APPS: &str = "/apis/fooddelivery.dev/v1alpha1/namespaces/food/fooddeliveryapps";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/food/deployments";
const SERVICES: &str = "/api/v1/namespaces/food/services";
const SECRETS: &str = "/api/v1/namespaces/food/secrets";

fn fixed_clock() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
}

struct Harness {
    fake: FakeApi,
    context: Arc<Context>,
}

impl Harness {
    fn start() -> Self {
        let (client, fake) = FakeApi::start();
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "food-delivery-operator".into(),
                instance: None,
            },
        );
        Self {
            fake,
            context: Arc::new(Context {
                client,
                recorder,
                now: fixed_clock,
                caches: Default::default(),
            }),
        }
    }

    /// Stores `app` (from an example) as the API server would hold it, with the Secret it needs.
    fn create(&self, example: &str, change: impl FnOnce(&mut Value)) {
        let mut app: Value = serde_saphyr::from_str(example).unwrap();
        change(&mut app);
        app["metadata"]["uid"] = json!("app-uid");
        app["metadata"]["generation"] = json!(1);
        self.fake.insert(APPS, app);
        self.fake.insert(
            SECRETS,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "food-db"}, "data": {"url": "cG9zdGdyZXM6Ly8="}}),
        );
    }

    fn app(&self, name: &str) -> FoodDeliveryApp {
        serde_json::from_value(self.fake.get(APPS, name).unwrap()).unwrap()
    }

    /// From now on the reconcile reads its children from watch caches holding what the fake holds at this
    /// moment; they do not follow later changes (a cache lagging the server, at its worst).
    async fn cache_now(&mut self) {
        let client = self.context.client.clone();
        let caches = ChildCaches::snapshot(&client, &["food"]).await.unwrap();
        self.context = Arc::new(Context {
            client,
            recorder: self.context.recorder.clone(),
            now: fixed_clock,
            caches,
        });
    }

    /// Runs one reconcile of the stored app and returns the requests that wrote something.
    async fn reconcile(&self, name: &str) -> (Result<(), String>, Vec<Seen>) {
        self.fake.take_seen();
        let result = reconcile(Arc::new(self.app(name)), self.context.clone())
            .await
            .map(|_| ())
            .map_err(|error| error.to_string());
        let writes = self
            .fake
            .take_seen()
            .into_iter()
            .filter(Seen::is_write)
            .collect();
        (result, writes)
    }

    /// Runs one reconcile and returns every request it made, reads included.
    async fn reconcile_seeing_all(&self, name: &str) -> Vec<Seen> {
        self.fake.take_seen();
        reconcile(Arc::new(self.app(name)), self.context.clone())
            .await
            .unwrap();
        self.fake.take_seen()
    }

    fn condition(&self, name: &str, type_: &str) -> (String, String) {
        let app = self.fake.get(APPS, name).unwrap();
        let condition = app["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|condition| condition["type"] == type_)
            .unwrap()
            .clone();
        (
            condition["status"].as_str().unwrap().to_owned(),
            condition["reason"].as_str().unwrap().to_owned(),
        )
    }

    /// Sets every Deployment's status as the deployment controller would.
    fn roll_out(&self, available: bool) {
        for name in self.fake.names(DEPLOYMENTS) {
            self.fake.edit(DEPLOYMENTS, &name, |deployment| {
                let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(2);
                let done = if available { replicas } else { 0 };
                deployment["status"] = json!({
                    "observedGeneration": deployment["metadata"]["generation"],
                    "replicas": replicas, "updatedReplicas": done, "readyReplicas": done, "availableReplicas": done,
                });
            });
        }
    }
}

const PRODUCTION: &str = include_str!("../../../examples/production.yaml");
const MINIMAL: &str = include_str!("../../../examples/minimal.yaml");

/// `PATCH deployments/shop-order`-style summaries; a ConfigMap's content hash is left out of its name.
fn summaries(writes: &[Seen]) -> Vec<String> {
    writes
        .iter()
        .map(|seen| {
            let short = seen.short();
            match short.rsplit_once('-') {
                Some((rest, hash))
                    if short.contains("configmaps/")
                        && hash.len() == 10
                        && hash.bytes().all(|byte| byte.is_ascii_hexdigit()) =>
                {
                    rest.to_owned()
                }
                _ => short,
            }
        })
        .collect()
}

/// The applies among `seen`, summarized.
fn applies(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter(|seen| seen.method == Method::PATCH)
        .map(Seen::short)
        .collect()
}

/// The settings the pods of Deployment `deployment` read: the ConfigMap its template names.
fn live_config(harness: &Harness, deployment: &str) -> Value {
    let name = config_map_name_of(harness, deployment);
    harness.fake.get(CONFIG_MAPS, &name).unwrap()["data"].clone()
}

#[tokio::test]
async fn a_first_reconcile_applies_everything_in_order_then_reports_reconciling_and_a_second_writes_nothing()
 {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    let writes = summaries(&writes);
    let applies: Vec<&String> = writes
        .iter()
        .filter(|write| write.starts_with("PATCH") && !write.ends_with("/status"))
        .collect();
    // 44 objects, and the replicas of the 8 autoscaled Deployments set for their HPA right after creation.
    assert_eq!(applies.len(), 44 + 8, "{writes:#?}");
    let first = |kind: &str| {
        applies
            .iter()
            .position(|write| write.contains(kind))
            .unwrap()
    };
    let last = |kind: &str| {
        applies
            .iter()
            .rposition(|write| write.contains(kind))
            .unwrap()
    };
    assert_eq!(applies[0], "PATCH serviceaccounts/good-morning");
    assert!(
        last("configmaps/") < first("deployments/"),
        "ConfigMaps before the Deployments that read them"
    );
    assert!(last("services/") < first("deployments/"));
    assert!(last("deployments/") < first("horizontalpodautoscalers/"));
    assert!(
        writes.iter().any(|write| write == "POST events"),
        "a Created event"
    );
    assert_eq!(
        writes.last().unwrap(),
        "PATCH fooddeliveryapps/good-morning/status"
    );
    assert_eq!(harness.condition("good-morning", "Reconciling").0, "True");
    assert_eq!(harness.condition("good-morning", "Ready").0, "False");
    let stored = harness.fake.get(DEPLOYMENTS, "good-morning-order").unwrap();
    assert_eq!(
        stored["metadata"]["ownerReferences"][0]["uid"], "app-uid",
        "children are owned"
    );

    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    assert!(
        writes.is_empty(),
        "nothing to change, nothing written: {:?}",
        summaries(&writes)
    );
}

#[tokio::test]
async fn a_child_deleted_or_edited_by_hand_is_put_back_and_nothing_else_is_written() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    harness.fake.remove(SERVICES, "good-morning-order");
    harness
        .fake
        .edit(DEPLOYMENTS, "good-morning-kitchen", |deployment| {
            deployment["spec"]["template"]["spec"]["containers"][0]["image"] =
                json!("evil/image:latest");
        });
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    let applies: Vec<String> = summaries(&writes)
        .into_iter()
        .filter(|write| write.starts_with("PATCH") && !write.contains("events/"))
        .collect();
    assert_eq!(
        applies,
        [
            "PATCH services/good-morning-order",
            "PATCH deployments/good-morning-kitchen"
        ],
        "exactly the two children"
    );
    let image = harness
        .fake
        .get(DEPLOYMENTS, "good-morning-kitchen")
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
        .clone();
    assert_eq!(image, "ghcr.io/food-delivery-operator/food-delivery:0.1.0");
}

#[tokio::test]
async fn a_disabled_component_is_pruned_and_the_others_are_left_alone() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    harness.fake.edit(APPS, "good-morning", |app| {
        app["spec"]["components"]["stamp"] = json!({"enabled": false});
        app["metadata"]["generation"] = json!(2);
    });
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    let writes = summaries(&writes);
    let mut deleted: Vec<&String> = writes
        .iter()
        .filter(|write| write.starts_with("DELETE"))
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "DELETE configmaps/good-morning-stamp",
            "DELETE deployments/good-morning-stamp",
            "DELETE horizontalpodautoscalers/good-morning-stamp",
            "DELETE services/good-morning-stamp",
        ]
    );
    let applied: Vec<&String> = writes
        .iter()
        .filter(|write| {
            write.starts_with("PATCH") && !write.ends_with("/status") && !write.contains("events/")
        })
        .collect();
    // The gateway stops routing to stamps: its settings, and so its pods' template, change. Nothing else does.
    assert_eq!(
        applied,
        [
            "PATCH configmaps/good-morning-gateway",
            "PATCH deployments/good-morning-gateway"
        ]
    );
    assert!(
        !harness
            .fake
            .names(DEPLOYMENTS)
            .contains(&"good-morning-stamp".to_owned())
    );
}

#[tokio::test]
async fn an_invalid_spec_or_a_missing_secret_stalls_with_the_reason_a_warning_and_no_child() {
    let harness = Harness::start();
    harness.create(MINIMAL, |app| {
        app["spec"]["components"] = json!({"order": {"replicas": 3}});
    });
    let (result, writes) = harness.reconcile("minimal").await;
    result.unwrap();
    assert_eq!(
        summaries(&writes),
        ["POST events", "PATCH fooddeliveryapps/minimal/status"]
    );
    let event = harness
        .fake
        .names("/apis/events.k8s.io/v1/namespaces/food/events");
    assert_eq!(event.len(), 1);
    let (stalled, reason) = harness.condition("minimal", "Stalled");
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "InvalidSpec"));

    let harness = Harness::start();
    harness.create(PRODUCTION, |app| {
        app["spec"]["database"]["postgres"]["urlSecretRef"]["name"] = json!("no-such-secret");
    });
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    assert_eq!(
        summaries(&writes),
        ["POST events", "PATCH fooddeliveryapps/good-morning/status"]
    );
    let app = harness.fake.get(APPS, "good-morning").unwrap();
    let stalled = app["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Stalled")
        .unwrap()
        .clone();
    assert_eq!(stalled["reason"], "SecretMissing");
    assert!(
        stalled["message"]
            .as_str()
            .unwrap()
            .contains("Secret no-such-secret not found")
    );
    assert!(harness.fake.names(DEPLOYMENTS).is_empty());
}

#[tokio::test]
async fn a_failing_api_fails_the_reconcile_and_a_later_attempt_converges() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness
        .fake
        .fail_next(Method::PATCH, StatusCode::INTERNAL_SERVER_ERROR);
    let (result, _) = harness.reconcile("good-morning").await;
    let error = result.unwrap_err();
    assert!(
        error.starts_with("applying ServiceAccount good-morning:"),
        "the error names the object: {error}"
    );
    harness.fake.fail_next(Method::PATCH, StatusCode::CONFLICT);
    assert!(harness.reconcile("good-morning").await.0.is_err());
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(harness.fake.names(DEPLOYMENTS).len(), 8);
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    assert!(writes.is_empty(), "{:?}", summaries(&writes));
}

#[tokio::test]
async fn status_follows_the_rollout_reconciling_then_ready_and_stalled_past_the_deadline() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    harness.roll_out(false);
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(harness.condition("good-morning", "Reconciling").0, "True");
    harness.roll_out(true);
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(
        harness.condition("good-morning", "Ready"),
        ("True".into(), "AllComponentsAvailable".into())
    );
    assert_eq!(harness.condition("good-morning", "Reconciling").0, "False");
    let app = harness.fake.get(APPS, "good-morning").unwrap();
    assert_eq!(app["status"]["readyComponents"], "8/8");
    assert_eq!(app["status"]["observedGeneration"], 1);
    harness.fake.edit(DEPLOYMENTS, "good-morning-order", |deployment| {
        deployment["status"]["updatedReplicas"] = json!(0);
        deployment["status"]["conditions"] = json!([{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet has timed out progressing"}]);
    });
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(
        harness.condition("good-morning", "Stalled"),
        ("True".into(), "ProgressDeadlineExceeded".into())
    );
    assert_eq!(harness.condition("good-morning", "Ready").0, "False");
}

#[tokio::test]
async fn a_paused_app_changes_nothing_and_says_so() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |app| {
        app["spec"]["paused"] = json!(true);
    });
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    assert_eq!(
        summaries(&writes),
        ["PATCH fooddeliveryapps/good-morning/status"]
    );
    assert_eq!(
        harness.condition("good-morning", "Ready"),
        ("False".into(), "Paused".into())
    );
    assert_eq!(harness.condition("good-morning", "Stalled").0, "False");
    assert!(harness.fake.names(DEPLOYMENTS).is_empty());
    let (_, writes) = harness.reconcile("good-morning").await;
    assert!(writes.is_empty(), "{:?}", summaries(&writes));
}

#[tokio::test]
async fn a_hand_edit_is_reported_as_healed() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    harness.fake.remove(SERVICES, "good-morning-order");
    harness.reconcile("good-morning").await.0.unwrap();
    let events = "/apis/events.k8s.io/v1/namespaces/food/events";
    let reasons: Vec<Value> = harness
        .fake
        .names(events)
        .iter()
        .map(|name| harness.fake.get(events, name).unwrap()["reason"].clone())
        .collect();
    assert!(reasons.contains(&json!("Healed")), "{reasons:?}");
    assert!(reasons.contains(&json!("Created")), "{reasons:?}");
}

const CONFIG_MAPS: &str = "/api/v1/namespaces/food/configmaps";
const INGRESSES: &str = "/apis/networking.k8s.io/v1/namespaces/food/ingresses";
const VOLUME_CLAIMS: &str = "/api/v1/namespaces/food/persistentvolumeclaims";

#[tokio::test]
async fn a_setting_removed_from_the_spec_is_removed_from_the_cluster() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |app| {
        app["spec"]["config"]["FEATURE_FLAG"] = json!("on");
    });
    harness.reconcile("good-morning").await.0.unwrap();
    let order_config = || live_config(&harness, "good-morning-order");
    assert_eq!(order_config()["FEATURE_FLAG"], "on");
    assert!(!harness.fake.get(INGRESSES, "good-morning-gateway").unwrap()["spec"]["tls"].is_null());
    harness.fake.edit(APPS, "good-morning", |app| {
        app["spec"]["config"]
            .as_object_mut()
            .unwrap()
            .remove("FEATURE_FLAG");
        app["spec"]["components"]["gateway"]["expose"]["ingress"]
            .as_object_mut()
            .unwrap()
            .remove("tlsSecretName");
        app["metadata"]["generation"] = json!(2);
    });
    harness.reconcile("good-morning").await.0.unwrap();
    assert!(
        order_config().get("FEATURE_FLAG").is_none(),
        "the key left the ConfigMap: {}",
        order_config()
    );
    let ingress = harness.fake.get(INGRESSES, "good-morning-gateway").unwrap();
    assert!(ingress["spec"].get("tls").is_none(), "{ingress}");
}

#[tokio::test]
async fn volumes_switched_to_retain_lose_their_owner_so_deleting_the_app_keeps_the_data() {
    let harness = Harness::start();
    harness.create(MINIMAL, |app| {
        app["spec"]["volumeRetention"] = json!("Delete");
    });
    harness.reconcile("minimal").await.0.unwrap();
    let claims = harness.fake.names(VOLUME_CLAIMS);
    assert!(!claims.is_empty());
    harness.fake.edit(APPS, "minimal", |app| {
        app["spec"]["volumeRetention"] = json!("Retain");
        app["metadata"]["generation"] = json!(2);
    });
    harness.reconcile("minimal").await.0.unwrap();
    harness.fake.delete(APPS, "minimal");
    assert!(
        harness.fake.names(DEPLOYMENTS).is_empty(),
        "owned children are collected"
    );
    assert_eq!(harness.fake.names(VOLUME_CLAIMS), claims, "the data stays");
}

#[tokio::test]
async fn after_ready_a_hundred_reconciles_write_nothing_and_publish_no_event() {
    for example in [PRODUCTION, MINIMAL] {
        let harness = Harness::start();
        harness.create(example, |_| {});
        let name = harness.fake.names(APPS)[0].clone();
        harness.reconcile(&name).await.0.unwrap();
        harness.roll_out(true);
        harness.reconcile(&name).await.0.unwrap();
        assert_eq!(harness.condition(&name, "Ready").0, "True");
        for _ in 0..100 {
            let (result, writes) = harness.reconcile(&name).await;
            result.unwrap();
            assert!(writes.is_empty(), "{:?}", summaries(&writes));
        }
    }
}

#[tokio::test]
async fn a_child_the_server_refuses_for_good_stalls_the_app_with_its_message_and_the_rest_is_applied()
 {
    let harness = Harness::start();
    harness.create(MINIMAL, |app| {
        app["spec"]["database"]["sqlite"]["storage"]["size"] = json!("2Gi");
    });
    harness.reconcile("minimal").await.0.unwrap();
    harness.fake.edit(APPS, "minimal", |app| {
        // Shrinking a claim is refused by the server; the new setting must still reach the ConfigMaps.
        app["spec"]["database"]["sqlite"]["storage"]["size"] = json!("1Gi");
        app["spec"]["config"] = json!({"LOG_LEVEL": "debug"});
        app["metadata"]["generation"] = json!(2);
    });
    let (result, writes) = harness.reconcile("minimal").await;
    result.unwrap();
    let (stalled, reason) = harness.condition("minimal", "Stalled");
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "ApplyRefused")
    );
    let app = harness.fake.get(APPS, "minimal").unwrap();
    let message = app["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|condition| condition["type"] == "Stalled")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("PersistentVolumeClaim minimal-order-data")
            && message.contains("less than previous"),
        "{message}"
    );
    assert_eq!(
        live_config(&harness, "minimal-order")["LOG_LEVEL"],
        "debug",
        "the other children were applied"
    );
    assert!(
        summaries(&writes).contains(&"POST events".to_owned()),
        "a Warning"
    );
    // The same refusal again: no new Event.
    let (result, writes) = harness.reconcile("minimal").await;
    result.unwrap();
    assert!(writes.is_empty(), "{:?}", summaries(&writes));
}

fn replicas_of(harness: &Harness, name: &str) -> Value {
    harness.fake.get(DEPLOYMENTS, name).unwrap()["spec"]["replicas"].clone()
}

#[tokio::test]
async fn a_new_autoscaled_deployment_starts_at_the_autoscalers_minimum() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(
        replicas_of(&harness, "good-morning-order"),
        3,
        "order's minReplicas"
    );
    assert_eq!(
        replicas_of(&harness, "good-morning-kitchen"),
        2,
        "the defaults' minReplicas"
    );
}

#[tokio::test]
async fn turning_autoscaling_on_keeps_the_pods_running_and_hands_the_count_to_the_autoscaler() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |app| {
        app["spec"]["defaults"]
            .as_object_mut()
            .unwrap()
            .remove("autoscaling");
        app["spec"]["components"]["kitchen"] = json!({"replicas": 4});
    });
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(replicas_of(&harness, "good-morning-kitchen"), 4);
    harness.fake.edit(APPS, "good-morning", |app| {
        app["spec"]["components"]["kitchen"] =
            json!({"autoscaling": {"minReplicas": 2, "maxReplicas": 6}});
        app["metadata"]["generation"] = json!(2);
    });
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(
        replicas_of(&harness, "good-morning-kitchen"),
        4,
        "not dropped to the default of one"
    );
    harness.fake.update_as(
        "horizontal-pod-autoscaler",
        DEPLOYMENTS,
        "good-morning-kitchen",
        |deployment| {
            deployment["spec"]["replicas"] = json!(6);
        },
    );
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(
        replicas_of(&harness, "good-morning-kitchen"),
        6,
        "the autoscaler's count stays"
    );
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    assert!(writes.is_empty(), "{:?}", summaries(&writes));

    // And back: without autoscaling the spec's count wins again.
    harness.fake.edit(APPS, "good-morning", |app| {
        app["spec"]["components"]["kitchen"] = json!({"replicas": 3});
        app["metadata"]["generation"] = json!(3);
    });
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(replicas_of(&harness, "good-morning-kitchen"), 3);
}

fn event_reasons(harness: &Harness) -> Vec<String> {
    let events = "/apis/events.k8s.io/v1/namespaces/food/events";
    harness
        .fake
        .names(events)
        .iter()
        .map(|name| {
            harness.fake.get(events, name).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_status_written_between_the_operators_read_and_its_apply_is_not_reported_as_a_heal() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    harness.roll_out(true);
    harness.reconcile("good-morning").await.0.unwrap();
    let events_before = event_reasons(&harness).len();
    // The deployment controller updates the status while the operator is between its LIST and its apply.
    harness
        .fake
        .interleave_before_next(DEPLOYMENTS, "good-morning-order", |deployment| {
            // A status field the app's status does not read, so only the race itself could cause a write.
            deployment["status"]["collisionCount"] = json!(1);
        });
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    assert!(writes.is_empty(), "{:?}", summaries(&writes));
    assert_eq!(
        event_reasons(&harness).len(),
        events_before,
        "{:?}",
        event_reasons(&harness)
    );
}

#[tokio::test]
async fn after_an_operator_upgrade_children_without_the_new_label_are_found_pruned_and_keep_their_replicas()
 {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    harness.fake.update_as(
        "horizontal-pod-autoscaler",
        DEPLOYMENTS,
        "good-morning-order",
        |deployment| {
            deployment["spec"]["replicas"] = json!(7);
        },
    );
    // As the previous version left them: no fooddelivery.dev/app label (claims carried the instance then).
    for collection in [CONFIG_MAPS, SERVICES, DEPLOYMENTS, INGRESSES] {
        for name in harness.fake.names(collection) {
            harness.fake.edit(collection, &name, |object| {
                object["metadata"]["labels"]
                    .as_object_mut()
                    .unwrap()
                    .remove("fooddelivery.dev/app");
            });
        }
    }
    let created_before = event_reasons(&harness)
        .iter()
        .filter(|reason| *reason == "Created")
        .count();
    // And the new spec drops a component.
    harness.fake.edit(APPS, "good-morning", |app| {
        app["spec"]["components"]["stamp"] = json!({"enabled": false});
        app["metadata"]["generation"] = json!(2);
    });
    harness.reconcile("good-morning").await.0.unwrap();
    assert!(
        !harness
            .fake
            .names(DEPLOYMENTS)
            .contains(&"good-morning-stamp".to_owned()),
        "pruned"
    );
    assert_eq!(
        replicas_of(&harness, "good-morning-order"),
        7,
        "the autoscaler's count stays"
    );
    let created = event_reasons(&harness)
        .iter()
        .filter(|reason| *reason == "Created")
        .count();
    assert_eq!(created, created_before, "nothing is reported as created");
}

fn config_map_name_of(harness: &Harness, deployment: &str) -> String {
    harness.fake.get(DEPLOYMENTS, deployment).unwrap()["spec"]["template"]["spec"]["containers"][0]
        ["envFrom"][0]["configMapRef"]["name"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_config_change_is_a_new_configmap_so_a_rollback_runs_with_its_own_settings() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    let before = config_map_name_of(&harness, "good-morning-order");
    harness.fake.edit(APPS, "good-morning", |app| {
        app["spec"]["config"]["LOG_LEVEL"] = json!("debug");
        app["metadata"]["generation"] = json!(2);
    });
    harness.reconcile("good-morning").await.0.unwrap();
    let after = config_map_name_of(&harness, "good-morning-order");
    assert_ne!(before, after, "the pods roll onto a new ConfigMap");
    let previous = harness
        .fake
        .get(CONFIG_MAPS, &before)
        .expect("the previous revision's ConfigMap stays");
    assert_eq!(
        previous["data"]["LOG_LEVEL"], "info",
        "unchanged: a rollback gets the old settings"
    );
    assert_eq!(previous["immutable"], true);
    assert_eq!(
        live_config(&harness, "good-morning-order")["LOG_LEVEL"],
        "debug"
    );
}

#[tokio::test]
async fn the_internal_credential_is_created_once_for_payment_and_its_caller_and_never_rotated() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    let secret = harness
        .fake
        .get(SECRETS, "good-morning-internal")
        .expect("created");
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["uid"], "app-uid",
        "goes with the app"
    );
    let token = secret["stringData"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    for _ in 0..3 {
        harness.reconcile("good-morning").await.0.unwrap();
    }
    let again = harness.fake.get(SECRETS, "good-morning-internal").unwrap();
    assert_eq!(
        again["stringData"]["token"],
        token.as_str(),
        "never rotated under running pods"
    );
    let reads_it = |component: &str| {
        let deployment = harness
            .fake
            .get(DEPLOYMENTS, &format!("good-morning-{component}"))
            .unwrap();
        deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|variable| {
                variable["name"] == "INTERNAL_TOKEN"
                    && variable["valueFrom"]["secretKeyRef"]["name"] == "good-morning-internal"
            })
    };
    assert!(reads_it("order") && reads_it("payment"));
    assert!(!reads_it("gateway") && !reads_it("kitchen"));
    let rendered = crate::render(PRODUCTION).unwrap();
    assert!(!rendered.contains(&token), "render never shows it");
}

#[tokio::test]
async fn with_nothing_to_change_no_apply_is_sent_and_a_field_someone_else_took_is_taken_back() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    harness.reconcile("good-morning").await.0.unwrap();
    let patches = applies(&harness.reconcile_seeing_all("good-morning").await);
    assert!(patches.is_empty(), "{patches:?}");
    // kubectl edit: the image becomes another manager's field with another value.
    harness.fake.update_as(
        "kubectl-edit",
        DEPLOYMENTS,
        "good-morning-kitchen",
        |deployment| {
            deployment["spec"]["template"]["spec"]["containers"][0]["image"] =
                json!("evil/image:latest");
        },
    );
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    assert_eq!(
        summaries(&writes),
        ["PATCH deployments/good-morning-kitchen", "POST events"]
    );
    assert_eq!(
        harness
            .fake
            .get(DEPLOYMENTS, "good-morning-kitchen")
            .unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/food-delivery-operator/food-delivery:0.1.0"
    );
}

#[tokio::test]
async fn a_hand_reordering_of_the_environment_is_put_back_and_server_defaults_inside_containers_are_no_change()
 {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    // A real server adds defaults inside containers that nobody applied: they are no reason to apply again.
    harness
        .fake
        .edit(DEPLOYMENTS, "good-morning-order", |deployment| {
            deployment["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
                json!("/dev/termination-log");
        });
    let patches = applies(&harness.reconcile_seeing_all("good-morning").await);
    assert!(patches.is_empty(), "{patches:?}");
    // POD_NAME must come before LOG_FILE, which refers to it: a reordering is a change.
    harness
        .fake
        .edit(DEPLOYMENTS, "good-morning-order", |deployment| {
            deployment["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array_mut()
                .unwrap()
                .reverse();
        });
    harness.reconcile("good-morning").await.0.unwrap();
    let env = harness.fake.get(DEPLOYMENTS, "good-morning-order").unwrap()["spec"]["template"]["spec"]["containers"]
        [0]["env"]
        .clone();
    assert_eq!(env[0]["name"], "POD_NAME", "{env}");
}

#[tokio::test]
async fn a_recreated_credential_rolls_both_of_its_readers_and_an_unusable_one_stalls() {
    let harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    let version = |component: &str| {
        harness.fake.get(DEPLOYMENTS, &format!("good-morning-{component}")).unwrap()["spec"]["template"]["metadata"]
            ["annotations"]["fooddelivery.dev/credential-version"]
            .clone()
    };
    let first = version("order");
    assert!(first.is_string());
    assert_eq!(version("payment"), first);
    assert!(version("kitchen").is_null(), "only its readers carry it");
    harness.fake.delete(SECRETS, "good-morning-internal");
    harness.reconcile("good-morning").await.0.unwrap();
    assert_ne!(version("order"), first, "a new credential rolls order...");
    assert_eq!(
        version("payment"),
        version("order"),
        "...and payment together"
    );

    harness.fake.delete(SECRETS, "good-morning-internal");
    harness.fake.insert(
        SECRETS,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "good-morning-internal", "uid": "someone-elses"},
               "data": {"password": "eA=="}}),
    );
    harness.reconcile("good-morning").await.0.unwrap();
    let (stalled, reason) = harness.condition("good-morning", "Stalled");
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "SecretMissing")
    );
}

#[tokio::test]
async fn with_watch_caches_a_steady_reconcile_reads_nothing_but_the_secrets_it_refers_to() {
    let mut harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    harness.roll_out(true);
    harness.reconcile("good-morning").await.0.unwrap();
    harness.cache_now().await;
    let seen: Vec<String> = harness
        .reconcile_seeing_all("good-morning")
        .await
        .iter()
        .map(Seen::short)
        .collect();
    assert_eq!(
        seen,
        ["GET secrets/food-db", "GET secrets/good-morning-internal"],
        "no LIST, no GET of a child, no write"
    );
}

/// The caches are taken once and never follow: every reconcile after the first below sees children older than
/// the server's. What it writes and reports must still be what the server did.
#[tokio::test]
async fn a_lagging_cache_reports_no_change_the_server_did_not_make_and_prunes_what_is_gone_quietly()
{
    let mut harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    harness.roll_out(true);
    harness.reconcile("good-morning").await.0.unwrap();
    harness.cache_now().await;
    harness.fake.edit(APPS, "good-morning", |app| {
        app["spec"]["config"]["GREETING"] = json!("hello");
        app["spec"]["components"]["stamp"] = json!({"enabled": false});
        app["metadata"]["generation"] = json!(2);
    });
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    let writes = summaries(&writes);
    assert!(
        writes.contains(&"PATCH deployments/good-morning-order".to_owned())
            && writes.contains(&"DELETE deployments/good-morning-stamp".to_owned()),
        "{writes:#?}"
    );
    let events_before = event_reasons(&harness);
    assert!(
        events_before.contains(&"Updated".to_owned()),
        "{events_before:?}"
    );
    // The cache still holds the old Deployments, the old ConfigMaps and stamp's objects.
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    assert!(
        writes.is_empty(),
        "the server already holds all of it: {:?}",
        summaries(&writes)
    );
    assert_eq!(
        event_reasons(&harness),
        events_before,
        "no Updated, Healed, Created or Pruned for what the previous reconcile did"
    );
}

/// The cache was taken while kitchen was autoscaled. Autoscaling is turned off (the operator takes the count back)
/// and on again before the cache sees the first change: the count must still be handed over, not dropped.
#[tokio::test]
async fn a_cache_that_missed_the_operator_taking_the_count_back_does_not_drop_the_pods() {
    let mut harness = Harness::start();
    harness.create(PRODUCTION, |app| {
        app["spec"]["defaults"]
            .as_object_mut()
            .unwrap()
            .remove("autoscaling");
        app["spec"]["components"]["kitchen"] =
            json!({"autoscaling": {"minReplicas": 2, "maxReplicas": 6}});
    });
    harness.reconcile("good-morning").await.0.unwrap();
    harness.cache_now().await;
    harness.fake.edit(APPS, "good-morning", |app| {
        app["spec"]["components"]["kitchen"] = json!({"replicas": 4});
        app["metadata"]["generation"] = json!(2);
    });
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(replicas_of(&harness, "good-morning-kitchen"), 4);
    harness.fake.edit(APPS, "good-morning", |app| {
        // Something else changes with it, so the cached Deployment is not what the operator would send.
        app["spec"]["components"]["kitchen"] = json!({
            "autoscaling": {"minReplicas": 2, "maxReplicas": 6},
            "config": {"KITCHEN_COOK_TIME_MS": "1500"},
        });
        app["metadata"]["generation"] = json!(3);
    });
    harness.reconcile("good-morning").await.0.unwrap();
    assert_eq!(
        replicas_of(&harness, "good-morning-kitchen"),
        4,
        "handed to the autoscaler at the running count"
    );
}

/// A lagging cache still holds stamp's Service, which someone took over meanwhile (they removed the operator's
/// mark to keep it): disabling stamp must not delete it.
#[tokio::test]
async fn a_prune_from_a_lagging_cache_deletes_only_the_object_it_found() {
    let mut harness = Harness::start();
    harness.create(PRODUCTION, |_| {});
    harness.reconcile("good-morning").await.0.unwrap();
    harness.cache_now().await;
    harness
        .fake
        .edit(SERVICES, "good-morning-stamp", |service| {
            service["metadata"]["labels"]
                .as_object_mut()
                .unwrap()
                .remove("app.kubernetes.io/managed-by");
        });
    harness.fake.edit(APPS, "good-morning", |app| {
        app["spec"]["components"]["stamp"] = json!({"enabled": false});
        app["metadata"]["generation"] = json!(2);
    });
    let (result, writes) = harness.reconcile("good-morning").await;
    result.unwrap();
    let writes = summaries(&writes);
    assert!(
        writes.contains(&"DELETE deployments/good-morning-stamp".to_owned()),
        "{writes:#?}"
    );
    assert!(
        harness.fake.get(SERVICES, "good-morning-stamp").is_some(),
        "the Service someone took over stays"
    );
}
