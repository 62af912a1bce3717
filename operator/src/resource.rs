//! The `FoodDeliveryApp` custom resource: one running food-delivery platform. Every field's doc comment is what
//! `kubectl explain` shows. Cross-field rules are CEL in the CRD (the API server rejects a bad spec with the
//! message) and the same rules are evaluated client-side by `render` (see `validate`).

use food_delivery_contract::Component;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A food-delivery platform: its image, its Kafka, its databases, and how each component runs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fooddelivery.dev",
    version = "v1alpha1",
    kind = "FoodDeliveryApp",
    plural = "fooddeliveryapps",
    shortname = "fda",
    category = "food",
    namespaced,
    cel,
    status = "FoodDeliveryAppStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Components","type":"string","jsonPath":".status.readyComponents"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.image.tag"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = crate::rules::sqlite_rule(Component::Customer),
    validation = crate::rules::sqlite_rule(Component::Order),
    validation = crate::rules::sqlite_rule(Component::Payment),
    validation = crate::rules::sqlite_rule(Component::Kitchen),
    validation = crate::rules::sqlite_rule(Component::Delivery),
    validation = crate::rules::sqlite_rule(Component::Mypage),
    validation = crate::rules::sqlite_rule(Component::Stamp),
)]
pub struct FoodDeliveryAppSpec {
    /// The container image every component runs (one image, `food-delivery serve <component>`).
    pub image: ImageSpec,
    /// The Kafka cluster the components exchange events through.
    pub kafka: KafkaSpec,
    /// The database backend of every component that keeps data, unless the component overrides it.
    pub database: DatabaseSpec,
    /// Settings shared by every component (environment variables, e.g. LOG_LEVEL); a component's own `config`
    /// wins over these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Defaults for every component: replicas, resources, autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ComponentDefaults>,
    /// The components, each optional: a component not listed runs with the defaults; `enabled: false` removes it.
    #[serde(default)]
    pub components: Components,
    /// How Deployments roll out (components on SQLite always use Recreate: their volume is ReadWriteOnce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
    /// Logging: the level and an optional volume shared by every component for log files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingSpec>,
    /// A NetworkPolicy that denies ingress to the app's pods except from the gateway's clients, between
    /// components and for metrics scraping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
    /// What happens to the app's PersistentVolumeClaims when the app is deleted. Retain (the default) keeps
    /// them: deleting a resource must not silently delete data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_retention: Option<VolumeRetention>,
    /// Stop reconciling: the operator leaves the app's objects as they are until this is false again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// The container image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.tag) || has(self.digest)").message("image: set a tag or a digest"),
)]
pub struct ImageSpec {
    /// The image repository, e.g. ghcr.io/food-delivery-operator/food-delivery.
    #[schemars(length(min = 1, max = 255))]
    pub repository: String,
    /// The image tag, e.g. 0.1.0. Also shown as the app's Version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
    pub tag: Option<String>,
    /// The image digest (sha256:...); wins over the tag when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[a-f0-9]{64}$"))]
    pub digest: Option<String>,
    /// When to pull the image: Always, IfNotPresent or Never (Kubernetes' default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Names of Secrets in the app's namespace to pull the image with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
}

/// When to pull the image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull on every start.
    Always,
    /// Pull when the node does not have it.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// The Kafka cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.topicPrefix) || (self.topicPrefix.matches('^[a-zA-Z0-9._-]+$') && self.topicPrefix != '.' && self.topicPrefix != '..')").message("kafka.topicPrefix may contain only letters, digits, '.', '_' and '-', and cannot be '.' or '..'"),
)]
pub struct KafkaSpec {
    /// Bootstrap servers, host:port[,host:port...], e.g. kafka.kafka.svc:9092.
    #[schemars(length(min = 1, max = 1024))]
    pub bootstrap_servers: String,
    /// Prefix of every topic and consumer group (topics are <prefix>.orders, ...). Default: food.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 200))]
    pub topic_prefix: Option<String>,
    /// Partitions of the topics the components create. Default: 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub topic_partitions: Option<i32>,
    /// Replication factor of the topics the components create. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub replication_factor: Option<i32>,
}

/// Where a component keeps its data: exactly one of postgres or sqlite.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.postgres) != has(self.sqlite)").message("database: set exactly one of postgres or sqlite"),
)]
pub struct DatabaseSpec {
    /// PostgreSQL: scalable replicas; the connection URL comes from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
    /// SQLite on a PersistentVolumeClaim (ReadWriteOnce): one replica, no autoscaling, Recreate rollouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteSpec>,
}

