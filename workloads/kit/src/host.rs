//! The host of one service: startup (store, migrations, topics, relay), the HTTP server with the kit's routes
//! and middleware, and the shutdown sequence Kubernetes needs for zero-downtime rollouts:
//!
//! 1. SIGTERM: readiness answers 503 at once, so endpoints stop routing new requests here;
//! 2. the drain delay passes while requests already routed here are still served;
//! 3. the listener closes and in-flight requests finish (bounded by the shutdown timeout);
//! 4. consumers finish the event in hand and leave their groups (partitions move at once);
//! 5. the outbox relay publishes what it can (bounded), then the store closes and the process exits 0.

use crate::config::KitConfig;
use crate::events::{
    EventBus, EventHandler, KafkaBus, Outbox, OutboxRelay, Topics, run_consumer_batched,
};
use crate::health::{self, BusCheck, ConsumersCheck, Health, StoreCheck};
use crate::store::{Migration, Store, StoreError};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use food_delivery_contract::Component;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long startup waits for the broker to create topics before giving up (Kubernetes restarts it).
const STARTUP_BROKER_WAIT: Duration = Duration::from_secs(60);

/// What a service declares about itself.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Its name: logs, metrics, consumer groups, event source.
    pub name: &'static str,
    /// Its schema, applied after the kit's own tables.
    pub migrations: &'static [Migration],
    /// The topic (without prefix) it publishes to, if any; created at startup when missing.
    pub publishes: Option<&'static str>,
    /// The topics (without prefix) its consumer reads; created at startup when missing.
    pub consumes: &'static [&'static str],
}

impl ServiceSpec {
    /// The spec of one of the platform's components, with its schema.
    pub const fn of(component: Component, migrations: &'static [Migration]) -> Self {
        Self {
            name: component.name(),
            migrations,
            publishes: component.publishes(),
            consumes: component.consumes(),
        }
    }

    /// Every topic it touches (without prefix), each once.
    pub fn topics(&self) -> Vec<&'static str> {
        let mut topics: Vec<&'static str> = self.publishes.into_iter().collect();
        for topic in self.consumes {
            if !topics.contains(topic) {
                topics.push(topic);
            }
        }
        topics
    }
}

