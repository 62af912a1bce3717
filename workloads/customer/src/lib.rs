//! The customer service: register, read, update and delete customers; each change is announced (the read side
//! keeps the customer's history from these events). Wiring only; the rules live in `domain`, the HTTP edge in
//! `api`.

pub mod api;
pub mod domain;
pub mod events;
pub mod store;

use axum::Router;
use food_delivery_contract::Component;
use food_delivery_kit::events::EventBus;
use food_delivery_kit::host::HostError;
use food_delivery_kit::{KitConfig, ServiceHost, ServiceSpec};

/// What the service is to the kit.
pub const SPEC: ServiceSpec = ServiceSpec::of(Component::Customer, store::MIGRATIONS);

/// Starts the service's parts (store, bus, relay) and returns the host with the API. `bus` replaces Kafka (the
/// all-in-one mode passes the in-process bus).
pub async fn start(
    config: KitConfig,
    bus: Option<EventBus>,
) -> Result<(ServiceHost, Router), HostError> {
    let host = ServiceHost::start(SPEC, config, bus).await?;
    let api = api::routes(api::CustomerApi {
        store: host.store()?,
        outbox: host.outbox(),
    });
    Ok((host, api))
}
