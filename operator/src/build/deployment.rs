//! A Deployment per component: the zero-downtime, self-healing, restricted-security part of the checklist.
//!
//! - RollingUpdate with no pod missing (maxUnavailable 0, maxSurge 25% unless the spec says otherwise);
//!   Recreate for SQLite components, whose ReadWriteOnce volume one pod at a time can hold.
//! - No `replicas` when an HPA owns the count (two writers would fight over it).
//! - Startup, readiness and liveness probes on the service's health paths; liveness never checks dependencies.
//! - A native preStop sleep so endpoints stop routing before SIGTERM (distroless images have no sleep binary),
//!   and a grace period covering preStop, the service's own drain, in-flight requests, consumers and outbox.
//! - Pod Security "restricted", read-only root filesystem with /tmp as emptyDir, no service-account token.
//! - Spread over zones and nodes; the config fingerprint in the template so a config change rolls the pods.

use super::configmap::config_hash;
use super::metadata::AppIdentity;
use super::plan::{ComponentPlan, Storage};
use super::pvc::{data_claim_name, log_claim_name};
use super::quantity;
use crate::resource::{AccessMode, FoodDeliveryAppSpec, PullPolicy};
use food_delivery_contract::{self as contract, Component, env};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler,
    LocalObjectReference, ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodAffinity,
    PodAffinityTerm, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, SleepAction, TopologySpreadConstraint,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The annotation carrying the config fingerprint.
pub const CONFIG_HASH_ANNOTATION: &str = "fooddelivery.dev/config-hash";
/// The annotation carrying the internal credential's Secret uid (pods of the components that read it).
pub const CREDENTIAL_VERSION_ANNOTATION: &str = "fooddelivery.dev/credential-version";
/// The uid and gid the services run as (distroless "nonroot").
pub const RUN_AS: i64 = 65532;
/// Seconds the preStop hook waits for endpoints to stop routing here.
pub const PRE_STOP_SLEEP_SECONDS: i64 = 5;
/// Where SQLite files live in the container.
pub const DATA_PATH: &str = "/data";
/// Where the shared log volume is mounted.
pub const LOG_PATH: &str = "/var/log/food-delivery";

/// preStop, then the service's whole shutdown (drain delay, in-flight requests, consumers, outbox flush, each
/// bounded), plus a margin: the kubelet kills only after all of that had its chance.
pub fn termination_grace_seconds() -> i64 {
    PRE_STOP_SLEEP_SECONDS + contract::shutdown_worst_case_seconds() + 5
}

