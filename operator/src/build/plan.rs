//! What each enabled component gets once the spec's defaults, overrides and rules are applied. Every kind's
//! build module reads this, so a rule (say, "SQLite means one replica") is decided once.

use crate::resource::{
    AutoscalingSpec, CircuitBreakerSpec, ComponentSpec, DatabaseSpec, ExposeSpec,
    FoodDeliveryAppSpec, ResourcesSpec, SecretKeyRef, VolumeRetention,
};
use food_delivery_contract::{Component, deadlines, env};
use std::collections::BTreeMap;

/// Default CPU request.
pub const DEFAULT_CPU_REQUEST: &str = "100m";
/// Default memory request (and limit).
pub const DEFAULT_MEMORY: &str = "64Mi";
/// Default SQLite volume size.
pub const DEFAULT_VOLUME_SIZE: &str = "1Gi";

/// Where a component's data lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// No data (the gateway).
    None,
    /// PostgreSQL; the URL is read from this Secret key.
    Postgres(SecretKeyRef),
    /// SQLite on a ReadWriteOnce volume of this size and class.
    Sqlite {
        /// Requested size.
        size: String,
        /// StorageClass, or the cluster's default.
        storage_class_name: Option<String>,
    },
}

/// CPU autoscaling as the HPA gets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autoscaling {
    /// Fewest replicas.
    pub min_replicas: i32,
    /// Most replicas.
    pub max_replicas: i32,
    /// Target average CPU utilization in percent.
    pub target_cpu_percent: i32,
}

/// CPU and memory, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// CPU request.
    pub cpu_request: String,
    /// Memory request.
    pub memory_request: String,
    /// CPU limit, only when asked for (CPU limits throttle; most clusters leave them off).
    pub cpu_limit: Option<String>,
    /// Memory limit (defaults to the request: no overcommit, no surprise OOM kills of neighbours).
    pub memory_limit: String,
}

/// One enabled component, ready to build.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentPlan {
    /// The component.
    pub component: Component,
    /// Replicas when not autoscaled; `None` when an HPA owns the count.
    pub replicas: Option<i32>,
    /// Autoscaling, when set.
    pub autoscaling: Option<Autoscaling>,
    /// Where its data lives.
    pub storage: Storage,
    /// CPU and memory.
    pub resources: Resources,
    /// Settings (environment variables) written into its ConfigMap.
    pub settings: BTreeMap<String, String>,
    /// How the gateway is exposed (gateway only).
    pub expose: Option<ExposeSpec>,
    /// The internal credential's Secret uid, for components that read it (set by the reconcile, which reads the
    /// Secret; `render` has none). In the pod template, so a re-created credential rolls its readers together.
    pub credential_version: Option<String>,
}

impl ComponentPlan {
    /// Whether it runs on a ReadWriteOnce volume: one replica, Recreate rollouts.
    pub fn single_writer(&self) -> bool {
        matches!(self.storage, Storage::Sqlite { .. })
    }

    /// The fewest replicas it runs with (for the disruption budget).
    pub fn minimum_replicas(&self) -> i32 {
        self.autoscaling
            .map(|autoscaling| autoscaling.min_replicas)
            .or(self.replicas)
            .unwrap_or(1)
    }
}

/// A component's own settings, whichever kind it is.
fn component_of(spec: &FoodDeliveryAppSpec, component: Component) -> Option<&ComponentSpec> {
    let components = &spec.components;
    match component {
        Component::Gateway => components
            .gateway
            .as_ref()
            .map(|gateway| &gateway.component),
        Component::Customer => components.customer.as_ref(),
        Component::Order => components.order.as_ref().map(|order| &order.component),
        Component::Payment => components.payment.as_ref(),
        Component::Kitchen => components.kitchen.as_ref(),
        Component::Delivery => components.delivery.as_ref(),
        Component::Mypage => components.mypage.as_ref(),
        Component::Stamp => components.stamp.as_ref(),
    }
}

fn storage_of(database: &DatabaseSpec) -> Storage {
    match (&database.postgres, &database.sqlite) {
        (Some(postgres), _) => Storage::Postgres(postgres.url_secret_ref.clone()),
        (None, Some(sqlite)) => Storage::Sqlite {
            size: sqlite
                .storage
                .size
                .clone()
                .unwrap_or_else(|| DEFAULT_VOLUME_SIZE.to_owned()),
            storage_class_name: sqlite.storage.storage_class_name.clone(),
        },
        (None, None) => Storage::None,
    }
}

