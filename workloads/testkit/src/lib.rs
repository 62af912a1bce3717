//! Fixtures for the kit's and the services' integration tests, one module per purpose.
//!
//! The modules marked *kit* run the kit (its stores, its events, a service on it) and exist only with the `kit`
//! feature: they pull in food-delivery-kit, sqlx (and through the kit librdkafka), axum and tower. The operator's
//! tests use the other modules only and build without all of that.
//!
//! Everything is re-exported at the root, so a test names `food_delivery_testkit::eventually`, not its module.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

/// A real broker for tests: the shared one, one of a test's own behind a proxy it can cut, one for benchmarks.
pub mod broker;
/// *kit*: the widgets and effects the kit's own tests write, publish and apply.
#[cfg(feature = "kit")]
pub mod effects;
/// *kit*: a service started in this process, driven through its HTTP app and its in-process bus.
#[cfg(feature = "kit")]
pub mod in_process;
/// What keeps parallel tests apart: ports nobody listens on and names nobody else uses.
pub mod isolation;
/// Benchmark measurements: resident memory and percentiles.
pub mod measurements;
/// The kitchen's menu as the tests read it.
pub mod menu;
/// Waiting for an outcome: polling until a probe finds it, or failing the test.
pub mod polling;
/// *kit*: a fresh database on each store (SQLite and PostgreSQL), and running a test once per store.
#[cfg(feature = "kit")]
pub mod stores;
/// The Python validators `scripts/test.sh` installs, and the assertions that run them on Kubernetes manifests
/// and OpenAPI documents.
pub mod validators;

#[cfg(feature = "kit")]
pub use broker::kafka_config;
pub use broker::{BenchBroker, BrokerBehindProxy, kafka_bootstrap, tansu_binary};
#[cfg(feature = "kit")]
pub use effects::{
    EFFECT_MIGRATIONS, RecordEffects, WIDGET_CHANGED, applied_effects, widget_event, write_widget,
};
#[cfg(feature = "kit")]
pub use in_process::InProcessService;
pub use isolation::{free_port, unique};
pub use measurements::{percentile, resident_kib};
pub use menu::stock_on_menu;
pub use polling::{eventually, eventually_every};
#[cfg(feature = "kit")]
pub use stores::{Backend, TestDatabase, postgres_admin_url};
pub use validators::{
    KUBERNETES_VERSION, assert_valid_kubernetes, assert_valid_openapi, python_tool,
};
