//! `food-delivery up`: the whole platform in one process on one port. Every service runs as it does in a
//! cluster (own SQLite file, own consumer groups, outbox and inbox) with the in-process event bus journaled to a
//! file next to the stores, or Kafka with `--kafka`; the gateway routes `/api/...` to them without a network hop.

use crate::services;
use anyhow::Context;
use food_delivery_contract::Component;
use food_delivery_contract::env;
use food_delivery_gateway::domain::{RESOURCE_OWNERS, RouteSpec};
use food_delivery_kit::events::{EventBus, InProcessBus};
use food_delivery_kit::health::{CheckReport, Health, ReadinessCheck};
use food_delivery_kit::{Environment, KitConfig, ServiceHost, Store, shutdown_signal};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What `up` was asked for on the command line.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Address to listen on.
    pub host: IpAddr,
    /// Port to listen on.
    pub port: u16,
    /// Where the SQLite files (and the event journal) live.
    pub data_dir: PathBuf,
    /// Kafka bootstrap servers instead of the in-process bus.
    pub kafka: Option<String>,
}

/// The services behind the gateway, in start order (the kitchen first: it announces the menu the order
/// service prices from).
pub const PLATFORM: [Component; 7] = [
    Component::Kitchen,
    Component::Payment,
    Component::Order,
    Component::Delivery,
    Component::Stamp,
    Component::Customer,
    Component::Mypage,
];

/// How long a request through the gateway may take in the local platform.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings the caller may not override: they are what makes the local platform one platform.
const FIXED: [&str; 6] = [
    env::DATABASE_URL,
    "HTTP_HOST",
    env::HTTP_PORT,
    env::INTERNAL_TOKEN,
    env::KAFKA_BOOTSTRAP_SERVERS,
    env::PAYMENT_URL,
];

