//! The my-page service: the read side (CQRS). It consumes every topic and keeps two views, each order's trace
//! and each customer's history, folded from the events alone; it owns no other data and publishes nothing.
//! Wiring only; the folds live in `domain`, the HTTP edge in `api`, the projection in `policies`.
//!
//! Rebuilding: a new, empty store reads every topic from the beginning (see [`store::replay_generation`]), so
//! pointing my page at an empty database, or deleting its SQLite file, rebuilds every view.

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
pub const SPEC: ServiceSpec = ServiceSpec::of(Component::Mypage, store::MIGRATIONS);

/// Starts the service's parts (store, bus, the projection) and returns the host with the API.
/// `bus` replaces Kafka (the all-in-one mode passes the in-process bus).
pub async fn start(
    config: KitConfig,
    bus: Option<EventBus>,
) -> Result<(ServiceHost, Router), HostError> {
    let mut host = ServiceHost::start(SPEC, config, bus).await?;
    let store = host.store()?;
    let generation = store::replay_generation(&store)
        .await
        .map_err(|error| HostError::Store(error.into()))?;
    tracing::info!(%generation, "projecting views under replay generation");
    host.spawn_consumer(
        &format!("{}.{generation}", SPEC.name),
        policies::ProjectViews,
    )?;
    Ok((host, api::routes(store)))
}
