//! The controller's reconcile: dereference -> validate -> build -> apply -> prune -> status. Everything here is
//! I/O; every decision is made by `validate`, `build` and `status`.

pub mod apply;
pub mod children;
pub mod field_set;
pub mod notes;
pub mod replicas;
pub mod status;

#[cfg(any(test, feature = "fake-api"))]
pub mod fake_api;
#[cfg(test)]
mod tests;

use crate::build::metadata::MANAGER;
use crate::build::{self, ChildObjects, plan};
use crate::resource::{FoodDeliveryApp, FoodDeliveryAppStatus};
use crate::validate;
use apply::{Applied, Child, apply, prune};
use children::{ChildCaches, Children, Current};
use food_delivery_contract::Component;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use notes::Changes;
use status::{Reason, Stall};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Objects created or updated by reconciles.
pub const OBJECTS_APPLIED: &str = "operator_objects_applied_total";
/// Objects deleted by pruning.
pub const OBJECTS_PRUNED: &str = "operator_objects_pruned_total";

/// What the reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Where Events go.
    pub recorder: Recorder,
    /// The clock, for condition transition times (tests pin it).
    pub now: fn() -> Time,
    /// The controller's watch caches of the children (empty: every kind is listed).
    pub caches: ChildCaches,
}

/// Why a reconcile failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Applying one child failed in a way that may pass on a later attempt (refusals for good are reported as
    /// Stalled instead).
    #[error("applying {object}: {source}")]
    Apply {
        /// `Kind name` of the child.
        object: String,
        /// What the API answered.
        source: kube::Error,
    },
    /// Listing the app's children of one kind failed.
    #[error("listing the app's {kind} objects: {source}")]
    List {
        /// The kind.
        kind: String,
        /// What the API answered.
        source: kube::Error,
    },
    /// Deleting a child the spec no longer asks for failed.
    #[error("pruning {object}: {source}")]
    Prune {
        /// `Kind name` of the child.
        object: String,
        /// What the API answered.
        source: kube::Error,
    },
    /// Reading a Secret the app refers to (or its internal credential) failed.
    #[error("reading Secret {name}: {source}")]
    ReadSecret {
        /// The Secret.
        name: String,
        /// What the API answered.
        source: kube::Error,
    },
    /// Writing the app's status failed.
    #[error("writing the status of FoodDeliveryApp {name}: {source}")]
    WriteStatus {
        /// The app.
        name: String,
        /// What the API answered.
        source: kube::Error,
    },
    /// The app has no namespace (cannot happen for a namespaced kind served by the API).
    #[error("the FoodDeliveryApp has no namespace")]
    NoNamespace,
}

impl ReconcileError {
    /// The label of the error in metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Apply { .. } => "apply",
            Self::List { .. } => "list",
            Self::Prune { .. } => "prune",
            Self::ReadSecret { .. } => "read_secret",
            Self::WriteStatus { .. } => "write_status",
            Self::NoNamespace => "no_namespace",
        }
    }
}

/// The server's message when it refused a request for good: invalid (422), malformed (400), forbidden by RBAC or
/// an admission webhook (403), not allowed (405). The same request would be refused again, so it is reported as
/// Stalled rather than retried; conflicts, throttling, server errors and broken connections are retried.
pub fn refused_for_good(error: &kube::Error) -> Option<String> {
    match error {
        kube::Error::Api(status) if matches!(status.code, 400 | 403 | 405 | 422) => {
            Some(status.message.clone())
        }
        _ => None,
    }
}

/// The wall clock.
pub fn wall_clock() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Publishes an Event about the object `reference` points at. An Event that cannot be written must not fail the
/// reconcile: it is a report, not the work.
pub async fn publish_about(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: Reason,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.as_str().to_owned(),
        note: Some(notes::bounded(note)),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(%error, reason = reason.as_str(), "cannot publish event");
    }
}

async fn publish(
    ctx: &Context,
    app: &FoodDeliveryApp,
    type_: EventType,
    reason: Reason,
    note: String,
) {
    publish_about(ctx, &app.object_ref(&()), type_, reason, note).await;
}

