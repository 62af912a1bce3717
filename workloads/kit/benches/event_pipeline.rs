//! Events per second through the whole backbone, and end-to-end latency: a producing service commits a state
//! change and its event (outbox), the relay publishes to the broker, a consuming service applies each event with
//! its inbox mark in one transaction. Two stores, as two services have, on SQLite and on PostgreSQL.
//!
//! Two phases per store: saturation (writers commit as fast as they can: throughput, latency is queueing) and
//! paced (a steady rate well below saturation: the latency a single event sees).
//!
//! `cargo bench -p food-delivery-kit --bench event_pipeline` (starts its own tansu unless
//! `KAFKA_BOOTSTRAP_SERVERS` is set; `BENCH_EVENTS` sets the saturation count, default 5000; `BENCH_WRITERS` the
//! concurrent writers, default 8; `BENCH_PACED_RATE` events per second of the paced phase, default 200, for
//! 10 s; PostgreSQL from `TEST_POSTGRES_URL`). Saturation runs once per consumer batch size (`BENCH_BATCHES`,
//! default `1,64`: 1 is one transaction per event), so their ratio comes from one run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_kit::events::{
    Event, EventBus, EventHandler, HandlerError, KafkaBus, Outbox, OutboxRelay, Topics,
    run_consumer_batched,
};
use food_delivery_kit::{Migration, Store, StoreTransaction};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

// The integration tests' fixtures: databases on both stores.
use food_delivery_testkit as support;
use support::{Backend, TestDatabase, percentile};

const MIGRATIONS: &[Migration] = &[Migration {
    version: 100,
    description: "bench tables",
    sqlite: "CREATE TABLE items (id TEXT PRIMARY KEY, seq BIGINT NOT NULL);
             CREATE TABLE applied (event_id TEXT NOT NULL, seq BIGINT NOT NULL);",
    postgres: "CREATE TABLE items (id TEXT PRIMARY KEY, seq BIGINT NOT NULL);
               CREATE TABLE applied (event_id TEXT NOT NULL, seq BIGINT NOT NULL);",
}];

struct ApplyAndTime {
    latencies: Arc<Mutex<Vec<Duration>>>,
}

impl EventHandler for ApplyAndTime {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO applied (event_id, seq) VALUES ($1, $2)")
            .bind(&event.id)
            .bind(event.data["seq"].as_i64().unwrap_or(-1))
            .execute(&mut **transaction)
            .await?;
        let latency = (chrono::Utc::now() - event.time)
            .to_std()
            .unwrap_or_default();
        self.latencies.lock().unwrap().push(latency);
        Ok(())
    }
}

fn environment_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// How the writers commit.
#[derive(Clone, Copy)]
enum Load {
    /// As fast as they can.
    Saturation,
    /// This many events per second in total.
    Paced(usize),
}

