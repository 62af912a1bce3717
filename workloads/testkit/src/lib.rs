//! Fixtures for the kit's and the services' integration tests: real stores (SQLite and PostgreSQL), the real
//! broker, a private broker a test may cut off, and polling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use food_delivery_kit::config::KafkaConfig;
use food_delivery_kit::events::{Event, EventHandler, HandlerError, PoisonReason};
use food_delivery_kit::{Migration, StoreTransaction};
use sqlx::Connection;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared broker started by `scripts/test.sh`.
pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect(
        "KAFKA_BOOTSTRAP_SERVERS is not set: these tests need the real broker; run them with scripts/test.sh",
    )
}

/// Kafka settings for tests, with topics of `topic_partitions` partitions.
pub fn kafka_config(bootstrap_servers: String, topic_partitions: i32) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers,
        topic_partitions,
        replication_factor: 1,
        fetch_wait_max: std::time::Duration::from_millis(20),
        member_name: None,
    }
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database.
pub struct TestDatabase {
    pub url: String,
    _directory: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

/// The PostgreSQL server tests use (trust auth on these machines).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        // Tests open their own connections to look inside a service's store.
        sqlx::any::install_default_drivers();
        match backend {
            Backend::Sqlite => {
                let directory = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/service.db", directory.path().display());
                Self {
                    url,
                    _directory: Some(directory),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let admin_url = postgres_admin_url();
                let name = unique("kit_test_");
                let mut admin = sqlx::AnyConnection::connect(&admin_url)
                    .await
                    .expect("PostgreSQL must run at 127.0.0.1:5432 (or set TEST_POSTGRES_URL)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.ok();
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base.to_owned())
                    .unwrap();
                Self {
                    url: format!("{base}/{name}"),
                    _directory: None,
                    postgres: Some((admin_url, name)),
                }
            }
        }
    }

