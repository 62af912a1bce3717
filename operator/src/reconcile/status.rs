//! The app's status from its children's real state, kstatus style. Pure: the reconcile passes in what it read
//! and the current time.
//!
//! - Ready: every enabled component's Deployment has observed its latest generation and has all its replicas
//!   updated and available.
//! - Reconciling: a rollout is in progress (or the spec changed and the children have not caught up).
//! - Stalled: it cannot progress without a change from someone: invalid spec, missing Secret, or a rollout past
//!   its progress deadline.

use crate::resource::{ComponentStatus, FoodDeliveryAppStatus};
use food_delivery_contract::Component;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::collections::BTreeMap;
use std::time::Duration;

pub use food_delivery_contract::conditions::{READY, RECONCILING, Reason, STALLED};

/// The Deployment controller's condition type that reports a passed progress deadline (Kubernetes' word, not ours).
const DEPLOYMENT_PROGRESSING: &str = "Progressing";

/// A Secret appearing does not trigger the app's watch: while one is missing, the app is looked at again this often.
pub const SECRET_RECHECK: Duration = Duration::from_secs(30);

/// When to look at an app again without a change to trigger it, after a reconcile that wrote `status` (`refused`:
/// the server refused a child for good): rarely once it is ready (the watches report changes), soon while a
/// rollout is under way, in between while a refusal waits for someone to change the spec or the cluster's policy.
pub fn next_look(status: &FoodDeliveryAppStatus, refused: bool) -> Duration {
    let ready = status
        .conditions
        .iter()
        .any(|condition| condition.type_ == READY && condition.status == "True");
    if ready {
        Duration::from_secs(300)
    } else if refused {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(10)
    }
}

/// Whether `stall` is not what the previous status already said (so it deserves a new Warning Event).
pub fn stall_is_new(previous: Option<&FoodDeliveryAppStatus>, stall: &Stall) -> bool {
    !previous.is_some_and(|status| {
        status.conditions.iter().any(|condition| {
            condition.type_ == STALLED
                && condition.status == "True"
                && condition.reason == stall.reason.as_str()
                && condition.message == stall.message
        })
    })
}

/// Why the app cannot progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// Why.
    pub reason: Reason,
    /// What to fix.
    pub message: String,
}

/// How one component's Deployment stands.
fn component_status(deployment: &Deployment) -> (ComponentStatus, bool, Option<String>) {
    // The fingerprint the pods run with is the one in the template the Deployment holds.
    let config_hash = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.metadata.as_ref())
        .and_then(|metadata| metadata.annotations.as_ref())
        .and_then(|annotations| annotations.get(crate::build::deployment::CONFIG_HASH_ANNOTATION))
        .cloned();
    let generation = deployment.metadata.generation.unwrap_or(0);
    let spec_replicas = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let desired = status.replicas.unwrap_or(spec_replicas).max(spec_replicas);
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0) >= generation;
    let rolled_out = observed
        && updated >= spec_replicas
        && available >= spec_replicas
        && status.replicas.unwrap_or(0) == updated;
    let deadline = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|condition| {
            condition.type_ == DEPLOYMENT_PROGRESSING
                && condition.status == "False"
                && condition.reason.as_deref() == Some(Reason::ProgressDeadlineExceeded.as_str())
        })
        .map(|condition| condition.message.unwrap_or_default());
    (
        ComponentStatus {
            desired,
            ready,
            updated,
            available: rolled_out,
            config_hash,
        },
        rolled_out,
        deadline,
    )
}