fn image_of(spec: &FoodDeliveryAppSpec) -> String {
    let image = &spec.image;
    match (&image.digest, &image.tag) {
        (Some(digest), _) => format!("{}@{digest}", image.repository),
        (None, Some(tag)) => format!("{}:{tag}", image.repository),
        (None, None) => image.repository.clone(),
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn env_value(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    }
}

fn environment(app: &AppIdentity, component: &ComponentPlan, logs: bool) -> Vec<EnvVar> {
    // The pod's name, for its log file. Not a static Kafka group member id: a new pod has a new name, and a static
    // member does not leave its group on shutdown, so every rollout left partitions with members that were gone
    // (docs/architecture.md, "Consumer groups and rollouts").
    let mut variables = vec![EnvVar {
        name: env::POD_NAME.to_owned(),
        value_from: Some(EnvVarSource {
            // The server defaults apiVersion inside this atomic struct; sending it keeps what is applied equal to
            // what is stored (API servers before 1.27 wrote the object again on every apply otherwise).
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: "metadata.name".to_owned(),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }];
    match &component.storage {
        Storage::Postgres(secret) => {
            variables.push(EnvVar {
                name: env::DATABASE_URL.to_owned(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: secret.name.clone(),
                        key: secret.key.clone(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            });
            // Its own schema, so components sharing one database (one Secret for the app) keep their tables,
            // migrations, outbox, inbox and relay lease apart.
            variables.push(env_value(
                env::DATABASE_SCHEMA,
                component.component.to_string(),
            ));
        }
        Storage::Sqlite { .. } => variables.push(env_value(
            env::DATABASE_URL,
            format!("sqlite://{DATA_PATH}/{}.db", component.component),
        )),
        Storage::None => {}
    }
    if super::credential::needs_credential(component) {
        variables.push(EnvVar {
            name: env::INTERNAL_TOKEN.to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: super::credential::secret_name(app),
                    key: super::credential::TOKEN_KEY.to_owned(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    if logs {
        variables.push(env_value(
            env::LOG_FILE,
            format!("{LOG_PATH}/$({}).log", env::POD_NAME),
        ));
    }
    variables
}

fn resources(component: &ComponentPlan) -> ResourceRequirements {
    let mut limits = BTreeMap::from([(
        "memory".to_owned(),
        quantity::canonical(&component.resources.memory_limit),
    )]);
    if let Some(cpu) = &component.resources.cpu_limit {
        limits.insert("cpu".to_owned(), quantity::canonical(cpu));
    }
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            (
                "cpu".to_owned(),
                quantity::canonical(&component.resources.cpu_request),
            ),
            (
                "memory".to_owned(),
                quantity::canonical(&component.resources.memory_request),
            ),
        ])),
        limits: Some(limits),
        ..ResourceRequirements::default()
    }
}

fn volumes(
    app: &AppIdentity,
    component: &ComponentPlan,
    logs: bool,
) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    }];
    let claim = |name: &str, claim_name: String| Volume {
        name: name.to_owned(),
        // No `readOnly: false`: the field is a plain bool in the API, so the server drops a false and the live
        // object would never match the built one.
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name,
            read_only: None,
        }),
        ..Volume::default()
    };
    if matches!(component.storage, Storage::Sqlite { .. }) {
        volumes.push(claim("data", data_claim_name(app, component.component)));
        mounts.push(VolumeMount {
            name: "data".to_owned(),
            mount_path: DATA_PATH.to_owned(),
            ..VolumeMount::default()
        });
    }
    if logs {
        volumes.push(claim("logs", log_claim_name(app)));
        mounts.push(VolumeMount {
            name: "logs".to_owned(),
            mount_path: LOG_PATH.to_owned(),
            ..VolumeMount::default()
        });
    }
    (volumes, mounts)
}

fn spread(app: &AppIdentity, component: Component) -> Vec<TopologySpreadConstraint> {
    ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(LabelSelector {
                match_labels: Some(app.selector(component)),
                ..LabelSelector::default()
            }),
            // Spread each rollout's pods on their own, not old and new together.
            match_label_keys: Some(vec!["pod-template-hash".to_owned()]),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

fn strategy(spec: &FoodDeliveryAppSpec, component: &ComponentPlan) -> DeploymentStrategy {
    if component.single_writer() {
        return DeploymentStrategy {
            type_: Some("Recreate".to_owned()),
            rolling_update: None,
        };
    }
    let rollout = spec.rollout.as_ref();
    let amount = |value: Option<&String>, default: &str| {
        let value = value.map(String::as_str).unwrap_or(default);
        match value.parse::<i32>() {
            Ok(number) => IntOrString::Int(number),
            Err(_) => IntOrString::String(value.to_owned()),
        }
    };
    DeploymentStrategy {
        type_: Some("RollingUpdate".to_owned()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(amount(rollout.and_then(|r| r.max_surge.as_ref()), "25%")),
            max_unavailable: Some(amount(
                rollout.and_then(|r| r.max_unavailable.as_ref()),
                "0",
            )),
        }),
    }
}