    /// Turns a PostgreSQL database read-only (or back), as a failover to a standby or a full disk does: every
    /// session is ended, and the sessions that reconnect can read but every write fails (SQLSTATE 25006).
    pub async fn set_read_only(&self, read_only: bool) {
        let (admin_url, name) = self
            .postgres
            .as_ref()
            .expect("only a PostgreSQL database can be turned read-only");
        let mut admin = sqlx::AnyConnection::connect(admin_url).await.unwrap();
        let setting = if read_only { "on" } else { "off" };
        sqlx::query(&format!(
            "ALTER DATABASE {name} SET default_transaction_read_only = {setting}"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        sqlx::query(&format!(
            "SELECT pg_terminate_backend(pid)::TEXT FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.ok();
    }

    /// Drops a PostgreSQL database (best effort; `scripts/test.sh` also removes leftovers).
    pub async fn remove(self) {
        if let Some((admin_url, name)) = &self.postgres
            && let Ok(mut admin) = sqlx::AnyConnection::connect(admin_url).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }
}

/// Runs each named `async fn(Backend)` test once per store, as `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}

/// The effects table tests apply events to: deliberately without a unique key, so a double application shows.
pub const EFFECT_MIGRATIONS: &[Migration] = &[Migration {
    version: 100,
    description: "test widgets and effects",
    sqlite: "CREATE TABLE widgets (id TEXT PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE effects (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, subject TEXT NOT NULL, seq BIGINT NOT NULL);",
    postgres: "CREATE TABLE widgets (id TEXT PRIMARY KEY, name TEXT NOT NULL);
               CREATE TABLE effects (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id TEXT NOT NULL, subject TEXT NOT NULL, seq BIGINT NOT NULL);",
}];

/// The only event type tests publish.
pub const WIDGET_CHANGED: &str = "test.widget.changed.v1";

/// A widget event with a per-subject sequence number.
pub fn widget_event(subject: &str, seq: i64) -> Event {
    Event::new(
        WIDGET_CHANGED,
        "kit-test",
        subject,
        &serde_json::json!({"seq": seq}),
    )
    .unwrap()
}

/// A service's write: a widget row and its event on the `widgets` topic, in one transaction, then the relay is
/// woken.
pub async fn write_widget(
    store: &food_delivery_kit::Store,
    outbox: &food_delivery_kit::events::Outbox,
    subject: &str,
    seq: i64,
) {
    let mut transaction = store.begin().await.unwrap();
    sqlx::query("INSERT INTO widgets (id, name) VALUES ($1, $2)")
        .bind(format!("{subject}-{seq}"))
        .bind(subject)
        .execute(&mut *transaction)
        .await
        .unwrap();
    outbox
        .append(&mut transaction, "widgets", &widget_event(subject, seq))
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    outbox.wake_relay();
}

/// The effects `RecordEffects` applied, in the order they were applied: (subject, seq).
pub async fn applied_effects(store: &food_delivery_kit::Store) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT subject, seq FROM effects ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

/// Records each applied event in `effects`; unknown types are poison.
pub struct RecordEffects;

impl EventHandler for RecordEffects {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        if event.event_type != WIDGET_CHANGED {
            return Err(PoisonReason::UnknownType(event.event_type.clone()).into());
        }
        let seq = event.data["seq"]
            .as_i64()
            .ok_or_else(|| PoisonReason::BadData {
                event_type: event.event_type.clone(),
                problem: "seq must be an integer".to_owned(),
            })?;
        sqlx::query("INSERT INTO effects (event_id, subject, seq) VALUES ($1, $2, $3)")
            .bind(&event.id)
            .bind(&event.subject)
            .bind(seq)
            .execute(&mut **transaction)
            .await?;
        Ok(())
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, failing the test with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where [`free_port`] looks: below Linux's ephemeral range (32768-60999), which the kernel hands out as the local
/// port of every outgoing connection. A port picked from that range (what binding port 0 gives) can be taken by any
/// connection to PostgreSQL or the broker before the service started on it binds it: a process fleet then failed
/// with "Address already in use" now and then.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port nobody listens on right now, outside the ephemeral range. Each test process walks the range from its own
/// starting point (from its pid), so parallel test processes rarely try the same port, and the bind check skips
/// the ones in use.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        // 13 and the span have no common factor: the walk visits every port once.
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let offset = u16::try_from((start + step.wrapping_mul(13)) % span).unwrap();
        let port = TEST_PORTS.start + offset;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?}");
}

/// The broker binary: `TANSU_BIN`, or `tansu` on the PATH.
pub fn tansu_binary() -> PathBuf {
    std::env::var_os("TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("tansu"))
}

/// A broker of the test's own behind a proxy the test can cut. Clients only know the proxy's address, so
/// cutting it is what a broker outage looks like to them: every connection drops and new ones are refused.
///
/// The broker itself keeps running: tansu 0.6's durable (libsql) storage panics when a consumer group from
/// before a restart heartbeats again ("more or less than one row"), so a kill-and-restart cannot be tested on it.
pub struct BrokerBehindProxy {
    proxy_port: u16,
    reachable: tokio::sync::watch::Sender<bool>,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl BrokerBehindProxy {
    pub async fn start() -> Self {
        let broker_port = free_port();
        let proxy_port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(tansu_binary())
            .arg("broker")
            .args(["--listener-url", &format!("tcp://127.0.0.1:{broker_port}")])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{proxy_port}"),
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("the tansu broker must be installed (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", broker_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private broker did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (reachable, watcher) = tokio::sync::watch::channel(true);
        tokio::spawn(run_proxy(proxy_port, broker_port, watcher));
        let proxy = Self {
            proxy_port,
            reachable,
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", proxy.proxy_port)).is_err() {
            assert!(Instant::now() < deadline, "proxy did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.proxy_port)
    }

    /// The broker becomes unreachable: open connections drop, new ones are refused.
    pub fn cut(&self) {
        self.reachable.send_replace(false);
    }

    /// The broker is reachable again.
    pub fn restore(&self) {
        self.reachable.send_replace(true);
    }

    /// The broker process stops (SIGSTOP): connections stay open but nothing answers, as with a broker stuck in a
    /// long pause or behind a partition that drops packets.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// The paused broker runs again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for BrokerBehindProxy {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            eprintln!("--- private broker log: errors and panics ---");
            for line in log
                .lines()
                .filter(|line| line.contains("ERROR") || line.contains("panicked"))
                .take(40)
            {
                eprintln!("{line}");
            }
        }
    }
}

async fn run_proxy(
    proxy_port: u16,
    broker_port: u16,
    mut reachable: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        // While cut, nothing listens on the port, so connecting is refused as with a stopped broker.
        while !*reachable.borrow_and_update() {
            if reachable.changed().await.is_err() {
                return;
            }
        }
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", proxy_port)).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        loop {
            tokio::select! {
                changed = reachable.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !*reachable.borrow() {
                        break;
                    }
                }
                accepted = listener.accept() => {
                    let Ok((mut client, _)) = accepted else { continue };
                    let mut cut = reachable.clone();
                    tokio::spawn(async move {
                        let Ok(mut broker) = tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => {}
                            _ = cut.wait_for(|reachable| !*reachable) => {}
                        }
                    });
                }
            }
        }
    }
}

/// The Python tools `scripts/test.sh` installs: `FOOD_DELIVERY_VENV`.
pub fn python_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("FOOD_DELIVERY_VENV")
        .expect("FOOD_DELIVERY_VENV is not set: these tests use the Python tools scripts/test.sh installs; run them with it");
    PathBuf::from(venv).join("bin").join(name)
}

/// The Kubernetes version manifests are validated against (the operator's `k8s-openapi` feature).
pub const KUBERNETES_VERSION: &str = "1.33.0";

/// Fails the test unless every object in `yaml` (one or more documents) is valid against the Kubernetes
/// OpenAPI schema of [`KUBERNETES_VERSION`], strictly (unknown fields are errors), by `kubernetes-validate`.
pub fn assert_valid_kubernetes(yaml: &str) {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let output = Command::new(python_tool("kubernetes-validate"))
        .args(["--strict", "--no-warn", "-k", KUBERNETES_VERSION])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubernetes-validate refused:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Fails the test unless `document` is a valid OpenAPI document (checked by `openapi-spec-validator`).
pub fn assert_valid_openapi(document: &serde_json::Value) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(document).unwrap()).unwrap();
    let output = Command::new(python_tool("openapi-spec-validator"))
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "invalid OpenAPI document:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A service started in this process on the in-process bus, driven through its whole HTTP app (the kit's
/// routes and middleware included) and observed through the events it publishes.
pub struct InProcessService {
    pub database: TestDatabase,
    pub host: food_delivery_kit::ServiceHost,
    pub app: axum::Router,
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

/// A broker for benchmarks: the one `KAFKA_BOOTSTRAP_SERVERS` names, or a tansu of its own (in memory) that is
/// stopped when this is dropped.
pub struct BenchBroker {
    pub bootstrap: String,
    child: Option<Child>,
}

impl BenchBroker {
    pub fn start() -> Self {
        if let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            return Self {
                bootstrap,
                child: None,
            };
        }
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu must be installed (scripts/test.sh installs it)");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            bootstrap: format!("127.0.0.1:{port}"),
            child: Some(child),
        }
    }
}

impl Drop for BenchBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// Resident memory (VmRSS) of process `pid` in KiB, for benchmarks; `std::process::id()` for this one.
pub fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The value at `fraction` (0.5 for the median) of sorted durations.
pub fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}