/// The server-side apply of a status: the same field manager as the children, only the status subresource.
fn status_patch(status: &FoodDeliveryAppStatus) -> (PatchParams, serde_json::Value) {
    (
        PatchParams::apply(MANAGER).force(),
        serde_json::json!({
            "apiVersion": "fooddelivery.dev/v1alpha1",
            "kind": "FoodDeliveryApp",
            "status": status,
        }),
    )
}

async fn write_status(
    ctx: &Context,
    app: &FoodDeliveryApp,
    namespace: &str,
    status: FoodDeliveryAppStatus,
) -> Result<(), ReconcileError> {
    if app.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<FoodDeliveryApp> = Api::namespaced(ctx.client.clone(), namespace);
    let (params, patch) = status_patch(&status);
    api.patch_status(&app.name_any(), &params, &Patch::Apply(&patch))
        .await
        .map_err(|source| ReconcileError::WriteStatus {
            name: app.name_any(),
            source,
        })?;
    Ok(())
}

/// Creates the app's internal credential (see `build::credential`) if it does not exist yet, and returns its
/// Secret's uid (a re-created Secret has a new one, which rolls the pods that read it), or what is wrong with a
/// Secret of that name that the operator cannot use. It is created once and never rewritten: applying it on every
/// reconcile would rotate it under running pods. Its value is never logged or reported.
async fn ensure_credential(
    client: &Client,
    namespace: &str,
    app: &FoodDeliveryApp,
) -> Result<Result<String, String>, ReconcileError> {
    let identity = build::metadata::AppIdentity::of(app);
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = build::credential::secret_name(&identity);
    let usable = |secret: &Secret| {
        let has_token = secret
            .data
            .as_ref()
            .is_some_and(|data| data.contains_key(build::credential::TOKEN_KEY))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|data| data.contains_key(build::credential::TOKEN_KEY));
        match (has_token, secret.metadata.uid.clone()) {
            (true, Some(uid)) => Ok(uid),
            _ => Err(format!(
                "Secret {name} exists without the key {}: delete it and the operator creates the app's credential",
                build::credential::TOKEN_KEY
            )),
        }
    };
    let read_secret = |source| ReconcileError::ReadSecret {
        name: name.clone(),
        source,
    };
    if let Some(existing) = api.get_opt(&name).await.map_err(read_secret)? {
        return Ok(usable(&existing));
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let secret = build::credential::build_credential_secret(&identity, token);
    match api.create(&kube::api::PostParams::default(), &secret).await {
        Ok(created) => Ok(usable(&created)),
        // Another reconcile created it first: theirs is the one.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(api
            .get_opt(&name)
            .await
            .map_err(read_secret)?
            .as_ref()
            .map_or_else(|| Err(format!("Secret {name} vanished")), usable)),
        Err(source) => Err(ReconcileError::Apply {
            object: format!("Secret {name}"),
            source,
        }),
    }
}

/// The Secrets the spec refers to that are missing (or lack the key), as a message.
async fn missing_secrets(
    client: &Client,
    namespace: &str,
    plans: &[plan::ComponentPlan],
) -> Result<Option<String>, ReconcileError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut missing = Vec::new();
    let mut seen = BTreeSet::new();
    for component in plans {
        if let plan::Storage::Postgres(reference) = &component.storage {
            if !seen.insert((reference.name.clone(), reference.key.clone())) {
                continue;
            }
            let found = api.get_opt(&reference.name).await.map_err(|source| {
                ReconcileError::ReadSecret {
                    name: reference.name.clone(),
                    source,
                }
            })?;
            match found {
                None => missing.push(format!("Secret {} not found", reference.name)),
                Some(secret) => {
                    let has_key = secret
                        .data
                        .as_ref()
                        .is_some_and(|data| data.contains_key(&reference.key))
                        || secret
                            .string_data
                            .as_ref()
                            .is_some_and(|data| data.contains_key(&reference.key));
                    if !has_key {
                        missing.push(format!(
                            "Secret {} has no key {}",
                            reference.name, reference.key
                        ));
                    }
                }
            }
        }
    }
    Ok((!missing.is_empty()).then(|| missing.join("; ")))
}

