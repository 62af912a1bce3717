//! The order service: places an order only once payment has authorized it (the platform's one synchronous call,
//! guarded by a deadline, a bulkhead and a circuit breaker), follows it through the kitchen and the delivery,
//! and cancels it until delivery starts. Wiring only; the rules live in `domain`, the HTTP edge in `api`,
//! reactions to events in `policies`.

pub mod api;
pub mod domain;
pub mod events;
pub mod policies;
pub mod store;

use axum::Router;
use food_delivery_kit::client::{CallPolicy, ServiceClient};
use food_delivery_kit::credential::InternalCredential;
use food_delivery_kit::events::EventBus;
use food_delivery_kit::host::HostError;
use food_delivery_kit::{ConfigError, Environment, KitConfig, ServiceHost, ServiceSpec};
use std::sync::Arc;

/// How often READY orders an earlier version left without OrderDispatched are looked for.
const DISPATCH_LEFT_READY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What the service is to the kit.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "order",
    migrations: store::MIGRATIONS,
    topics: &[
        events::ORDERS_TOPIC,
        events::KITCHEN_TOPIC,
        events::DELIVERIES_TOPIC,
        events::PAYMENTS_TOPIC,
    ],
};

/// The order service's own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PAYMENT_URL`, `PAYMENT_TIMEOUT_MS`, `PAYMENT_MAX_CONCURRENT`, `PAYMENT_BREAKER_*`: how to call payment.
    pub payment: CallPolicy,
    /// `PAYMENT_PENDING_DEADLINE_MS` (default 30000, or twice `PAYMENT_TIMEOUT_MS` plus 5 s when that is longer):
    /// how long an order waits for its payment before it is given up (rejected, its hold voided). Long against the
    /// payment call's own deadline, so a client retrying with the same Idempotency-Key after a 503 finds its order
    /// still waiting.
    pub payment_deadline: std::time::Duration,
    /// `INTERNAL_TOKEN`: the credential sent with the call to payment.
    pub credential: InternalCredential,
}

impl Settings {
    /// Reads the settings.
    pub fn from_env(environment: &Environment) -> Result<Self, ConfigError> {
        let payment = CallPolicy::from_env(environment, "PAYMENT")?;
        let shortest = payment.timeout * 2;
        let payment_deadline = environment.millis_or(
            "PAYMENT_PENDING_DEADLINE_MS",
            std::time::Duration::from_secs(30).max(shortest + std::time::Duration::from_secs(5)),
        )?;
        if payment_deadline < shortest {
            return Err(ConfigError::new(
                "PAYMENT_PENDING_DEADLINE_MS",
                format!(
                    "must be at least twice PAYMENT_TIMEOUT_MS ({} ms), or orders are given up while payment still answers",
                    payment.timeout.as_millis()
                ),
            ));
        }
        Ok(Self {
            payment,
            payment_deadline,
            credential: InternalCredential::from_env(environment)?,
        })
    }
}

/// Starts the service's parts (store, bus, relay, the consumer) and returns the host with the API. `bus` replaces
/// Kafka (the all-in-one mode passes the in-process bus).
pub async fn start(
    config: KitConfig,
    settings: Settings,
    bus: Option<EventBus>,
) -> Result<(ServiceHost, Router), HostError> {
    let payment = ServiceClient::new("payment", settings.payment)
        .map_err(|error| HostError::Missing(format!("cannot build the payment client: {error}")))?
        .with_credential(settings.credential);
    let mut host = ServiceHost::start(SPEC, config, bus).await?;
    host.health().add_check(Arc::new(payment.breaker().clone()));
    let outbox = host.outbox();
    let topics = [
        events::KITCHEN_TOPIC,
        events::DELIVERIES_TOPIC,
        events::PAYMENTS_TOPIC,
    ];
    host.spawn_consumer(
        SPEC.name,
        &topics,
        policies::FollowOrders {
            outbox: outbox.clone(),
        },
    )?;
    let store = host.store()?;
    let deadline = settings.payment_deadline;
    let settling = (store.clone(), outbox.clone());
    host.spawn_worker(move |shutdown| {
        policies::give_up_unpaid_orders(settling.0, settling.1, deadline, shutdown)
    });
    let dispatching = (store.clone(), outbox.clone());
    host.spawn_worker(move |shutdown| {
        policies::dispatch_orders_left_ready(
            dispatching.0,
            dispatching.1,
            DISPATCH_LEFT_READY_EVERY,
            shutdown,
        )
    });
    let api = api::routes(api::OrderApi {
        store,
        outbox,
        payment,
        payment_deadline: deadline,
    });
    Ok((host, api))
}
