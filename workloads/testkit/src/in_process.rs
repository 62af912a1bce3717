use crate::stores::{Backend, TestDatabase};
use food_delivery_kit::events::Event;

/// A service started in this process on the in-process bus, driven through its whole HTTP app (the kit's
/// routes and middleware included) and observed through the events it publishes.
pub struct InProcessService {
    /// The service's store, to look inside or to restart the service on.
    pub database: TestDatabase,
    /// The running service (its consumers and relay), stopped by [`Self::stop`].
    pub host: food_delivery_kit::ServiceHost,
    /// The whole HTTP app, the kit's routes and middleware included.
    pub app: axum::Router,
    /// The bus the service publishes to and consumes from.
    pub bus: food_delivery_kit::events::InProcessBus,
}

impl InProcessService {
    /// Starts a service on a fresh database of `backend` and a fresh in-process bus; `start` is the service's
    /// own `start(config, settings, Some(bus))`.
    pub async fn start_with<Start, Started>(backend: Backend, start: Start) -> Self
    where
        Start: FnOnce(food_delivery_kit::KitConfig, food_delivery_kit::events::EventBus) -> Started,
        Started: std::future::Future<
                Output = Result<
                    (food_delivery_kit::ServiceHost, axum::Router),
                    food_delivery_kit::host::HostError,
                >,
            >,
    {
        Self::start_on(TestDatabase::create(backend).await, start).await
    }

    /// Like [`Self::start_with`] on an existing database (a restart).
    pub async fn start_on<Start, Started>(database: TestDatabase, start: Start) -> Self
    where
        Start: FnOnce(food_delivery_kit::KitConfig, food_delivery_kit::events::EventBus) -> Started,
        Started: std::future::Future<
                Output = Result<
                    (food_delivery_kit::ServiceHost, axum::Router),
                    food_delivery_kit::host::HostError,
                >,
            >,
    {
        Self::start_on_bus(
            database,
            food_delivery_kit::events::InProcessBus::new(),
            start,
        )
        .await
    }

    /// Like [`Self::start_on`] on a bus shared with other services (a platform in one process).
    pub async fn start_on_bus<Start, Started>(
        database: TestDatabase,
        bus: food_delivery_kit::events::InProcessBus,
        start: Start,
    ) -> Self
    where
        Start: FnOnce(food_delivery_kit::KitConfig, food_delivery_kit::events::EventBus) -> Started,
        Started: std::future::Future<
                Output = Result<
                    (food_delivery_kit::ServiceHost, axum::Router),
                    food_delivery_kit::host::HostError,
                >,
            >,
    {
        let config = Self::config(&database);
        let (host, api) = start(
            config,
            food_delivery_kit::events::EventBus::InProcess(bus.clone()),
        )
        .await
        .unwrap();
        let app = host.router(api);
        Self {
            database,
            host,
            app,
            bus,
        }
    }

    /// The kit's configuration for a service on `database` (defaults otherwise).
    pub fn config(database: &TestDatabase) -> food_delivery_kit::KitConfig {
        let environment =
            food_delivery_kit::Environment::from_pairs([("DATABASE_URL", database.url.clone())]);
        food_delivery_kit::KitConfig::from_env(&environment).unwrap()
    }

    /// Sends a request; returns the status and the JSON body (`null` when there is none). Every 4xx must be
    /// problem+json.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (axum::http::StatusCode, serde_json::Value) {
        self.call_with_headers(method, path, body, &[]).await
    }

    /// Like [`Self::call`] with extra request headers.
    pub async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (axum::http::StatusCode, serde_json::Value) {
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(
                body.map(|text| axum::body::Body::from(text.to_owned()))
                    .unwrap_or_default(),
            )
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        if status.is_client_error() {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{method} {path}"
            );
        }
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Events published to `topic` (full name) so far, as (type, subject, data).
    pub fn published(&self, topic: &str) -> Vec<(String, String, serde_json::Value)> {
        self.bus
            .messages(topic)
            .iter()
            .map(|message| {
                let event = Event::from_message(message).unwrap();
                (event.event_type, event.subject, event.data)
            })
            .collect()
    }

    /// Publishes an event to `topic` (full name) as another service would.
    pub async fn publish(
        &self,
        topic: &str,
        event_type: &str,
        subject: &str,
        data: serde_json::Value,
    ) {
        let event = Event::new(event_type, "test", subject, &data).unwrap();
        let bus = food_delivery_kit::events::EventBus::InProcess(self.bus.clone());
        assert!(
            bus.publish_all(vec![event.to_message(topic)])
                .await
                .into_iter()
                .all(|result| result.is_ok())
        );
    }

    /// Stops the service and drops its database.
    pub async fn stop(self) {
        self.host.stop().await;
        self.database.remove().await;
    }
}