/// A fresh internal credential for one run of the platform (two random UUIDs: 244 random bits in 64 digits).
pub fn new_internal_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The environment one service gets: local defaults (auto cooking and riding so orders move on their own, no
/// drain delay since no load balancer is in front), then the caller's environment, then the fixed settings.
pub fn environment_for(
    service: Component,
    options: &UpOptions,
    caller: &Environment,
    payment_address: SocketAddr,
    internal_token: &str,
) -> Environment {
    let mut pairs: BTreeMap<String, String> = [
        (env::LOG_LEVEL, "warn"),
        ("LOG_FORMAT", "text"),
        (env::SHUTDOWN_DRAIN_DELAY_MS, "0"),
        (env::SHUTDOWN_TIMEOUT_MS, "5000"),
        ("KITCHEN_AUTO_COOK", "true"),
        ("KITCHEN_COOK_TIME_MS", "2000"),
        ("DELIVERY_AUTO_RIDE", "true"),
        ("DELIVERY_RIDE_TIME_MS", "3000"),
        (env::PAYMENT_TIMEOUT_MS, "2000"),
        (env::GATEWAY_CORS_ALLOWED_ORIGINS, "*"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    pairs.extend(
        caller
            .variables()
            .filter(|(key, _)| !FIXED.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone())),
    );
    let database = options.data_dir.join(format!("{service}.db"));
    pairs.insert(
        env::DATABASE_URL.to_owned(),
        format!("sqlite://{}", database.display()),
    );
    pairs.insert("HTTP_HOST".to_owned(), options.host.to_string());
    pairs.insert(env::HTTP_PORT.to_owned(), options.port.to_string());
    // The order service's one synchronous call goes to payment's own loopback listener: the gateway does not let
    // anyone write payments (authorizing one is a call between services, never a customer's).
    pairs.insert(
        env::PAYMENT_URL.to_owned(),
        format!("http://{payment_address}"),
    );
    // That listener is open to anything on this machine: authorizing needs the run's credential.
    pairs.insert(env::INTERNAL_TOKEN.to_owned(), internal_token.to_owned());
    if let Some(kafka) = &options.kafka {
        pairs.insert(env::KAFKA_BOOTSTRAP_SERVERS.to_owned(), kafka.clone());
    }
    if !service.stateful() {
        pairs.remove(env::DATABASE_URL);
    }
    Environment::from_pairs(pairs)
}

/// A service's readiness as one detail of the platform's readiness.
struct ServiceReadiness {
    name: &'static str,
    health: Health,
}

impl ReadinessCheck for ServiceReadiness {
    fn name(&self) -> String {
        self.name.to_owned()
    }

    fn check(&self) -> BoxFuture<'_, CheckReport> {
        Box::pin(async move {
            let (ready, detail) = self.health.readiness().await;
            CheckReport { ready, detail }
        })
    }
}

/// Runs the platform until Ctrl-C or SIGTERM.
pub async fn run(options: UpOptions, caller: Environment) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            options.data_dir.display()
        )
    })?;
    // Payment's API for the order service, on a loopback port of its own (see `environment_for`).
    let payment_listener = tokio::net::TcpListener::bind((IpAddr::from([127, 0, 0, 1]), 0))
        .await
        .context("cannot open a loopback port for calls between services")?;
    let payment_address = payment_listener.local_addr()?;
    let internal_token = new_internal_token();
    let gateway_environment = environment_for(
        Component::Gateway,
        &options,
        &caller,
        payment_address,
        &internal_token,
    );
    let gateway_config = KitConfig::from_env(&gateway_environment)?;
    let _logs = food_delivery_kit::telemetry::init_logging(&gateway_config.log)?;
    // Bind first: a taken port is the likeliest failure and should not wait for seven services to start.
    let address = gateway_config.http_address;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("cannot listen on {address} (is something else using it? try --port)")
        })?;
    let journal = match &options.kafka {
        Some(_) => None,
        None => {
            let path = options.data_dir.join("events.db");
            let store = Store::connect(&format!("sqlite://{}", path.display()), 1).await?;
            Some(InProcessBus::durable(store).await?)
        }
    };
    let bus = journal.clone().map(EventBus::InProcess);

    let mut hosts = Vec::with_capacity(PLATFORM.len());
    let mut routers = BTreeMap::new();
    for service in PLATFORM {
        let name = service.name();
        let environment =
            environment_for(service, &options, &caller, payment_address, &internal_token);
        let started = match KitConfig::from_env(&environment) {
            Ok(config) => services::start(service, &environment, config, bus.clone()).await,
            Err(error) => Err(error.into()),
        };
        let (host, api) = match started.with_context(|| format!("starting {name}")) {
            Ok(started) => started,
            Err(error) => {
                futures::future::join_all(
                    hosts
                        .into_iter()
                        .map(|(_, host): (_, ServiceHost)| host.stop()),
                )
                .await;
                return Err(error);
            }
        };
        // Not served on a port of its own: the gateway is its server, so it is started as soon as it is built.
        host.health().mark_started();
        routers.insert(name.to_owned(), host.router(api));
        hosts.push((name, host));
    }
    let routes = RESOURCE_OWNERS
        .iter()
        .map(|(resource, service)| RouteSpec {
            resource: (*resource).to_owned(),
            target: format!("{}{service}", food_delivery_gateway::IN_PROCESS_SCHEME),
            timeout: ROUTE_TIMEOUT,
        })
        .collect();
    let gateway_settings =
        food_delivery_gateway::Settings::with_routes(&gateway_environment, routes)?;
    let (gateway, api) =
        food_delivery_gateway::start(gateway_config, gateway_settings, &routers).await?;
    for (name, host) in &hosts {
        gateway.health().add_check(Arc::new(ServiceReadiness {
            name,
            health: host.health().clone(),
        }));
    }

    let payment_router = routers
        .get(Component::Payment.name())
        .cloned()
        .context("the platform has no payment service")?;
    let internal_calls = tokio::spawn(async move {
        if let Err(error) = axum::serve(payment_listener, payment_router).await {
            tracing::error!(%error, "the loopback listener for calls between services failed");
        }
    });

    let checkpoints = CancellationToken::new();
    let checkpointing = journal.clone().map(|journal| {
        let stop = checkpoints.clone();
        tokio::spawn(async move {
            let mut every_second = tokio::time::interval(Duration::from_secs(1));
            while stop
                .run_until_cancelled(every_second.tick())
                .await
                .is_some()
            {
                if let Err(error) = journal.checkpoint().await {
                    tracing::warn!(%error, "cannot checkpoint consumer positions");
                }
            }
        })
    });

    print_welcome(&options, listener.local_addr()?);
    let served = gateway.serve(listener, api, shutdown_signal()).await;
    futures::future::join_all(hosts.into_iter().map(|(_, host)| host.stop())).await;
    internal_calls.abort();
    checkpoints.cancel();
    if let Some(task) = checkpointing {
        let _ = task.await;
    }
    if let Some(journal) = &journal {
        journal.checkpoint().await?;
    }
    served?;
    println!(
        "food-delivery: stopped; the data stays in {}",
        options.data_dir.display()
    );
    Ok(())
}

fn print_welcome(options: &UpOptions, address: SocketAddr) {
    let shown = if address.ip().is_unspecified() {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), address.port())
    } else {
        address
    };
    let base = format!("http://{shown}");
    let events = match &options.kafka {
        Some(kafka) => format!("Kafka at {kafka}"),
        None => "in-process, journaled".to_owned(),
    };
    println!(
        "food-delivery is up on {base} (data in {}, events {events})

  API      {base}/api/{{customers,orders,payments,menu,tickets,deliveries,mypage,stamps}}
  health   {base}/health/ready     metrics {base}/metrics

Try:
  curl -s {base}/api/menu
  curl -s -X POST {base}/api/orders -H 'content-type: application/json' \\
       -d '{{\"customerId\":\"c-1\",\"items\":[{{\"menuId\":\"bibimbap\",\"qty\":2}}]}}'
  curl -s '{base}/api/mypage/orders?customerId=c-1'

Ctrl-C stops it; the data stays for the next `up`.",
        options.data_dir.display()
    );
}
