//! The one place that knows how each service is started from its environment: `serve` binds it to its own port,
//! `up` puts it behind the in-process gateway.

use axum::Router;
use clap::ValueEnum;
use food_delivery_kit::events::EventBus;
use food_delivery_kit::host::HostError;
use food_delivery_kit::{ConfigError, Environment, KitConfig, ServiceHost};
use std::collections::BTreeMap;

/// The services the platform is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    Gateway,
    Customer,
    Order,
    Payment,
    Kitchen,
    Delivery,
    Mypage,
    Stamp,
}

impl Service {
    /// The name `serve` takes and logs, files and routes use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Customer => "customer",
            Self::Order => "order",
            Self::Payment => "payment",
            Self::Kitchen => "kitchen",
            Self::Delivery => "delivery",
            Self::Mypage => "mypage",
            Self::Stamp => "stamp",
        }
    }
}

/// Why a service could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting is wrong: the message names it.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The service failed (or needs a setting that is missing: `HostError::Missing`).
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Starts `service` with its own settings from `environment`; `bus` replaces Kafka (the all-in-one mode).
pub async fn start(
    service: Service,
    environment: &Environment,
    config: KitConfig,
    bus: Option<EventBus>,
) -> Result<(ServiceHost, Router), ServeError> {
    Ok(match service {
        Service::Gateway => {
            let settings = food_delivery_gateway::Settings::from_env(environment)?;
            food_delivery_gateway::start(config, settings, &BTreeMap::new()).await?
        }
        Service::Payment => {
            let settings = food_delivery_payment::Settings::from_env(environment)?;
            food_delivery_payment::start(config, settings, bus).await?
        }
        Service::Kitchen => {
            let settings = food_delivery_kitchen::Settings::from_env(environment)?;
            food_delivery_kitchen::start(config, settings, bus).await?
        }
        Service::Delivery => {
            let settings = food_delivery_delivery::Settings::from_env(environment)?;
            food_delivery_delivery::start(config, settings, bus).await?
        }
        Service::Order => {
            let settings = food_delivery_order::Settings::from_env(environment)?;
            food_delivery_order::start(config, settings, bus).await?
        }
        Service::Stamp => food_delivery_stamp::start(config, bus).await?,
        Service::Customer => food_delivery_customer::start(config, bus).await?,
        Service::Mypage => food_delivery_mypage::start(config, bus).await?,
    })
}
