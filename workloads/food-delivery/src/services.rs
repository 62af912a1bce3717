//! The one place that knows how each service is started from its environment: `serve` binds it to its own port,
//! `up` puts it behind the in-process gateway.

use axum::Router;
use food_delivery_contract::Component;
use food_delivery_kit::events::EventBus;
use food_delivery_kit::host::HostError;
use food_delivery_kit::{ConfigError, Environment, KitConfig, ServiceHost};
use std::collections::BTreeMap;

/// Why a service could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is wrong: the message names it.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The service failed, or its settings do not fit together (`HostError::is_configuration`).
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Starts `service` with its own settings from `environment`; `bus` replaces Kafka (the all-in-one mode).
pub async fn start(
    service: Component,
    environment: &Environment,
    config: KitConfig,
    bus: Option<EventBus>,
) -> Result<(ServiceHost, Router), ServeError> {
    Ok(match service {
        Component::Gateway => {
            let settings = food_delivery_gateway::Settings::from_env(environment)?;
            food_delivery_gateway::start(config, settings, &BTreeMap::new()).await?
        }
        Component::Payment => {
            let settings = food_delivery_payment::Settings::from_env(environment)?;
            food_delivery_payment::start(config, settings, bus).await?
        }
        Component::Kitchen => {
            let settings = food_delivery_kitchen::Settings::from_env(environment)?;
            food_delivery_kitchen::start(config, settings, bus).await?
        }
        Component::Delivery => {
            let settings = food_delivery_delivery::Settings::from_env(environment)?;
            food_delivery_delivery::start(config, settings, bus).await?
        }
        Component::Order => {
            let settings = food_delivery_order::Settings::from_env(environment)?;
            food_delivery_order::start(config, settings, bus).await?
        }
        Component::Stamp => food_delivery_stamp::start(config, bus).await?,
        Component::Customer => food_delivery_customer::start(config, bus).await?,
        Component::Mypage => food_delivery_mypage::start(config, bus).await?,
    })
}