/// A PostgreSQL database.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// The Secret key holding the connection URL (postgres://user:password@host:5432/database).
    pub url_secret_ref: SecretKeyRef,
    /// How many connections the app may hold on this server, all pods together, at full scale (autoscaling
    /// maximum plus rollout surge). Each pod's pool gets its share (2 to 10). Default: 90, PostgreSQL's default
    /// max_connections of 100 less a margin for administrators. Raise it with the server's, or put a pooler
    /// (PgBouncer in session mode) in front and give its limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 100000))]
    pub max_connections: Option<i32>,
}

/// A key of a Secret in the app's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// An SQLite database on a volume.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SqliteSpec {
    /// The volume the database file lives on.
    #[serde(default)]
    pub storage: StorageSpec,
}

/// A volume request. Its class cannot change once the volume exists (a claim's class is immutable): the CRD refuses
/// the change, and an API server too old for transition rules refuses the claim (Stalled, ApplyRefused).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("storage.storageClassName cannot change once the volume exists (a claim's class is immutable)"),
)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, e.g. 1Gi. Default: 1Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: Option<String>,
    /// The StorageClass; the cluster's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Defaults for every component.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentDefaults {
    /// Replicas when there is no autoscaling. Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// CPU and memory. Default: requests 100m CPU and 64Mi memory, memory limit = memory request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Horizontal autoscaling on CPU; replaces replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
}

/// CPU and memory of a component's container.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesSpec {
    /// What the scheduler reserves (and what CPU autoscaling measures against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceAmounts>,
    /// Upper bounds. Memory defaults to the memory request; CPU is not limited unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceAmounts>,
}

/// Amounts of CPU and memory.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    /// CPU, e.g. 100m or 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: Option<String>,
    /// Memory, e.g. 64Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"))]
    pub memory: Option<String>,
}

/// Horizontal autoscaling on CPU utilization.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("autoscaling: minReplicas must not exceed maxReplicas"),
)]
pub struct AutoscalingSpec {
    /// The fewest replicas. Default: 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: Option<i32>,
    /// The most replicas. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: Option<i32>,
    /// Average CPU utilization (percent of the request) to keep. Default: 70.
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: Option<i32>,
}

/// The components.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Components {
    /// The single entry: routes /api/<resource> to the component that owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayComponent>,
    /// Customers: register, read, update, delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<ComponentSpec>,
    /// Orders: places an order once its payment is authorized; the saga's hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderComponent>,
    /// Payments: authorizes and refunds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<ComponentSpec>,
    /// Kitchen: menu, stock and tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kitchen: Option<ComponentSpec>,
    /// Delivery: riders and deliveries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<ComponentSpec>,
    /// My page: the read side (order timelines, customer history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mypage: Option<ComponentSpec>,
    /// Stamps: loyalty stamps per customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<ComponentSpec>,
}

/// How one component runs.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    /// Whether it runs. Default: true. Disabling removes its objects (its volumes follow volumeRetention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Replicas when there is no autoscaling; overrides defaults.replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// CPU and memory; overrides defaults.resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Autoscaling; overrides defaults.autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// The component's own settings (environment variables); win over the shared config.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// The component's database; overrides spec.database. A component that chooses SQLite here runs one
    /// replica and ignores the defaults' replicas and autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,
}

/// The gateway: a component plus how it is exposed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayComponent {
    /// How the gateway runs.
    #[serde(flatten)]
    pub component: ComponentSpec,
    /// How clients reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<ExposeSpec>,
}

/// How clients reach the gateway.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExposeSpec {
    /// The gateway Service's type: ClusterIP (default), NodePort or LoadBalancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,
    /// An Ingress in front of the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Browser origins allowed to call the API (CORS): `*` or origins like https://shop.example.org.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_allowed_origins: Vec<String>,
}

/// A Service type.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceType {
    /// Inside the cluster only.
    ClusterIP,
    /// On a port of every node.
    NodePort,
    /// Through the cloud's load balancer.
    LoadBalancer,
}

/// An Ingress for the gateway.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// The host name, e.g. food.example.org.
    #[schemars(regex(
        pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ))]
    pub host: String,
    /// The IngressClass, e.g. nginx; the cluster's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// A Secret with the TLS certificate for the host; plain HTTP when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
}