fn resources_of(spec: Option<&ResourcesSpec>) -> Resources {
    let requests = spec.and_then(|resources| resources.requests.as_ref());
    let limits = spec.and_then(|resources| resources.limits.as_ref());
    let memory_request = requests
        .and_then(|requests| requests.memory.clone())
        .unwrap_or_else(|| DEFAULT_MEMORY.to_owned());
    Resources {
        cpu_request: requests
            .and_then(|requests| requests.cpu.clone())
            .unwrap_or_else(|| DEFAULT_CPU_REQUEST.to_owned()),
        cpu_limit: limits.and_then(|limits| limits.cpu.clone()),
        memory_limit: limits
            .and_then(|limits| limits.memory.clone())
            .unwrap_or_else(|| memory_request.clone()),
        memory_request,
    }
}

fn autoscaling_of(spec: &AutoscalingSpec) -> Autoscaling {
    let min_replicas = spec.min_replicas.unwrap_or(2);
    Autoscaling {
        min_replicas,
        max_replicas: spec.max_replicas.unwrap_or(10).max(min_replicas),
        target_cpu_percent: spec.target_cpu_utilization_percentage.unwrap_or(70),
    }
}

/// Whether the component runs at all.
pub fn is_enabled(spec: &FoodDeliveryAppSpec, component: Component) -> bool {
    component_of(spec, component)
        .and_then(|component| component.enabled)
        .unwrap_or(true)
}

/// The in-cluster base URL of a component of app `app`.
pub fn service_url(app: &str, component: Component) -> String {
    format!(
        "http://{app}-{component}:{}",
        food_delivery_contract::HTTP_PORT
    )
}

/// The deadline of order's payment call when the spec sets it (else the service's default, which every other
/// deadline's default fits).
fn payment_timeout_ms(spec: &FoodDeliveryAppSpec) -> Option<u64> {
    let breaker = spec.components.order.as_ref()?.circuit_breaker.as_ref()?;
    breaker
        .timeout_ms
        .and_then(|timeout| u64::try_from(timeout).ok())
}

fn circuit_breaker_settings(breaker: &CircuitBreakerSpec) -> Vec<(&'static str, String)> {
    [
        (env::PAYMENT_TIMEOUT_MS, breaker.timeout_ms),
        (
            env::PAYMENT_BREAKER_FAILURE_RATE_PERCENT,
            breaker.failure_rate_percent,
        ),
        (env::PAYMENT_BREAKER_MINIMUM_CALLS, breaker.minimum_calls),
        (env::PAYMENT_BREAKER_OPEN_SECONDS, breaker.open_seconds),
        (env::PAYMENT_MAX_CONCURRENT, breaker.max_concurrent),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|value| (key, value.to_string())))
    .collect()
}

