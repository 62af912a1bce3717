//! The runtime every food-delivery service stands on, written once: configuration, the HTTP server and its
//! shutdown sequence, health probes, logs with correlation ids, Prometheus metrics, problem+json errors, the
//! store, the event backbone (envelope, Kafka and in-process buses, transactional outbox, idempotent inbox)
//! and the guarded client for synchronous calls. No domain code lives here.

pub mod breaker;
pub mod client;
pub mod config;
pub mod credential;
pub mod events;
pub mod health;
pub mod host;
pub mod http;
pub mod metrics;
pub mod periodic;
pub mod problem;
pub mod store;
pub mod telemetry;

pub use config::{ConfigError, Environment, KitConfig};
pub use host::{ServiceHost, ServiceSpec, shutdown_signal};
pub use problem::{FieldViolation, Problem};
pub use store::{Migration, Store, StoreTransaction};
