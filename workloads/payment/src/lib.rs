//! The payment service: authorizes an order's payment (idempotent per order; the order service calls it
//! synchronously before registering an order) and refunds it when the order is cancelled or rejected.
//! Wiring only; the rules live in `domain`, the HTTP edge in `api`, reactions to events in `policies`.

pub mod api;
pub mod domain;
pub mod events;
pub mod policies;
pub mod store;

use axum::Router;
use food_delivery_contract::Component;
use food_delivery_kit::credential::InternalCredential;
use food_delivery_kit::events::EventBus;
use food_delivery_kit::host::HostError;
use food_delivery_kit::{ConfigError, Environment, KitConfig, ServiceHost, ServiceSpec};
use std::time::Duration;

/// What the service is to the kit.
pub const SPEC: ServiceSpec = ServiceSpec::of(Component::Payment, store::MIGRATIONS);

/// The payment service's own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `PAYMENT_APPROVAL_LIMIT`: larger amounts (minor units) are declined (default 1,000,000).
    pub approval_limit: i64,
    /// `PAYMENT_LATENCY_MS`: a delay added to every new authorization after its hold is recorded, to show what a
    /// slow payment provider does to the platform, lost answers included (default 0).
    pub latency: Duration,
    /// `INTERNAL_TOKEN`: authorizations are accepted only from callers that send it (when set).
    pub credential: InternalCredential,
    /// `PAYMENT_HOLD_EXPIRY_MS`: a hold no order claimed (captured or released) within this is voided (default
    /// one hour, far beyond the order service's own deadline for a waiting order).
    pub hold_expiry: Duration,
}

impl Settings {
    /// Reads the settings.
    pub fn from_env(environment: &Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            approval_limit: environment.number_in_or(
                "PAYMENT_APPROVAL_LIMIT",
                1..=i64::MAX / 2,
                1_000_000,
            )?,
            latency: environment
                .number_in_or("PAYMENT_LATENCY_MS", 0..=60_000, 0)
                .map(Duration::from_millis)?,
            credential: InternalCredential::from_env(environment)?,
            hold_expiry: environment
                .number_in_or(
                    "PAYMENT_HOLD_EXPIRY_MS",
                    1_000..=7 * 24 * 3_600_000,
                    3_600_000,
                )
                .map(Duration::from_millis)?,
        })
    }
}

/// Starts the service's parts (store, bus, relay, the refund consumer) and returns the host with the API.
/// `bus` replaces Kafka (the all-in-one mode passes the in-process bus).
pub async fn start(
    config: KitConfig,
    settings: Settings,
    bus: Option<EventBus>,
) -> Result<(ServiceHost, Router), HostError> {
    let mut host = ServiceHost::start(SPEC, config, bus).await?;
    let outbox = host.outbox();
    host.spawn_consumer(
        SPEC.name,
        policies::SettleWithOrders {
            outbox: outbox.clone(),
        },
    )?;
    let store = host.store()?;
    let (expiring, expiry) = ((store.clone(), outbox.clone()), settings.hold_expiry);
    host.spawn_worker(move |shutdown| {
        policies::expire_unclaimed_holds(expiring.0, expiring.1, expiry, shutdown)
    });
    let api = api::routes(api::PaymentApi {
        store,
        outbox,
        settings,
    });
    Ok((host, api))
}