/// The settings of one component: Kafka and logging for all, peers and guards where they apply, then the
/// app's shared `config`, then the component's own (later wins).
fn settings_of(
    app: &str,
    spec: &FoodDeliveryAppSpec,
    name: Component,
    component: Option<&ComponentSpec>,
) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        settings.insert(key.to_owned(), value);
    };
    if name.uses_events() {
        set(
            env::KAFKA_BOOTSTRAP_SERVERS,
            spec.kafka.bootstrap_servers.clone(),
        );
        set(
            env::KAFKA_TOPIC_PREFIX,
            spec.kafka
                .topic_prefix
                .clone()
                .unwrap_or_else(|| "food".to_owned()),
        );
        if let Some(partitions) = spec.kafka.topic_partitions {
            set(env::KAFKA_TOPIC_PARTITIONS, partitions.to_string());
        }
        if let Some(replication) = spec.kafka.replication_factor {
            set(env::KAFKA_REPLICATION_FACTOR, replication.to_string());
        }
    }
    let level = spec
        .logging
        .as_ref()
        .and_then(|logging| logging.level.clone())
        .unwrap_or_else(|| "info".to_owned());
    set(env::LOG_LEVEL, level);
    match name {
        Component::Gateway => {
            let routes = food_delivery_contract::RESOURCE_OWNERS
                .iter()
                .filter(|(_, owner)| is_enabled(spec, *owner))
                .map(|(resource, owner)| format!("{resource}={}", service_url(app, *owner)))
                .collect::<Vec<_>>()
                .join(",");
            set(env::GATEWAY_ROUTES, routes);
            let origins = spec
                .components
                .gateway
                .as_ref()
                .and_then(|gateway| gateway.expose.as_ref())
                .map(|expose| expose.cors_allowed_origins.join(","))
                .unwrap_or_default();
            if !origins.is_empty() {
                set(env::GATEWAY_CORS_ALLOWED_ORIGINS, origins);
            }
            // The route to orders outlasts order's answer to `POST /orders`, which outlasts the payment call.
            if let Some(payment_ms) = payment_timeout_ms(spec) {
                let needed = deadlines::gateway_orders_minimum_ms(payment_ms);
                if needed > deadlines::GATEWAY_ROUTE_TIMEOUT_MS {
                    set(env::GATEWAY_ROUTE_TIMEOUTS_MS, format!("orders={needed}"));
                }
                if needed > deadlines::REQUEST_TIMEOUT_MS {
                    set(env::HTTP_REQUEST_TIMEOUT_MS, needed.to_string());
                }
            }
        }
        Component::Order => {
            set(env::PAYMENT_URL, service_url(app, Component::Payment));
            if let Some(breaker) = spec
                .components
                .order
                .as_ref()
                .and_then(|order| order.circuit_breaker.as_ref())
            {
                for (key, value) in circuit_breaker_settings(breaker) {
                    set(key, value);
                }
            }
            // Order refuses to start with a request deadline the payment call does not fit in.
            if let Some(payment_ms) = payment_timeout_ms(spec) {
                let needed = deadlines::order_request_minimum_ms(payment_ms);
                if needed > deadlines::REQUEST_TIMEOUT_MS {
                    set(env::HTTP_REQUEST_TIMEOUT_MS, needed.to_string());
                }
            }
        }
        _ => {}
    }
    settings.extend(spec.config.clone());
    if let Some(component) = component {
        settings.extend(component.config.clone());
    }
    settings
}

/// The plan of every enabled component, in the contract's order, pools sized (see [`size_connection_pools`]).
pub fn plan(app: &str, spec: &FoodDeliveryAppSpec) -> Vec<ComponentPlan> {
    plan_with_shortfalls(app, spec).0
}

/// [`plan`], with what does not fit the database servers' connection budgets.
pub fn plan_with_shortfalls(
    app: &str,
    spec: &FoodDeliveryAppSpec,
) -> (Vec<ComponentPlan>, Vec<String>) {
    let mut plans = plan_components(app, spec);
    let shortfalls = size_connection_pools(spec, &mut plans);
    (plans, shortfalls)
}

fn plan_components(app: &str, spec: &FoodDeliveryAppSpec) -> Vec<ComponentPlan> {
    Component::ALL
        .into_iter()
        .filter(|name| is_enabled(spec, *name))
        .map(|name| {
            let component = component_of(spec, name);
            let own_database = component.and_then(|component| component.database.as_ref());
            let storage = if name.stateful() {
                storage_of(own_database.unwrap_or(&spec.database))
            } else {
                Storage::None
            };
            let defaults = spec.defaults.as_ref();
            // A component that picks SQLite for itself ignores the defaults' scaling (see the CRD rule).
            let defaults_apply =
                !(own_database.is_some() && matches!(storage, Storage::Sqlite { .. }));
            let autoscaling = component
                .and_then(|component| component.autoscaling.as_ref())
                .or(defaults
                    .filter(|_| defaults_apply)
                    .and_then(|defaults| defaults.autoscaling.as_ref()))
                .map(autoscaling_of);
            let replicas = component
                .and_then(|component| component.replicas)
                .or(defaults
                    .filter(|_| defaults_apply)
                    .and_then(|defaults| defaults.replicas))
                .unwrap_or(1);
            let single_writer = matches!(storage, Storage::Sqlite { .. });
            let (replicas, autoscaling) = match (single_writer, autoscaling) {
                // Validation refuses more; this keeps the build safe for a spec that skipped it.
                (true, _) => (Some(replicas.min(1)), None),
                (false, Some(autoscaling)) => (None, Some(autoscaling)),
                (false, None) => (Some(replicas), None),
            };
            ComponentPlan {
                component: name,
                replicas,
                autoscaling,
                storage,
                resources: resources_of(
                    component
                        .and_then(|component| component.resources.as_ref())
                        .or(defaults.and_then(|defaults| defaults.resources.as_ref())),
                ),
                settings: settings_of(app, spec, name, component),
                expose: name
                    .exposed()
                    .then(|| {
                        spec.components
                            .gateway
                            .as_ref()
                            .and_then(|gateway| gateway.expose.clone())
                    })
                    .flatten(),
                credential_version: None,
            }
        })
        .collect()
}