async fn stalled(
    ctx: &Context,
    app: &FoodDeliveryApp,
    namespace: &str,
    stall: Stall,
) -> Result<(), ReconcileError> {
    publish(
        ctx,
        app,
        EventType::Warning,
        stall.reason,
        stall.message.clone(),
    )
    .await;
    let status = status::compute(
        app.metadata.generation.unwrap_or(0),
        &[],
        Some(&stall),
        app.status.as_ref(),
        &(ctx.now)(),
    );
    write_status(ctx, app, namespace, status).await
}

/// The children of one kind found before this reconcile's applies, for judging them and pruning.
async fn found<K: Child>(
    ctx: &Context,
    namespace: &str,
    app: &str,
) -> Result<Children<K>, ReconcileError> {
    Children::of(&ctx.client, &ctx.caches, namespace, app)
        .await
        .map_err(|source| ReconcileError::List {
            kind: K::kind(&()).into_owned(),
            source,
        })
}

/// Applies `objects` (their kind found in `found` before); returns the objects the server now holds.
async fn apply_found<K: Child>(
    ctx: &Context,
    namespace: &str,
    found: &Children<K>,
    objects: &[K],
    changes: &mut Changes,
) -> Result<Vec<K>, ReconcileError> {
    let mut live = Vec::with_capacity(objects.len());
    for object in objects {
        let name = object.name_any();
        let label = format!("{} {name}", K::kind(&()));
        let attempt = async {
            let current = found
                .current(&ctx.client, namespace, &name, |found| {
                    apply::holds(found, object)
                })
                .await?;
            match current {
                Current::Settled(cached) => Ok((Applied::Unchanged, cached)),
                Current::Live(before) => {
                    apply(&ctx.client, namespace, object, before.as_ref()).await
                }
            }
        };
        let (outcome, applied) = match attempt.await {
            Ok(applied) => applied,
            Err(source) => match refused_for_good(&source) {
                // The other children still get applied: one refused object must not hold the app back.
                Some(message) => {
                    changes.refused.push(format!("{label}: {message}"));
                    continue;
                }
                None => {
                    return Err(ReconcileError::Apply {
                        object: label,
                        source,
                    });
                }
            },
        };
        match outcome {
            Applied::Created => changes.created.push(label),
            Applied::Updated => changes.updated.push(label),
            Applied::Unchanged => {}
        }
        live.push(applied);
    }
    Ok(live)
}

/// Finds the app's objects of one kind and applies `objects`.
async fn apply_all<K: Child>(
    ctx: &Context,
    namespace: &str,
    app: &str,
    objects: &[K],
    changes: &mut Changes,
) -> Result<(Children<K>, Vec<K>), ReconcileError> {
    let found = found(ctx, namespace, app).await?;
    let live = apply_found(ctx, namespace, &found, objects, changes).await?;
    Ok((found, live))
}

