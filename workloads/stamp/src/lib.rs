//! The stamp service: loyalty stamps per customer, one per item of a paid order, taken back when the order is
//! refunded. Wiring only; the rules live in `domain`, the HTTP edge in `api`, reactions to events in `policies`.

pub mod api;
pub mod domain;
pub mod events;
pub mod policies;
pub mod store;

use axum::Router;
use food_delivery_contract::Component;
use food_delivery_kit::events::EventBus;
use food_delivery_kit::host::HostError;
use food_delivery_kit::{KitConfig, ServiceHost, ServiceSpec};

/// What the service is to the kit.
pub const SPEC: ServiceSpec = ServiceSpec::of(Component::Stamp, store::MIGRATIONS);

/// Starts the service's parts (store, bus, relay, the payment consumer) and returns the host with the API.
/// `bus` replaces Kafka (the all-in-one mode passes the in-process bus).
pub async fn start(
    config: KitConfig,
    bus: Option<EventBus>,
) -> Result<(ServiceHost, Router), HostError> {
    let mut host = ServiceHost::start(SPEC, config, bus).await?;
    let outbox = host.outbox();
    host.spawn_consumer(SPEC.name, policies::StampPayments { outbox })?;
    let api = api::routes(host.store()?);
    Ok((host, api))
}