/// The order component: a component plus its guard around the payment call.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OrderComponent {
    /// How the order component runs.
    #[serde(flatten)]
    pub component: ComponentSpec,
    /// Deadline, concurrency limit and circuit breaker around the call to payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerSpec>,
}

/// The guard around a synchronous call.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerSpec {
    /// Deadline of one call in milliseconds. Default: 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600000))]
    pub timeout_ms: Option<i32>,
    /// Opens when this percentage of calls in the window fails. Default: 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_rate_percent: Option<i32>,
    /// Calls before the rate counts; this many consecutive failures open it at once. Default: 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub minimum_calls: Option<i32>,
    /// How long it stays open before a trial call, in seconds. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub open_seconds: Option<i32>,
    /// Calls in flight at most; more fail fast. Default: 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrent: Option<i32>,
}

/// Rolling updates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = crate::rules::rollout_rule())]
pub struct RolloutSpec {
    /// Extra pods during a rollout, a number or a percentage. Default: 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+|[0-9]+%)$"), length(max = 8))]
    pub max_surge: Option<String>,
    /// Pods that may be missing during a rollout, a number or a percentage. Default: 0 (zero downtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+|[0-9]+%)$"), length(max = 8))]
    pub max_unavailable: Option<String>,
}

/// Logging.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    /// The log level or filter, e.g. info or info,sqlx=warn. Default: info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// A volume shared by every component; each pod writes JSON logs to <pod name>.log on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<LogPersistenceSpec>,
}

/// The shared log volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("logging.persistence.storageClassName cannot change once the volume exists (a claim's class is immutable)"),
    validation = Rule::new("!has(oldSelf.accessMode) || (has(self.accessMode) && self.accessMode == oldSelf.accessMode)").message("logging.persistence.accessMode cannot change once the volume exists (a claim's access modes are immutable)"),
    validation = Rule::new("has(self.accessMode)").message("logging.persistence.accessMode: choose ReadWriteMany (a storage class that offers it: NFS, CephFS, EFS, Azure Files) or ReadWriteOnce (every pod of the app then runs on the node holding the volume)"),
)]
pub struct LogPersistenceSpec {
    /// Requested size, e.g. 5Gi. Default: 1Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: Option<String>,
    /// Required, there is no safe default: ReadWriteMany lets every pod on every node write to it but needs a
    /// storage class that offers it (most default classes do not, and the claim would stay Pending with every
    /// pod waiting for it); ReadWriteOnce works with any class and keeps every pod of the app on the node that
    /// holds the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<AccessMode>,
    /// The StorageClass; the cluster's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// A volume access mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessMode {
    /// Many nodes read and write.
    ReadWriteMany,
    /// One node reads and writes.
    ReadWriteOnce,
}

/// The NetworkPolicy switch.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Whether the operator emits the app's NetworkPolicy.
    pub enabled: bool,
    /// TCP ports the components may reach their database on. Default: 5432. The URL lives in a Secret the
    /// policy cannot read: list the port here when PostgreSQL (or a pooler in front of it) listens elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub database_ports: Vec<PortNumber>,
    /// TCP ports the components may reach Kafka on. Default: the ports of kafka.bootstrapServers. Brokers answer
    /// with the addresses they advertise, which may use other ports (a listener per broker, TLS): list them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub kafka_ports: Vec<PortNumber>,
}

/// A TCP port.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(transparent)]
pub struct PortNumber(#[schemars(range(min = 1, max = 65535))] pub i32);

/// What happens to volumes when the app is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VolumeRetention {
    /// Keep the PersistentVolumeClaims (they carry no owner reference).
    #[default]
    Retain,
    /// Delete them with the app.
    Delete,
}

/// What the operator observed. A new app is given `observedGeneration: -1` by the API server (a schema default,
/// as Flux does it), so kstatus, Helm and Flux see it InProgress until the operator has written a real status,
/// never Current before anything was applied.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": -1}))]
pub struct FoodDeliveryAppStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled, following kstatus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Each component's rollout.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentStatus>,
    /// Ready components out of enabled ones, e.g. 7/8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_components: Option<String>,
}

/// One component's rollout.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas ready.
    pub ready: i32,
    /// Replicas on the current template.
    pub updated: i32,
    /// Whether the component serves (its Deployment is available).
    pub available: bool,
    /// Hash of the configuration the pods run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}
