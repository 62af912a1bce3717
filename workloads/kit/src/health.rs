//! Three health endpoints with three meanings, because Kubernetes acts differently on each:
//! - started (startup probe): initialisation finished (store migrated, topics exist); until then the other
//!   probes are not run;
//! - live (liveness probe): the process answers HTTP. It never checks dependencies: restarting a healthy pod
//!   because the database is down only adds a second outage;
//! - ready (readiness probe): this replica should get traffic now: not shutting down and every dependency check
//!   passes. Informational details (circuit-breaker states) are reported without failing it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Startup probe path.
pub const STARTED_PATH: &str = food_delivery_contract::STARTED_PATH;
/// Liveness probe path.
pub const LIVE_PATH: &str = food_delivery_contract::LIVE_PATH;
/// Readiness probe path.
pub const READY_PATH: &str = food_delivery_contract::READY_PATH;

/// How long one dependency check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The result of one readiness check.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Whether this check lets the replica take traffic.
    pub ready: bool,
    /// What to show in the readiness body.
    pub detail: Value,
}

/// A dependency (or informational detail) reported on the readiness endpoint.
pub trait ReadinessCheck: Send + Sync {
    /// The key under which the report appears.
    fn name(&self) -> String;
    /// Runs the check.
    fn check(&self) -> BoxFuture<'_, CheckReport>;
}

#[derive(Default)]
struct HealthState {
    started: AtomicBool,
    draining: AtomicBool,
    checks: RwLock<Vec<Arc<dyn ReadinessCheck>>>,
}

/// The health of one service, shared by its probes and its shutdown sequence.
#[derive(Clone, Default)]
pub struct Health {
    state: Arc<HealthState>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Health")
            .field("started", &self.is_started())
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

impl Health {
    /// A health that is neither started nor draining, with no checks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a readiness check.
    pub fn add_check(&self, check: Arc<dyn ReadinessCheck>) {
        self.state
            .checks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(check);
    }

    /// Initialisation is complete.
    pub fn mark_started(&self) {
        self.state.started.store(true, Ordering::SeqCst);
    }

    /// Shutdown has begun: readiness answers 503 from now on.
    pub fn start_draining(&self) {
        self.state.draining.store(true, Ordering::SeqCst);
    }

    /// Whether initialisation is complete.
    pub fn is_started(&self) -> bool {
        self.state.started.load(Ordering::SeqCst)
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.state.draining.load(Ordering::SeqCst)
    }