/// A shared log volume that only one node can mount (ReadWriteOnce) holds every pod of the app on the node that
/// has it: elsewhere the volume cannot attach and the pod never starts. The first pod goes anywhere.
fn next_to_the_log_volume(app: &AppIdentity, spec: &FoodDeliveryAppSpec) -> Option<Affinity> {
    let persistence = spec.logging.as_ref()?.persistence.as_ref()?;
    let access_mode = persistence.access_mode.unwrap_or(AccessMode::ReadWriteOnce);
    (access_mode == AccessMode::ReadWriteOnce).then(|| Affinity {
        pod_affinity: Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(app.app_selector()),
                    ..LabelSelector::default()
                }),
                topology_key: "kubernetes.io/hostname".to_owned(),
                ..PodAffinityTerm::default()
            }]),
            ..PodAffinity::default()
        }),
        ..Affinity::default()
    })
}

/// The component's Deployment.
pub fn build_deployment(
    app: &AppIdentity,
    spec: &FoodDeliveryAppSpec,
    component: &ComponentPlan,
) -> Deployment {
    let logs = spec
        .logging
        .as_ref()
        .is_some_and(|logging| logging.persistence.is_some());
    let (volumes, volume_mounts) = volumes(app, component, logs);
    let container = Container {
        name: component.component.name().to_owned(),
        image: Some(image_of(spec)),
        image_pull_policy: spec.image.pull_policy.map(|policy| {
            match policy {
                PullPolicy::Always => "Always",
                PullPolicy::IfNotPresent => "IfNotPresent",
                PullPolicy::Never => "Never",
            }
            .to_owned()
        }),
        args: Some(vec![
            "serve".to_owned(),
            component.component.name().to_owned(),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: i32::from(contract::HTTP_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: super::configmap::config_map_name(app, component),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(environment(app, component, logs)),
        resources: Some(resources(component)),
        // Two minutes to start (migrations, topics) before liveness applies.
        startup_probe: Some(http_probe(contract::STARTED_PATH, 2, 60)),
        readiness_probe: Some(http_probe(contract::READY_PATH, 5, 3)),
        liveness_probe: Some(http_probe(contract::LIVE_PATH, 10, 3)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    };
    let mut template_labels = app.labels(Some(component.component));
    template_labels.extend(app.selector(component.component));
    let pod = PodSpec {
        service_account_name: Some(app.name.clone()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(termination_grace_seconds()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        image_pull_secrets: (!spec.image.pull_secrets.is_empty()).then(|| {
            spec.image
                .pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        topology_spread_constraints: Some(spread(app, component.component)),
        affinity: next_to_the_log_volume(app, spec),
        containers: vec![container],
        volumes: Some(volumes),
        ..PodSpec::default()
    };
    Deployment {
        metadata: app.metadata(
            app.object_name(component.component),
            Some(component.component),
            true,
        ),
        spec: Some(DeploymentSpec {
            replicas: component.replicas,
            selector: LabelSelector {
                match_labels: Some(app.selector(component.component)),
                ..LabelSelector::default()
            },
            strategy: Some(strategy(spec, component)),
            min_ready_seconds: Some(10),
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(
                        [(CONFIG_HASH_ANNOTATION.to_owned(), config_hash(component))]
                            .into_iter()
                            .chain(
                                component.credential_version.clone().map(|version| {
                                    (CREDENTIAL_VERSION_ANNOTATION.to_owned(), version)
                                }),
                            )
                            .collect(),
                    ),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::plan;
    use crate::build::tests::app_with;

    fn deployment_of(database: &str, spec_extra: &str, component: &str) -> Deployment {
        let app = app_with(database, spec_extra);
        let identity = AppIdentity::of(&app);
        let plans = plan::plan("shop", &app.spec);
        let component = plans
            .iter()
            .find(|plan| plan.component.name() == component)
            .unwrap();
        build_deployment(&identity, &app.spec, component)
    }

    const POSTGRES: &str = "{postgres: {urlSecretRef: {name: db, key: url}}}";

    fn pod(deployment: &Deployment) -> PodSpec {
        deployment.spec.clone().unwrap().template.spec.unwrap()
    }

    #[test]
    fn a_read_write_once_log_volume_keeps_the_apps_pods_on_its_node() {
        let shared = |mode: &str| {
            let extra = format!("logging: {{persistence: {{size: 1Gi, accessMode: {mode}}}}}");
            pod(&deployment_of(POSTGRES, &extra, "order")).affinity
        };
        let affinity = shared("ReadWriteOnce").unwrap().pod_affinity.unwrap();
        let term = &affinity
            .required_during_scheduling_ignored_during_execution
            .unwrap()[0];
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        assert!(shared("ReadWriteMany").is_none(), "every node can mount it");
        assert!(
            pod(&deployment_of(POSTGRES, "", "order"))
                .affinity
                .is_none()
        );
    }

    #[test]
    fn volumes_carry_no_false_the_server_would_drop() {
        let deployment = deployment_of("{sqlite: {}}", "", "order");
        let volumes = pod(&deployment).volumes.unwrap();
        let claims: Vec<_> = volumes
            .iter()
            .filter_map(|volume| volume.persistent_volume_claim.as_ref())
            .collect();
        assert!(!claims.is_empty());
        assert!(
            claims.iter().all(|claim| claim.read_only.is_none()),
            "{claims:?}"
        );
    }

    #[test]
    fn resources_are_written_in_the_form_the_server_stores() {
        let deployment = deployment_of(
            POSTGRES,
            "defaults: {resources: {requests: {cpu: '0.5', memory: 1024Mi}, limits: {memory: 1024Mi}}}",
            "order",
        );
        let resources = pod(&deployment).containers[0].resources.clone().unwrap();
        let requests = resources.requests.unwrap();
        assert_eq!(requests["cpu"].0, "500m");
        assert_eq!(requests["memory"].0, "1Gi");
        assert_eq!(resources.limits.unwrap()["memory"].0, "1Gi");
    }

    #[test]
    fn an_hpa_owns_the_count_so_the_deployment_has_no_replicas() {
        let scaled = deployment_of(
            POSTGRES,
            "components: {order: {autoscaling: {minReplicas: 2}}}",
            "order",
        );
        assert_eq!(scaled.spec.unwrap().replicas, None);
        let fixed = deployment_of(POSTGRES, "components: {order: {replicas: 3}}", "order");
        assert_eq!(fixed.spec.unwrap().replicas, Some(3));
    }

    #[test]
    fn sqlite_components_recreate_others_roll_with_nothing_missing() {
        let sqlite = deployment_of("{sqlite: {}}", "", "order").spec.unwrap();
        assert_eq!(sqlite.strategy.unwrap().type_.as_deref(), Some("Recreate"));
        assert_eq!(sqlite.replicas, Some(1));
        let rolling = deployment_of(POSTGRES, "", "order")
            .spec
            .unwrap()
            .strategy
            .unwrap();
        let update = rolling.rolling_update.unwrap();
        assert_eq!(update.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(update.max_surge, Some(IntOrString::String("25%".into())));
        let tuned = deployment_of(
            POSTGRES,
            "rollout: {maxSurge: '2', maxUnavailable: 10%}",
            "order",
        );
        let update = tuned
            .spec
            .unwrap()
            .strategy
            .unwrap()
            .rolling_update
            .unwrap();
        assert_eq!(update.max_surge, Some(IntOrString::Int(2)));
        assert_eq!(
            update.max_unavailable,
            Some(IntOrString::String("10%".into()))
        );
    }

    #[test]
    fn probes_prestop_and_grace_period_follow_the_services_shutdown() {
        let deployment = deployment_of(POSTGRES, "", "payment");
        let spec = deployment.spec.clone().unwrap();
        assert_eq!(spec.min_ready_seconds, Some(10));
        assert_eq!(spec.progress_deadline_seconds, Some(600));
        assert_eq!(spec.revision_history_limit, Some(5));
        let pod = pod(&deployment);
        let container = &pod.containers[0];
        let path = |probe: &Option<Probe>| probe.clone().unwrap().http_get.unwrap().path.unwrap();
        assert_eq!(path(&container.startup_probe), "/health/started");
        assert_eq!(path(&container.readiness_probe), "/health/ready");
        assert_eq!(path(&container.liveness_probe), "/health/live");
        let sleep = container
            .lifecycle
            .clone()
            .unwrap()
            .pre_stop
            .unwrap()
            .sleep
            .unwrap();
        assert_eq!(sleep.seconds, PRE_STOP_SLEEP_SECONDS);
        assert!(
            pod.termination_grace_period_seconds.unwrap()
                > PRE_STOP_SLEEP_SECONDS
                    + contract::DRAIN_DELAY_SECONDS
                    + 2 * contract::SHUTDOWN_TIMEOUT_SECONDS
        );
        assert_eq!(container.args.clone().unwrap(), ["serve", "payment"]);
    }

    #[test]
    fn pods_meet_the_restricted_pod_security_standard() {
        let pod = pod(&deployment_of("{sqlite: {}}", "", "kitchen"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let security = pod.security_context.unwrap();
        assert_eq!(
            (security.run_as_non_root, security.run_as_user),
            (Some(true), Some(RUN_AS))
        );
        assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let container = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.read_only_root_filesystem, Some(true));
        assert_eq!(container.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        assert!(
            mounts.iter().any(|mount| mount.mount_path == "/tmp"),
            "a writable /tmp"
        );
        assert!(
            mounts.iter().any(|mount| mount.mount_path == DATA_PATH),
            "the SQLite volume"
        );
    }

    #[test]
    fn resources_are_always_requested_with_memory_limited_to_the_request() {
        let resources = pod(&deployment_of(POSTGRES, "", "mypage")).containers[0]
            .resources
            .clone()
            .unwrap();
        let requests = resources.requests.unwrap();
        assert_eq!(requests["cpu"].0, "100m");
        assert_eq!(requests["memory"].0, "64Mi");
        let limits = resources.limits.unwrap();
        assert_eq!(limits["memory"].0, "64Mi");
        assert!(!limits.contains_key("cpu"), "no CPU limit unless asked for");
    }

    #[test]
    fn the_database_url_comes_from_the_secret_or_the_volume() {
        let env = |deployment: Deployment| pod(&deployment).containers[0].env.clone().unwrap();
        let postgres = env(deployment_of(POSTGRES, "", "order"));
        let url = postgres
            .iter()
            .find(|var| var.name == "DATABASE_URL")
            .unwrap();
        let secret = url.value_from.clone().unwrap().secret_key_ref.unwrap();
        assert_eq!((secret.name.as_str(), secret.key.as_str()), ("db", "url"));
        let sqlite = env(deployment_of("{sqlite: {}}", "", "order"));
        let url = sqlite
            .iter()
            .find(|var| var.name == "DATABASE_URL")
            .unwrap();
        assert_eq!(url.value.as_deref(), Some("sqlite:///data/order.db"));
        let gateway = env(deployment_of(POSTGRES, "", "gateway"));
        assert!(gateway.iter().all(|var| var.name != "DATABASE_URL"));
        assert_eq!(gateway[0].name, "POD_NAME");
        assert!(
            gateway
                .iter()
                .chain(&sqlite)
                .all(|var| var.name != "KAFKA_GROUP_INSTANCE_ID"),
            "static membership halts consumption after a rollout"
        );
    }

    #[test]
    fn a_config_change_rolls_the_pods_but_never_touches_the_selector() {
        let hash = |deployment: &Deployment| {
            deployment
                .spec
                .clone()
                .unwrap()
                .template
                .metadata
                .unwrap()
                .annotations
                .unwrap()[CONFIG_HASH_ANNOTATION]
                .clone()
        };
        let before = deployment_of(POSTGRES, "config: {FEATURE: a}", "order");
        let after = deployment_of(POSTGRES, "config: {FEATURE: b}", "order");
        assert_ne!(hash(&before), hash(&after));
        let upgraded = deployment_of(
            POSTGRES,
            "config: {FEATURE: a}\nrollout: {maxSurge: '1'}",
            "order",
        );
        assert_eq!(hash(&before), hash(&upgraded), "only settings count");
        assert_eq!(before.spec.unwrap().selector, after.spec.unwrap().selector);
    }
}