fn condition(
    type_: &str,
    status: bool,
    reason: Reason,
    message: String,
    generation: i64,
    now: &Time,
    previous: &[Condition],
) -> Condition {
    let status = if status { "True" } else { "False" };
    // The transition time moves only when the status does: a reconcile that changes nothing writes nothing.
    let last_transition_time = previous
        .iter()
        .find(|old| old.type_ == type_ && old.status == status)
        .map(|old| old.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.as_str().to_owned(),
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}

/// The status for generation `generation` given each enabled component's Deployment as read (None: not there
/// yet), or the reason it is stalled before any child could be applied.
pub fn compute(
    generation: i64,
    components: &[(Component, Option<Deployment>)],
    stall: Option<&Stall>,
    previous: Option<&FoodDeliveryAppStatus>,
    now: &Time,
) -> FoodDeliveryAppStatus {
    let previous_conditions = previous
        .map(|status| status.conditions.as_slice())
        .unwrap_or(&[]);
    let mut figures = BTreeMap::new();
    let mut waiting = Vec::new();
    let mut deadlines = Vec::new();
    for (component, deployment) in components {
        let name = component.name();
        match deployment {
            Some(deployment) => {
                let (status, rolled_out, deadline) = component_status(deployment);
                if !rolled_out {
                    waiting.push(name);
                }
                if let Some(message) = deadline {
                    deadlines.push(format!("{name}: {message}"));
                }
                figures.insert(name.to_owned(), status);
            }
            None => waiting.push(name),
        }
    }
    let ready_count = components.len() - waiting.len();
    let stall = stall.cloned().or_else(|| {
        (!deadlines.is_empty()).then(|| Stall {
            reason: Reason::ProgressDeadlineExceeded,
            message: deadlines.join("; "),
        })
    });
    let ready = stall.is_none() && waiting.is_empty();
    let reconciling = stall.is_none() && !waiting.is_empty();
    let conditions = vec![
        condition(
            READY,
            ready,
            if ready {
                Reason::AllComponentsAvailable
            } else if stall.is_some() {
                Reason::Stalled
            } else {
                Reason::RollingOut
            },
            if ready {
                format!("{ready_count} components available")
            } else if let Some(stall) = &stall {
                stall.message.clone()
            } else {
                format!("waiting for {}", waiting.join(", "))
            },
            generation,
            now,
            previous_conditions,
        ),
        condition(
            RECONCILING,
            reconciling,
            if reconciling {
                Reason::RollingOut
            } else {
                Reason::Idle
            },
            if reconciling {
                format!("rolling out {}", waiting.join(", "))
            } else {
                String::new()
            },
            generation,
            now,
            previous_conditions,
        ),
        condition(
            STALLED,
            stall.is_some(),
            stall
                .as_ref()
                .map_or(Reason::Progressing, |stall| stall.reason),
            stall
                .as_ref()
                .map(|stall| stall.message.clone())
                .unwrap_or_default(),
            generation,
            now,
            previous_conditions,
        ),
    ];
    FoodDeliveryAppStatus {
        observed_generation: Some(generation),
        conditions,
        components: figures,
        ready_components: Some(format!("{ready_count}/{}", components.len())),
    }
}

/// The status of a paused app: not ready, not reconciling, not stalled (a person chose this), with the reason.
pub fn paused(
    generation: i64,
    previous: Option<&FoodDeliveryAppStatus>,
    now: &Time,
) -> FoodDeliveryAppStatus {
    let previous_conditions = previous
        .map(|status| status.conditions.as_slice())
        .unwrap_or(&[]);
    let message = "spec.paused is true: the operator changes nothing until it is false".to_owned();
    FoodDeliveryAppStatus {
        observed_generation: Some(generation),
        conditions: vec![
            condition(
                READY,
                false,
                Reason::Paused,
                message.clone(),
                generation,
                now,
                previous_conditions,
            ),
            condition(
                RECONCILING,
                false,
                Reason::Paused,
                message,
                generation,
                now,
                previous_conditions,
            ),
            condition(
                STALLED,
                false,
                Reason::Paused,
                String::new(),
                generation,
                now,
                previous_conditions,
            ),
        ],
        components: previous
            .map(|status| status.components.clone())
            .unwrap_or_default(),
        ready_components: previous.and_then(|status| status.ready_components.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn the_users_guide_names_every_condition_and_reason_the_operator_writes() {
        let guide = include_str!("../../../docs/crd.md");
        for written in [READY, RECONCILING, STALLED]
            .into_iter()
            .chain(Reason::ALL.map(Reason::as_str))
        {
            assert!(
                guide.contains(&format!("`{written}`")),
                "docs/crd.md does not name `{written}`"
            );
        }
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn deployment(
        generation: i64,
        observed: i64,
        replicas: i32,
        updated: i32,
        available: i32,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(observed),
                replicas: Some(replicas),
                updated_replicas: Some(updated),
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..DeploymentStatus::default()
            }),
        }
    }

    fn state(status: &FoodDeliveryAppStatus, type_: &str) -> String {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
            .status
            .clone()
    }

    #[test]
    fn progressing_then_available_then_past_the_deadline() {
        let rolling = vec![
            (Component::Order, Some(deployment(2, 2, 2, 1, 1))),
            (Component::Payment, Some(deployment(1, 1, 1, 1, 1))),
        ];
        let status = compute(3, &rolling, None, None, &now());
        assert_eq!(state(&status, READY), "False");
        assert_eq!(state(&status, RECONCILING), "True");
        assert_eq!(state(&status, STALLED), "False");
        assert_eq!(status.ready_components.as_deref(), Some("1/2"));
        assert_eq!(status.observed_generation, Some(3));

        let done = vec![
            (Component::Order, Some(deployment(2, 2, 2, 2, 2))),
            (Component::Payment, Some(deployment(1, 1, 1, 1, 1))),
        ];
        let ready = compute(3, &done, None, Some(&status), &now());
        assert_eq!(state(&ready, READY), "True");
        assert_eq!(state(&ready, RECONCILING), "False");
        assert_eq!(ready.ready_components.as_deref(), Some("2/2"));
        let again = compute(
            3,
            &done,
            None,
            Some(&ready),
            &Time(k8s_openapi::jiff::Timestamp::from_second(1_900_000_000).unwrap()),
        );
        assert_eq!(again, ready, "nothing changed, nothing to write");

        let mut stuck = deployment(2, 2, 2, 1, 1);
        stuck.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "False".into(),
            reason: Some("ProgressDeadlineExceeded".into()),
            message: Some("ReplicaSet has timed out progressing".into()),
            ..DeploymentCondition::default()
        }]);
        let stalled = compute(3, &[(Component::Order, Some(stuck))], None, None, &now());
        assert_eq!(state(&stalled, STALLED), "True");
        assert_eq!(state(&stalled, READY), "False");
        assert!(
            stalled.conditions[2]
                .message
                .contains("order: ReplicaSet has timed out")
        );
    }

    #[test]
    fn a_stale_observed_generation_is_not_ready() {
        let status = compute(
            1,
            &[(Component::Order, Some(deployment(3, 2, 1, 1, 1)))],
            None,
            None,
            &now(),
        );
        assert_eq!(state(&status, READY), "False");
        let missing = compute(1, &[(Component::Order, None)], None, None, &now());
        assert_eq!(state(&missing, RECONCILING), "True");
    }

    #[test]
    fn a_stall_reason_wins() {
        let stall = Stall {
            reason: Reason::SecretMissing,
            message: "secret db not found".into(),
        };
        let status = compute(1, &[], Some(&stall), None, &now());
        assert_eq!(state(&status, STALLED), "True");
        assert_eq!(status.conditions[2].reason, "SecretMissing");
        assert_eq!(state(&status, READY), "False");
    }
}