/// Applies the Deployments, `spec.replicas` of the autoscaled ones (`autoscaled`: name -> the HPA's minimum)
/// handed to the HPA without a drop to one pod (see `replicas`).
async fn apply_deployments(
    ctx: &Context,
    namespace: &str,
    app: &str,
    deployments: &[Deployment],
    autoscaled: &BTreeMap<String, i32>,
    changes: &mut Changes,
) -> Result<(Children<Deployment>, Vec<Deployment>), ReconcileError> {
    let found = found::<Deployment>(ctx, namespace, app).await?;
    let client = &ctx.client;
    for (name, minimum) in autoscaled {
        let wanted = deployments.iter().find(|wanted| wanted.name_any() == *name);
        // Trusted from the cache only when the operator's apply is skipped too: a cache that missed the operator
        // taking the count back (autoscaling turned off and on again) would otherwise let the apply drop it.
        let settled = |deployment: &Deployment| {
            wanted.is_some_and(|wanted| apply::holds(deployment, wanted))
                && replicas::hand_over_before_apply(Some(deployment), *minimum).is_none()
        };
        let current = found
            .current(client, namespace, name, settled)
            .await
            .map_err(|source| ReconcileError::Apply {
                object: format!("Deployment {name} (replicas for the autoscaler)"),
                source,
            })?;
        if let Current::Live(live) = current
            && let Some(count) = replicas::hand_over_before_apply(live.as_ref(), *minimum)
        {
            hand_over_replicas(client, namespace, name, count).await?;
        }
    }
    let mut live = apply_found(ctx, namespace, &found, deployments, changes).await?;
    for deployment in &mut live {
        let name = deployment.name_any();
        let count = autoscaled
            .get(&name)
            .and_then(|minimum| replicas::set_after_apply(deployment, *minimum));
        if let Some(count) = count
            && let Some(updated) = hand_over_replicas(client, namespace, &name, count).await?
        {
            *deployment = updated;
        }
    }
    Ok((found, live))
}

/// The handover manager's apply of `count`; `None` when the server refused it because someone else set
/// another count in the meantime (theirs stays) or the Deployment is gone (the next reconcile sees it).
async fn hand_over_replicas(
    client: &Client,
    namespace: &str,
    name: &str,
    count: i32,
) -> Result<Option<Deployment>, ReconcileError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let outcome = api
        .patch(
            name,
            &PatchParams::apply(replicas::HANDOVER_MANAGER),
            &Patch::Apply(&replicas::handover(name, count)),
        )
        .await;
    match outcome {
        Ok(deployment) => Ok(Some(deployment)),
        Err(kube::Error::Api(status)) if matches!(status.code, 409 | 404 | 422) => {
            tracing::info!(deployment = name, reason = %status.message, "replicas left as they are");
            Ok(None)
        }
        Err(source) => Err(ReconcileError::Apply {
            object: format!("Deployment {name} (replicas for the autoscaler)"),
            source,
        }),
    }
}

async fn prune_all<K: Child>(
    client: &Client,
    namespace: &str,
    found: Children<K>,
    keep: &[K],
    changes: &mut Changes,
) -> Result<(), ReconcileError> {
    let keep: BTreeSet<String> = keep.iter().map(ResourceExt::name_any).collect();
    prune_except(client, namespace, found, &keep, changes).await
}

async fn prune_except<K: Child>(
    client: &Client,
    namespace: &str,
    found: Children<K>,
    keep: &BTreeSet<String>,
    changes: &mut Changes,
) -> Result<(), ReconcileError> {
    for object in found.objects {
        let name = object.name_any();
        // Being deleted already (a claim held by its protection finalizer, say): asking again would report it again.
        if keep.contains(&name) || object.meta().deletion_timestamp.is_some() {
            continue;
        }
        let label = format!("{} {name}", K::kind(&()));
        let deleted = prune::<K>(client, namespace, &object)
            .await
            .map_err(|source| ReconcileError::Prune {
                object: label.clone(),
                source,
            })?;
        if deleted {
            changes.pruned.push(label);
        }
    }
    Ok(())
}