/// While draining, every answer asks the client to close its connection, so no keep-alive connection to this
/// instance is left in a caller's pool for a request to race the listener's closing (which would fail a request
/// that a new connection, routed to another instance, serves).
async fn close_connections_while_draining(
    axum::extract::State(health): axum::extract::State<Health>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    if health.is_draining() {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Why a service could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The store failed to open or migrate.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed.
    #[error("event bus: {0}")]
    Bus(#[from] crate::events::BusError),
    /// An event the service records at startup (an announcement) could not be recorded.
    #[error("recording an event: {0}")]
    Outbox(#[from] crate::events::OutboxError),
    /// The listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("http server: {0}")]
    Serve(std::io::Error),
    /// The service needs a setting the configuration does not provide.
    #[error("{service} needs {setting}")]
    MissingSetting {
        /// The service.
        service: &'static str,
        /// The environment variable it needs.
        setting: &'static str,
    },
    /// A route names an in-process service this process does not run (the all-in-one mode's wiring).
    #[error("no in-process service {service} for /api/{resource}")]
    NoInProcessService {
        /// The service the route names.
        service: String,
        /// The route's resource.
        resource: String,
    },
    /// An HTTP client (to a dependency) could not be built: the TLS backend or the system's settings failed.
    #[error("cannot build the HTTP client for {target}: {source}")]
    HttpClient {
        /// What the client calls.
        target: &'static str,
        /// Why.
        source: reqwest::Error,
    },
    /// Settings that are valid one by one but do not fit together.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl HostError {
    /// Whether the configuration is at fault (the process exits with the configuration error code, and a
    /// restart without a change cannot help), rather than a dependency or the machine.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::MissingSetting { .. } | Self::NoInProcessService { .. } | Self::Config(_)
        )
    }
}

/// A running service's shared parts.
#[derive(Debug)]
pub struct ServiceHost {
    spec: ServiceSpec,
    config: KitConfig,
    health: Health,
    store: Option<Store>,
    bus: Option<EventBus>,
    outbox: Outbox,
    consumers_stop: CancellationToken,
    consumers: Vec<JoinHandle<()>>,
    consumers_check: Option<ConsumersCheck>,
    relay_stop: CancellationToken,
    relay: Option<JoinHandle<()>>,
    background_stop: CancellationToken,
}

impl ServiceHost {
    /// Opens and migrates the store, connects the bus (`bus`, or Kafka when configured), creates topics and
    /// starts the outbox relay.
    pub async fn start(
        spec: ServiceSpec,
        config: KitConfig,
        bus: Option<EventBus>,
    ) -> Result<Self, HostError> {
        // A service with a schema needs its store; say so before any connection is tried.
        if !spec.migrations.is_empty() && config.database_url.is_none() {
            return Err(HostError::MissingSetting {
                service: spec.name,
                setting: food_delivery_contract::env::DATABASE_URL,
            });
        }
        let health = Health::new();
        let topics = Topics::new(config.topic_prefix.clone());
        let store = match &config.database_url {
            Some(url) => {
                let schema = config
                    .database_schema
                    .clone()
                    .unwrap_or_else(|| crate::store::schema_name_for(spec.name));
                let store =
                    Store::connect_in_schema(url, config.database_max_connections, Some(&schema))
                        .await?;
                store.migrate(spec.migrations).await?;
                health.add_check(Arc::new(StoreCheck(store.clone())));
                tracing::info!(backend = ?store.backend(), "store ready");
                Some(store)
            }
            None => None,
        };
        let bus = match (bus, &config.kafka) {
            // A service without topics (the gateway) neither needs the broker nor depends on it for readiness.
            _ if spec.topics().is_empty() => None,
            (Some(bus), _) => Some(bus),
            (None, Some(kafka)) => Some(EventBus::Kafka(KafkaBus::connect(kafka, spec.name)?)),
            (None, None) => None,
        };
        if let Some(bus) = &bus {
            ensure_topics_patiently(bus, &topics.names(&spec.topics())).await?;
            health.add_check(Arc::new(BusCheck {
                bus: bus.clone(),
                required: config.readiness_requires_broker,
            }));
        }
        let outbox = Outbox::new(topics).publishing(spec.name, spec.publishes);
        let relay_stop = CancellationToken::new();
        let relay = match (&store, &bus) {
            (Some(store), Some(bus)) => {
                let relay = OutboxRelay::new(
                    spec.name,
                    store.clone(),
                    bus.clone(),
                    &outbox,
                    config.outbox_poll_interval,
                );
                Some(tokio::spawn(
                    relay.run(relay_stop.clone(), config.shutdown_timeout),
                ))
            }
            _ => None,
        };
        let background_stop = CancellationToken::new();
        crate::metrics::spawn_upkeep(background_stop.clone());
        Ok(Self {
            spec,
            config,
            health,
            store,
            bus,
            outbox,
            consumers_stop: CancellationToken::new(),
            consumers: Vec::new(),
            consumers_check: None,
            relay_stop,
            relay,
            background_stop,
        })
    }

    /// The service's store; an error names `DATABASE_URL` when it is not configured.
    pub fn store(&self) -> Result<Store, HostError> {
        self.store.clone().ok_or(HostError::MissingSetting {
            service: self.spec.name,
            setting: food_delivery_contract::env::DATABASE_URL,
        })
    }

    /// Where the service appends events.
    pub fn outbox(&self) -> Outbox {
        self.outbox.clone()
    }

    /// The health shared with the probes; add readiness checks here (breakers, say).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The settings the service was started with.
    pub fn config(&self) -> &KitConfig {
        &self.config
    }

    /// Starts the consumer of the spec's `consumes` topics as group `<prefix>.<group>`, applying events with
    /// `handler`.
    pub fn spawn_consumer<H: EventHandler>(
        &mut self,
        group: &str,
        handler: H,
    ) -> Result<(), HostError> {
        let store = self.store()?;
        let bus = self.bus.clone().ok_or(HostError::MissingSetting {
            service: self.spec.name,
            setting: food_delivery_contract::env::KAFKA_BOOTSTRAP_SERVERS,
        })?;
        let names = self.outbox.topics();
        let check = self.consumers_check.get_or_insert_with(|| {
            let check = ConsumersCheck::default();
            self.health.add_check(Arc::new(check.clone()));
            check
        });
        check.watch(names.name(group));
        let task = run_consumer_batched(
            store,
            bus,
            Some(self.outbox.clone()),
            names.name(group),
            names.names(self.spec.consumes),
            handler,
            self.consumers_stop.clone(),
            self.config.consumer_batch_max,
        );
        self.consumers.push(tokio::spawn(task));
        Ok(())
    }

    /// Runs a background task of the service (a timer-driven policy, say) until shutdown; it is stopped with
    /// the consumers, after the listener has closed.
    pub fn spawn_worker<F, Work>(&mut self, work: F)
    where
        F: FnOnce(CancellationToken) -> Work,
        Work: Future<Output = ()> + Send + 'static,
    {
        self.consumers
            .push(tokio::spawn(work(self.consumers_stop.clone())));
    }

    /// The service's API with the kit's routes and middleware around it: probes, `/metrics`, correlation ids,
    /// HTTP metrics, the body limit, the request deadline and problem+json fallbacks.
    pub fn router(&self, api: Router) -> Router {
        let service: &'static str = self.spec.name;
        api.merge(health::routes(self.health.clone()))
            .route(
                crate::metrics::METRICS_PATH,
                axum::routing::get(crate::metrics::metrics_endpoint),
            )
            .fallback(crate::http::no_such_route)
            .method_not_allowed_fallback(crate::http::method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(
                self.config.http_request_timeout,
                crate::http::within_deadline,
            ))
            .layer(DefaultBodyLimit::max(self.config.http_body_limit))
            .layer(axum::middleware::from_fn_with_state(
                service,
                crate::metrics::record_http,
            ))
            .layer(axum::middleware::from_fn(crate::telemetry::correlate))
            .layer(axum::middleware::from_fn_with_state(
                self.health.clone(),
                close_connections_while_draining,
            ))
    }

    /// Binds the configured address.
    pub async fn bind(&self) -> Result<TcpListener, HostError> {
        let address = self.config.http_address;
        TcpListener::bind(address)
            .await
            .map_err(|source| HostError::Bind { address, source })
    }

    /// Binds the configured address and serves `api` until `shutdown` (what `food-delivery serve` does).
    pub async fn bind_and_serve(
        self,
        api: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), HostError> {
        let listener = self.bind().await?;
        self.serve(listener, api, shutdown).await
    }

    /// Serves `api` on `listener` until `shutdown` resolves, then runs the shutdown sequence.
    pub async fn serve(
        self,
        listener: TcpListener,
        api: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), HostError> {
        let app = self.router(api);
        let address = listener.local_addr().map_err(HostError::Serve)?;
        self.health.mark_started();
        tracing::info!(service = self.spec.name, %address, "listening");
        let listener_closing = CancellationToken::new();
        let health = self.health.clone();
        let drain_delay = self.config.drain_delay;
        let closing = listener_closing.clone();
        let graceful = async move {
            shutdown.await;
            health.start_draining();
            tracing::info!(
                drain_delay_ms = drain_delay.as_millis() as u64,
                "shutdown: readiness is 503, draining"
            );
            tokio::time::sleep(drain_delay).await;
            tracing::info!("shutdown: closing the listener, finishing in-flight requests");
            closing.cancel();
        };
        let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
        let in_flight_bound = async {
            listener_closing.cancelled().await;
            tokio::time::sleep(self.config.shutdown_timeout).await;
        };
        let served = tokio::select! {
            served = server => served.map_err(HostError::Serve),
            () = in_flight_bound => {
                tracing::warn!("shutdown: in-flight requests did not finish in time");
                Ok(())
            }
        };
        // Consumers and the relay stop cleanly even when the server failed.
        self.stop().await;
        served
    }

    /// Steps 4 and 5 of the shutdown sequence; also for hosts that never served.
    pub async fn stop(self) {
        let timeout = self.config.shutdown_timeout;
        self.consumers_stop.cancel();
        if tokio::time::timeout(timeout, futures::future::join_all(self.consumers))
            .await
            .is_err()
        {
            tracing::warn!("shutdown: consumers did not stop in time");
        }
        self.relay_stop.cancel();
        if let Some(relay) = self.relay {
            // The relay bounds its own flush by the same timeout; the margin covers one publish round.
            let margin = Duration::from_secs(
                u64::try_from(food_delivery_contract::RELAY_STOP_MARGIN_SECONDS).unwrap_or(2),
            );
            if tokio::time::timeout(timeout + margin, relay).await.is_err() {
                tracing::warn!("shutdown: outbox relay did not stop in time");
            }
        }
        self.background_stop.cancel();
        if let Some(store) = self.store {
            store.close().await;
        }
        tracing::info!(service = self.spec.name, "shutdown complete");
    }
}

async fn ensure_topics_patiently(bus: &EventBus, topics: &[String]) -> Result<(), HostError> {
    let give_up = tokio::time::Instant::now() + STARTUP_BROKER_WAIT;
    let mut pause = Duration::from_millis(200);
    loop {
        match bus.ensure_topics(topics).await {
            Ok(()) => return Ok(()),
            Err(error) if tokio::time::Instant::now() + pause < give_up => {
                tracing::warn!(%error, "cannot create topics yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C (a terminal).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("interrupt received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