    /// Runs every check; returns whether the replica is ready and the body to show.
    pub async fn readiness(&self) -> (bool, Value) {
        let checks: Vec<Arc<dyn ReadinessCheck>> = self
            .state
            .checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let reports = futures::future::join_all(checks.iter().map(|check| async move {
            let report = tokio::time::timeout(CHECK_TIMEOUT, check.check())
                .await
                .unwrap_or_else(|_| CheckReport {
                    ready: false,
                    detail: json!({"status": "down", "error": "no answer within 2s"}),
                });
            (check.name(), report)
        }))
        .await;
        let mut details = Map::new();
        let mut ready = self.is_started() && !self.is_draining();
        for (name, report) in reports {
            ready &= report.ready;
            details.insert(name, report.detail);
        }
        let status = if self.is_draining() {
            "draining"
        } else if !self.is_started() {
            "starting"
        } else if ready {
            "ready"
        } else {
            "not ready"
        };
        (ready, json!({"status": status, "checks": details}))
    }
}

/// The three probe endpoints.
pub fn routes(health: Health) -> axum::Router {
    axum::Router::new()
        .route(STARTED_PATH, get(started))
        .route(LIVE_PATH, get(live))
        .route(READY_PATH, get(ready))
        .with_state(health)
}

async fn started(State(health): State<Health>) -> impl IntoResponse {
    if health.is_started() {
        (StatusCode::OK, Json(json!({"status": "started"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting"})),
        )
    }
}

async fn live() -> impl IntoResponse {
    Json(json!({"status": "live"}))
}

async fn ready(State(health): State<Health>) -> impl IntoResponse {
    let (ready, body) = health.readiness().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Readiness of the store: a round trip.
#[derive(Debug)]
pub struct StoreCheck(pub crate::store::Store);

impl ReadinessCheck for StoreCheck {
    fn name(&self) -> String {
        "store".to_owned()
    }

    fn check(&self) -> BoxFuture<'_, CheckReport> {
        Box::pin(async move {
            let backend = format!("{:?}", self.0.backend()).to_lowercase();
            match self.0.ping().await {
                Ok(()) => CheckReport {
                    ready: true,
                    detail: json!({"status": "up", "backend": backend, "migrations": "applied"}),
                },
                Err(error) => CheckReport {
                    ready: false,
                    detail: json!({"status": "down", "backend": backend, "error": error.to_string()}),
                },
            }
        })
    }
}

/// Readiness of the event bus: broker metadata round trip. When `required` is false a broker outage is shown
/// but does not take the replica out of service (the outbox keeps writes safe meanwhile).
#[derive(Debug)]
pub struct BusCheck {
    /// The bus.
    pub bus: crate::events::EventBus,
    /// Whether an unreachable broker makes the replica unready.
    pub required: bool,
}

impl ReadinessCheck for BusCheck {
    fn name(&self) -> String {
        "broker".to_owned()
    }

    fn check(&self) -> BoxFuture<'_, CheckReport> {
        Box::pin(async move {
            match self.bus.ping().await {
                Ok(()) => CheckReport {
                    ready: true,
                    detail: json!({"status": "up", "kind": self.bus.kind()}),
                },
                Err(error) => CheckReport {
                    ready: !self.required,
                    detail: json!({"status": "down", "kind": self.bus.kind(), "error": error.to_string()}),
                },
            }
        })
    }
}

/// The service's consumers, as a readiness detail that never fails readiness: a partition held up by an event
/// whose handling keeps failing (the store down, say) is listed with its offset, attempts and last error, and each
/// Kafka member's assignment (partitions held, join state, rebalances, lag), so a member that holds nothing while
/// its group has work shows. Taking
/// the replica out of its Service would not help the consumer, and would stop the API that still works.
#[derive(Debug, Default, Clone)]
pub struct ConsumersCheck {
    groups: Arc<RwLock<Vec<String>>>,
}

impl ConsumersCheck {
    /// Reports on `group` too.
    pub fn watch(&self, group: String) {
        self.groups
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(group);
    }
}

impl ReadinessCheck for ConsumersCheck {
    fn name(&self) -> String {
        "consumers".to_owned()
    }

    fn check(&self) -> BoxFuture<'_, CheckReport> {
        let groups = self
            .groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let stuck = crate::events::stuck_deliveries(&groups);
        let members = crate::events::membership_reports(&groups);
        let status = if stuck.is_empty() { "moving" } else { "stuck" };
        Box::pin(async move {
            CheckReport {
                ready: true,
                detail: json!({"status": status, "groups": groups, "stuck": stuck, "members": members}),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(bool);

    impl ReadinessCheck for Fixed {
        fn name(&self) -> String {
            "fixed".to_owned()
        }
        fn check(&self) -> BoxFuture<'_, CheckReport> {
            Box::pin(async move {
                CheckReport {
                    ready: self.0,
                    detail: json!(self.0),
                }
            })
        }
    }

    #[tokio::test]
    async fn ready_only_when_started_not_draining_and_checks_pass() {
        let health = Health::new();
        health.add_check(Arc::new(Fixed(true)));
        assert_eq!(health.readiness().await.1["status"], "starting");
        health.mark_started();
        assert!(health.readiness().await.0);
        health.start_draining();
        let (ready, body) = health.readiness().await;
        assert!(!ready);
        assert_eq!(body["status"], "draining");
        let failing = Health::new();
        failing.mark_started();
        failing.add_check(Arc::new(Fixed(false)));
        assert_eq!(failing.readiness().await.1["status"], "not ready");
    }
}