/// Applies every child in dependency order (ConfigMaps before the Deployments that read them), prunes what the
/// spec no longer has, and returns the live Deployments.
async fn converge(
    ctx: &Context,
    namespace: &str,
    app: &str,
    objects: ChildObjects,
    autoscaled: &BTreeMap<String, i32>,
    prune_volumes: bool,
    changes: &mut Changes,
) -> Result<Vec<Deployment>, ReconcileError> {
    let ChildObjects {
        service_account,
        config_maps,
        volume_claims,
        services,
        deployments,
        autoscalers,
        disruption_budgets,
        network_policies,
        ingresses,
    } = objects;
    let ns = namespace;
    apply_all(ctx, ns, app, &[service_account], changes).await?;
    let (found_config_maps, _) = apply_all(ctx, ns, app, &config_maps, changes).await?;
    let (found_claims, _) = apply_all(ctx, ns, app, &volume_claims, changes).await?;
    let (found_services, _) = apply_all(ctx, ns, app, &services, changes).await?;
    let (found_deployments, live) =
        apply_deployments(ctx, ns, app, &deployments, autoscaled, changes).await?;
    let (found_autoscalers, _) = apply_all(ctx, ns, app, &autoscalers, changes).await?;
    let (found_budgets, _) = apply_all(ctx, ns, app, &disruption_budgets, changes).await?;
    let (found_policies, _) = apply_all(ctx, ns, app, &network_policies, changes).await?;
    let (found_ingresses, _) = apply_all(ctx, ns, app, &ingresses, changes).await?;
    let client = &ctx.client;
    // Consumers of an object go before it: the Ingress before the Service, the Deployment before its ConfigMap.
    prune_all(client, ns, found_ingresses, &ingresses, changes).await?;
    prune_all(client, ns, found_policies, &network_policies, changes).await?;
    prune_all(client, ns, found_budgets, &disruption_budgets, changes).await?;
    prune_all(client, ns, found_autoscalers, &autoscalers, changes).await?;
    prune_all(client, ns, found_deployments, &deployments, changes).await?;
    prune_all(client, ns, found_services, &services, changes).await?;
    // Earlier revisions' ConfigMaps stay while their ReplicaSets may still run or be rolled back to.
    let kept = build::configmap::kept_config_maps(&found_config_maps.objects, &config_maps);
    prune_except(client, ns, found_config_maps, &kept, changes).await?;
    if prune_volumes {
        prune_all(client, ns, found_claims, &volume_claims, changes).await?;
    }
    Ok(live)
}

/// Reports an app whose stored form cannot be decoded (written under an older CRD, or edited around
/// validation): Stalled with the decoding error and a Warning, and nothing applied. Other apps go on.
pub async fn undecodable(
    ctx: &Context,
    object: &kube::api::DynamicObject,
    resource: &kube::api::ApiResource,
    problem: String,
) -> Result<(), ReconcileError> {
    let namespace = object.namespace().ok_or(ReconcileError::NoNamespace)?;
    let stall = Stall {
        reason: Reason::InvalidSpec,
        message: format!("cannot read the FoodDeliveryApp: {problem}"),
    };
    let previous: Option<FoodDeliveryAppStatus> = object
        .data
        .get("status")
        .and_then(|status| serde_json::from_value(status.clone()).ok());
    let status = status::compute(
        object.metadata.generation.unwrap_or(0),
        &[],
        Some(&stall),
        previous.as_ref(),
        &(ctx.now)(),
    );
    if previous.as_ref() == Some(&status) {
        return Ok(());
    }
    publish_about(
        ctx,
        &object.object_ref(resource),
        EventType::Warning,
        stall.reason,
        stall.message.clone(),
    )
    .await;
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, resource);
    let (params, patch) = status_patch(&status);
    api.patch_status(&object.name_any(), &params, &Patch::Apply(&patch))
        .await
        .map_err(|source| ReconcileError::WriteStatus {
            name: object.name_any(),
            source,
        })?;
    Ok(())
}

