//! The delivery service: a delivery per cooked order, picked up and completed by a rider (or by auto mode), and
//! cancelled with its order. Wiring only; the rules live in `domain`, the HTTP edge in `api`, reactions to
//! events and the auto mode in `policies`.

pub mod api;
pub mod domain;
pub mod events;
pub mod policies;
pub mod store;

use axum::Router;
use food_delivery_contract::Component;
use food_delivery_kit::events::EventBus;
use food_delivery_kit::host::HostError;
use food_delivery_kit::{ConfigError, Environment, KitConfig, ServiceHost, ServiceSpec};
use std::time::Duration;

/// What the service is to the kit.
pub const SPEC: ServiceSpec = ServiceSpec::of(Component::Delivery, store::MIGRATIONS);

/// The delivery service's own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DELIVERY_AUTO_RIDE`: pick up and complete deliveries without a rider (default false).
    pub auto_ride: bool,
    /// `DELIVERY_RIDE_TIME_MS`: how long auto mode rides (default 3000).
    pub ride_time: Duration,
}

impl Settings {
    /// Reads the settings.
    pub fn from_env(environment: &Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            auto_ride: environment.flag_or("DELIVERY_AUTO_RIDE", false)?,
            ride_time: environment
                .number_in_or("DELIVERY_RIDE_TIME_MS", 0..=3_600_000, 3000)
                .map(Duration::from_millis)?,
        })
    }
}

/// Starts the service's parts (store, bus, relay, the consumer, auto mode) and returns the host with the API.
/// `bus` replaces Kafka (the all-in-one mode passes the in-process bus).
pub async fn start(
    config: KitConfig,
    settings: Settings,
    bus: Option<EventBus>,
) -> Result<(ServiceHost, Router), HostError> {
    let mut host = ServiceHost::start(SPEC, config, bus).await?;
    let store = host.store()?;
    let outbox = host.outbox();
    let policy = policies::DeliveryOrders {
        outbox: outbox.clone(),
    };
    host.spawn_consumer(SPEC.name, policy)?;
    if settings.auto_ride {
        let (store, outbox, ride_time) = (store.clone(), outbox.clone(), settings.ride_time);
        host.spawn_worker(move |shutdown| {
            policies::ride_unattended(store, outbox, ride_time, shutdown)
        });
    }
    let api = api::routes(api::DeliveryApi { store, outbox });
    Ok((host, api))
}