async fn run(
    backend: Backend,
    bootstrap: &str,
    events: usize,
    writers: usize,
    load: Load,
    batch: usize,
) {
    let producer_database = TestDatabase::create(backend).await;
    let consumer_database = TestDatabase::create(backend).await;
    let producer_store = Store::connect(&producer_database.url, 10).await.unwrap();
    let consumer_store = Store::connect(&consumer_database.url, 10).await.unwrap();
    producer_store.migrate(MIGRATIONS).await.unwrap();
    consumer_store.migrate(MIGRATIONS).await.unwrap();
    let config = food_delivery_kit::config::KafkaConfig {
        bootstrap_servers: bootstrap.to_owned(),
        topic_partitions: 3,
        replication_factor: 1,
        fetch_wait_max: std::time::Duration::from_millis(20),
        member_name: None,
    };
    let bus = EventBus::Kafka(KafkaBus::connect(&config, "bench").unwrap());
    let topics = Topics::new(format!(
        "bench{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    bus.ensure_topics(&[topics.name("items")]).await.unwrap();
    let outbox = Outbox::new(topics.clone());
    let stop = CancellationToken::new();
    let relay = OutboxRelay::new(
        "bench",
        producer_store.clone(),
        bus.clone(),
        &outbox,
        Duration::from_millis(100),
    );
    let relay_task = tokio::spawn(relay.run(stop.clone(), Duration::from_secs(5)));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(events)));
    let consumer_task = tokio::spawn(run_consumer_batched(
        consumer_store.clone(),
        bus.clone(),
        None,
        format!("{}.bench", topics.name("consumer")),
        vec![topics.name("items")],
        ApplyAndTime {
            latencies: latencies.clone(),
        },
        stop.clone(),
        batch,
    ));
    // Let the consumer join its group before timing starts.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (store, outbox) = (producer_store.clone(), outbox.clone());
        tasks.push(tokio::spawn(async move {
            let mut ticker = match load {
                Load::Saturation => None,
                Load::Paced(rate) => Some(tokio::time::interval(Duration::from_secs_f64(
                    writers as f64 / rate as f64,
                ))),
            };
            for seq in (writer..events).step_by(writers) {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                let id = format!("item-{seq}");
                let event = Event::new(
                    "bench.item.created.v1",
                    "bench",
                    &id,
                    &serde_json::json!({"seq": seq}),
                )
                .unwrap();
                let mut transaction = store.begin().await.unwrap();
                sqlx::query("INSERT INTO items (id, seq) VALUES ($1, $2)")
                    .bind(&id)
                    .bind(seq as i64)
                    .execute(&mut *transaction)
                    .await
                    .unwrap();
                outbox
                    .append(&mut transaction, "items", &event)
                    .await
                    .unwrap();
                transaction.commit().await.unwrap();
                outbox.wake_relay();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let written = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while latencies.lock().unwrap().len() < events {
        assert!(
            Instant::now() < deadline,
            "the consumer did not apply every event"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    relay_task.await.unwrap();
    consumer_task.await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM applied")
        .fetch_one(consumer_store.pool())
        .await
        .unwrap();
    assert_eq!(applied, events as i64, "every event applied exactly once");
    producer_store.close().await;
    consumer_store.close().await;
    producer_database.remove().await;
    consumer_database.remove().await;

    let mut sorted = latencies.lock().unwrap().clone();
    sorted.sort_unstable();
    let phase = match load {
        Load::Saturation => "saturation".to_owned(),
        Load::Paced(rate) => format!("paced {rate}/s"),
    };
    println!(
        "{:<10} {phase:<13} batch {batch:>3}  events {events:>6}  writers {writers:>2}  commits/s {:>7.0}  end-to-end events/s {:>7.0}  latency p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        format!("{backend:?}"),
        events as f64 / written.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        percentile(&sorted, 0.50).as_secs_f64() * 1000.0,
        percentile(&sorted, 0.99).as_secs_f64() * 1000.0,
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (a test filter) is ignored.
    let events = environment_number("BENCH_EVENTS", 5000);
    let writers = environment_number("BENCH_WRITERS", 8);
    let broker = support::BenchBroker::start();
    let bootstrap = broker.bootstrap.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("event pipeline: outbox -> relay -> tansu ({bootstrap}) -> consumer with inbox");
    let paced_rate = environment_number("BENCH_PACED_RATE", 200);
    let batches: Vec<usize> = std::env::var("BENCH_BATCHES")
        .unwrap_or_else(|_| "1,64".to_owned())
        .split(',')
        .map(|batch| batch.trim().parse().unwrap())
        .collect();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for batch in &batches {
            runtime.block_on(run(
                backend,
                &bootstrap,
                events,
                writers,
                Load::Saturation,
                *batch,
            ));
        }
        runtime.block_on(run(
            backend,
            &bootstrap,
            paced_rate * 10,
            writers,
            Load::Paced(paced_rate),
            food_delivery_kit::events::DEFAULT_BATCH_MAX,
        ));
    }
}