/// The connection budget of a PostgreSQL server when the spec gives none: PostgreSQL's default max_connections
/// (100) less a margin for administrators, migrations and monitoring.
pub const DEFAULT_CONNECTION_BUDGET: i32 = 90;
/// The smallest pool a service runs with (a consumer's transaction and a request at once), and the largest worth
/// having per pod (more pods scale better than bigger pools on one database).
const POOL_SIZES: std::ops::RangeInclusive<i32> = 2..=10;

/// The most pods a component runs at once: its maximum (autoscaling) or its replicas, plus the rollout's surge.
fn most_pods(spec: &FoodDeliveryAppSpec, component: &ComponentPlan) -> i32 {
    let most = component
        .autoscaling
        .map_or(component.replicas.unwrap_or(1), |autoscaling| {
            autoscaling.max_replicas
        });
    let surge = spec
        .rollout
        .as_ref()
        .and_then(|rollout| rollout.max_surge.as_deref())
        .unwrap_or("25%");
    let extra = match surge.strip_suffix('%') {
        // Kubernetes rounds a surge percentage up.
        Some(percent) => percent
            .parse::<i64>()
            .map(|percent| (i64::from(most) * percent + 99) / 100)
            .unwrap_or(1),
        None => surge.parse::<i64>().unwrap_or(1),
    };
    most.saturating_add(i32::try_from(extra).unwrap_or(i32::MAX))
}

/// Sizes each PostgreSQL component's pool so that every pod of every component on the same server (the same
/// Secret), at full scale, stays within the server's budget: a pool of 10 per pod exhausted PostgreSQL's 100
/// connections with the production example's minimum replicas already. A `DATABASE_MAX_CONNECTIONS` in the
/// spec's config (the app's or a component's) wins, and what those pools take at full scale comes off the budget
/// the others share. Returns what does not fit even with the smallest pools, one line per server.
pub fn size_connection_pools(
    spec: &FoodDeliveryAppSpec,
    plans: &mut [ComponentPlan],
) -> Vec<String> {
    /// One server's budget, its pods, those whose pools are sized here, and the connections the fixed pools take.
    #[derive(Default)]
    struct Server {
        budget: i32,
        pods: i32,
        sized_pods: i32,
        fixed: i32,
    }
    let mut servers: BTreeMap<(String, String), Server> = BTreeMap::new();
    for component in plans.iter() {
        if let Storage::Postgres(secret) = &component.storage {
            let budget = postgres_of(spec, component.component)
                .and_then(|postgres| postgres.max_connections)
                .unwrap_or(DEFAULT_CONNECTION_BUDGET);
            let server = servers
                .entry((secret.name.clone(), secret.key.clone()))
                .or_insert(Server {
                    budget,
                    ..Server::default()
                });
            server.budget = server.budget.min(budget);
            let pods = most_pods(spec, component);
            server.pods = server.pods.saturating_add(pods);
            let fixed_pool = component
                .settings
                .get(env::DATABASE_MAX_CONNECTIONS)
                .and_then(|pool| pool.parse::<i32>().ok());
            match fixed_pool {
                Some(pool) => server.fixed = server.fixed.saturating_add(pool.saturating_mul(pods)),
                None => server.sized_pods = server.sized_pods.saturating_add(pods),
            }
        }
    }
    let mut shortfalls = Vec::new();
    for ((name, key), server) in &servers {
        let left = server.budget.saturating_sub(server.fixed);
        let share = (left / server.sized_pods.max(1)).clamp(*POOL_SIZES.start(), *POOL_SIZES.end());
        let needed = share
            .saturating_mul(server.sized_pods)
            .saturating_add(server.fixed);
        if needed > server.budget {
            shortfalls.push(format!(
                "PostgreSQL of Secret {name}: {} pods at full scale need at least {needed} connections ({} for \
                 pools set by DATABASE_MAX_CONNECTIONS), the budget (database.postgres.maxConnections) is {}; raise \
                 it with the server's max_connections, put a pooler in front, or lower the autoscaling maximums",
                server.pods, server.fixed, server.budget
            ));
        }
        for component in plans.iter_mut() {
            if matches!(&component.storage, Storage::Postgres(secret) if secret.name == *name && secret.key == *key)
            {
                component
                    .settings
                    .entry(env::DATABASE_MAX_CONNECTIONS.to_owned())
                    .or_insert_with(|| share.to_string());
            }
        }
    }
    shortfalls
}

