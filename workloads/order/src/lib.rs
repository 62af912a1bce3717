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
use food_delivery_contract::Component;
use food_delivery_kit::client::{CallPolicy, ServiceClient};
use food_delivery_kit::credential::InternalCredential;
use food_delivery_kit::events::EventBus;
use food_delivery_kit::host::HostError;
use food_delivery_kit::{ConfigError, Environment, KitConfig, ServiceHost, ServiceSpec};
use std::sync::Arc;

/// How often READY orders an earlier version left without OrderDispatched are looked for.
const DISPATCH_LEFT_READY_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// What the service is to the kit.
pub const SPEC: ServiceSpec = ServiceSpec::of(Component::Order, store::MIGRATIONS);

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

/// `POST /orders` waits for the payment call: a request deadline shorter than that call (and its margin) would cut
/// the call while payment may still act, answer 503 where payment was only slow, and keep the breaker from ever
/// seeing a slow payment.
fn check_request_outlasts_payment(
    config: &KitConfig,
    settings: &Settings,
) -> Result<(), ConfigError> {
    let payment_ms = u64::try_from(settings.payment.timeout.as_millis()).unwrap_or(u64::MAX);
    let needed = food_delivery_contract::deadlines::order_request_minimum_ms(payment_ms);
    let deadline_ms = u64::try_from(config.http_request_timeout.as_millis()).unwrap_or(u64::MAX);
    if deadline_ms < needed {
        return Err(ConfigError::new(
            food_delivery_contract::env::HTTP_REQUEST_TIMEOUT_MS,
            format!(
                "is {deadline_ms} ms, shorter than {} ({payment_ms} ms) plus {} ms: set it to at least {needed}",
                food_delivery_contract::env::PAYMENT_TIMEOUT_MS,
                food_delivery_contract::deadlines::HOP_MARGIN_MS,
            ),
        ));
    }
    Ok(())
}

/// Starts the service's parts (store, bus, relay, the consumer) and returns the host with the API. `bus` replaces
/// Kafka (the all-in-one mode passes the in-process bus).
pub async fn start(
    config: KitConfig,
    settings: Settings,
    bus: Option<EventBus>,
) -> Result<(ServiceHost, Router), HostError> {
    check_request_outlasts_payment(&config, &settings)?;
    let payment = ServiceClient::new(Component::Payment.name(), settings.payment)
        .map_err(|source| HostError::HttpClient {
            target: Component::Payment.name(),
            source,
        })?
        .with_credential(settings.credential);
    let mut host = ServiceHost::start(SPEC, config, bus).await?;
    host.health().add_check(Arc::new(payment.breaker().clone()));
    let outbox = host.outbox();
    host.spawn_consumer(
        SPEC.name,
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
        ordering: policies::ordering::Ordering {
            store,
            outbox,
            payment,
            payment_deadline: deadline,
        },
    });
    Ok((host, api))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)]) -> Result<(), ConfigError> {
        let environment = Environment::from_pairs(
            [("PAYMENT_URL", "http://payment:8080")]
                .iter()
                .chain(pairs)
                .copied(),
        );
        let config = KitConfig::from_env(&environment).unwrap();
        let settings = Settings::from_env(&environment).unwrap();
        check_request_outlasts_payment(&config, &settings)
    }

    #[test]
    fn order_refuses_a_request_deadline_the_payment_call_does_not_fit_in() {
        assert!(check(&[]).is_ok(), "the defaults fit");
        assert!(check(&[("PAYMENT_TIMEOUT_MS", "28000")]).is_ok());
        let error = check(&[("PAYMENT_TIMEOUT_MS", "45000")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("HTTP_REQUEST_TIMEOUT_MS")
                && error.contains("PAYMENT_TIMEOUT_MS")
                && error.contains("47000"),
            "{error}"
        );
        assert!(
            check(&[
                ("PAYMENT_TIMEOUT_MS", "45000"),
                ("HTTP_REQUEST_TIMEOUT_MS", "47000")
            ])
            .is_ok()
        );
    }
}