/// Brings the cluster to what `app` describes and reports how it stands.
pub async fn reconcile(
    app: Arc<FoodDeliveryApp>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = app.namespace().ok_or(ReconcileError::NoNamespace)?;
    let name = app.name_any();
    let generation = app.metadata.generation.unwrap_or(0);
    if app.spec.paused {
        let status = status::paused(generation, app.status.as_ref(), &(ctx.now)());
        write_status(&ctx, &app, &namespace, status).await?;
        return Ok(Action::await_change());
    }
    // Validate the spec the API server stored, as `render` does (CEL included: an old CRD may lack a rule).
    let manifest = serde_json::json!({
        "apiVersion": "fooddelivery.dev/v1alpha1",
        "kind": "FoodDeliveryApp",
        "metadata": {"name": name, "namespace": namespace},
        "spec": app.spec,
    });
    if let Err(invalid) = validate::validate_value(&manifest) {
        let stall = Stall {
            reason: Reason::InvalidSpec,
            message: invalid.to_string(),
        };
        stalled(&ctx, &app, &namespace, stall).await?;
        return Ok(Action::await_change());
    }
    let (mut plans, shortfalls) = plan::plan_with_shortfalls(&name, &app.spec);
    if let Some(message) = missing_secrets(&ctx.client, &namespace, &plans).await? {
        let stall = Stall {
            reason: Reason::SecretMissing,
            message,
        };
        stalled(&ctx, &app, &namespace, stall).await?;
        return Ok(Action::requeue(status::SECRET_RECHECK));
    }
    if plans.iter().any(build::credential::needs_credential) {
        match ensure_credential(&ctx.client, &namespace, &app).await? {
            Ok(version) => {
                for component in plans
                    .iter_mut()
                    .filter(|component| build::credential::needs_credential(component))
                {
                    component.credential_version = Some(version.clone());
                }
            }
            Err(message) => {
                let stall = Stall {
                    reason: Reason::SecretMissing,
                    message,
                };
                stalled(&ctx, &app, &namespace, stall).await?;
                return Ok(Action::requeue(status::SECRET_RECHECK));
            }
        }
    }
    let objects = build::build_planned(&app, &plans);
    let identity = build::metadata::AppIdentity::of(&app);
    let autoscaled: BTreeMap<String, i32> = plans
        .iter()
        .filter_map(|component| {
            let autoscaling = component.autoscaling?;
            Some((
                identity.object_name(component.component),
                autoscaling.min_replicas,
            ))
        })
        .collect();
    let mut changes = Changes::default();
    let live = converge(
        &ctx,
        &namespace,
        &name,
        objects,
        &autoscaled,
        plan::volumes_follow_app(&app.spec),
        &mut changes,
    )
    .await?;
    metrics::counter!(OBJECTS_APPLIED)
        .increment(u64::try_from(changes.created.len() + changes.updated.len()).unwrap_or(0));
    metrics::counter!(OBJECTS_PRUNED).increment(u64::try_from(changes.pruned.len()).unwrap_or(0));
    let spec_unchanged = app
        .status
        .as_ref()
        .and_then(|status| status.observed_generation)
        == Some(generation);
    let reports = notes::change_reports(&changes, spec_unchanged);
    // Once per spec change: the pools were sized down as far as they go and still do not fit the server.
    if !spec_unchanged && !shortfalls.is_empty() {
        publish(
            &ctx,
            &app,
            EventType::Warning,
            Reason::ConnectionBudget,
            shortfalls.join("; "),
        )
        .await;
    }
    for (reason, list) in reports {
        if !list.is_empty() {
            publish(
                &ctx,
                &app,
                EventType::Normal,
                reason,
                notes::objects_note(&list),
            )
            .await;
        }
    }
    let components: Vec<(Component, Option<Deployment>)> = plans
        .iter()
        .map(|component| {
            let deployment = live
                .iter()
                .find(|deployment| {
                    deployment.name_any() == identity.object_name(component.component)
                })
                .cloned();
            (component.component, deployment)
        })
        .collect();
    // What the server refused for good needs someone to change the spec (or the cluster's policy): Stalled, with
    // the server's words, while everything else was applied.
    let refusal = (!changes.refused.is_empty()).then(|| Stall {
        reason: Reason::ApplyRefused,
        message: notes::bounded(changes.refused.join("; ")),
    });
    let status = status::compute(
        generation,
        &components,
        refusal.as_ref(),
        app.status.as_ref(),
        &(ctx.now)(),
    );
    if let Some(refusal) = &refusal
        && status::stall_is_new(app.status.as_ref(), refusal)
    {
        publish(
            &ctx,
            &app,
            EventType::Warning,
            refusal.reason,
            refusal.message.clone(),
        )
        .await;
    }
    let next_look = status::next_look(&status, refusal.is_some());
    write_status(&ctx, &app, &namespace, status).await?;
    Ok(Action::requeue(next_look))
}