fn postgres_of(
    spec: &FoodDeliveryAppSpec,
    component: Component,
) -> Option<&crate::resource::PostgresSpec> {
    component_of(spec, component)
        .and_then(|component| component.database.as_ref())
        .unwrap_or(&spec.database)
        .postgres
        .as_ref()
}

/// Whether the app's volumes go with it.
pub fn volumes_follow_app(spec: &FoodDeliveryAppSpec) -> bool {
    spec.volume_retention == Some(VolumeRetention::Delete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{app_with, plan_of_postgres};

    fn pool_of(plans: &[ComponentPlan], component: Component) -> Option<String> {
        plans
            .iter()
            .find(|plan| plan.component == component)?
            .settings
            .get(env::DATABASE_MAX_CONNECTIONS)
            .cloned()
    }

    #[test]
    fn pools_share_the_servers_budget_across_every_pod_at_full_scale() {
        // Seven components on one server, one replica each plus one surge pod: 14 pods share 90 connections.
        let plans = plan_of_postgres("");
        assert_eq!(pool_of(&plans, Component::Order).as_deref(), Some("6"));
        assert_eq!(pool_of(&plans, Component::Gateway), None, "no database");
        // A bigger budget, capped at 10 per pod.
        let app = app_with(
            "{postgres: {urlSecretRef: {name: db, key: url}, maxConnections: 1000}}",
            "",
        );
        let plans = plan("shop", &app.spec);
        assert_eq!(pool_of(&plans, Component::Order).as_deref(), Some("10"));
        // The spec's own setting wins.
        let plans = plan_of_postgres("config: {DATABASE_MAX_CONNECTIONS: '4'}");
        assert_eq!(pool_of(&plans, Component::Order).as_deref(), Some("4"));
    }

    #[test]
    fn a_pool_set_by_hand_comes_off_the_budget_the_others_share() {
        // order's two pods take 2 x 20 of the 90; the other twelve pods share the 50 left.
        let plans =
            plan_of_postgres("components: {order: {config: {DATABASE_MAX_CONNECTIONS: '20'}}}");
        assert_eq!(pool_of(&plans, Component::Order).as_deref(), Some("20"));
        assert_eq!(pool_of(&plans, Component::Kitchen).as_deref(), Some("4"));
        let app = app_with(
            "{postgres: {urlSecretRef: {name: db, key: url}}}",
            "components: {order: {config: {DATABASE_MAX_CONNECTIONS: '50'}}}",
        );
        let (plans, shortfalls) = plan_with_shortfalls("shop", &app.spec);
        assert_eq!(
            pool_of(&plans, Component::Kitchen).as_deref(),
            Some("2"),
            "the smallest pool"
        );
        assert_eq!(shortfalls.len(), 1, "100 for order alone: {shortfalls:?}");
        // order's 2 x 50 and the twelve other pods' smallest pools.
        assert!(
            shortfalls[0].contains("124") && shortfalls[0].contains("100 for pools"),
            "{shortfalls:?}"
        );
    }

    #[test]
    fn two_keys_of_one_secret_are_two_budgets() {
        let app = app_with(
            "{postgres: {urlSecretRef: {name: pg, key: main}}}",
            "components: {order: {database: {postgres: {urlSecretRef: {name: pg, key: big}}}, autoscaling: {minReplicas: 2, maxReplicas: 40}}}",
        );
        let plans = plan("shop", &app.spec);
        assert_eq!(
            pool_of(&plans, Component::Order).as_deref(),
            Some("2"),
            "50 pods on its own budget"
        );
        assert_eq!(
            pool_of(&plans, Component::Kitchen).as_deref(),
            Some("7"),
            "12 pods share the other"
        );
    }

    #[test]
    fn a_fleet_too_big_for_the_server_gets_the_smallest_pools_and_a_warning() {
        let app = app_with(
            "{postgres: {urlSecretRef: {name: db, key: url}}}",
            "defaults: {autoscaling: {minReplicas: 2, maxReplicas: 10}}",
        );
        let (plans, shortfalls) = plan_with_shortfalls("shop", &app.spec);
        assert_eq!(pool_of(&plans, Component::Order).as_deref(), Some("2"));
        assert_eq!(shortfalls.len(), 1, "{shortfalls:?}");
        // 7 components x (10 + 3 surge) = 91 pods x 2.
        assert!(
            shortfalls[0].contains("91 pods") && shortfalls[0].contains("182"),
            "{}",
            shortfalls[0]
        );
    }
}
