//! A broker outage while the service keeps writing: nothing is lost, order per key holds, nothing is applied
//! twice. Runs its own broker, so cutting it off does not disturb other tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_testkit as support;

use food_delivery_kit::events::{EventBus, KafkaBus, Outbox, OutboxRelay, Topics, run_consumer};
use food_delivery_kit::{Environment, KitConfig, ServiceHost, ServiceSpec, Store};
use std::collections::HashMap;
use std::time::Duration;
use support::{
    Backend, BrokerBehindProxy, RecordEffects, TestDatabase, eventually, kafka_config, unique,
};
use tokio_util::sync::CancellationToken;

const KEYS: [&str; 4] = ["order-a", "order-b", "order-c", "order-d"];
const WRITES_BEFORE: i64 = 40;
const WRITES_DURING: i64 = 60;
const WRITES_AFTER: i64 = 40;

async fn write(store: &Store, outbox: &Outbox, seq: i64) {
    let subject = KEYS[usize::try_from(seq).unwrap() % KEYS.len()];
    support::write_widget(store, outbox, subject, seq).await;
}

async fn every_event_arrives_in_order_exactly_once_after_a_broker_outage(backend: Backend) {
    // Warnings (relay backing off, consumer errors) appear in the output of a failed run.
    let log = food_delivery_kit::config::LogConfig {
        level: "warn,food_delivery_kit=info".to_owned(),
        format: food_delivery_kit::config::LogFormat::Text,
        file: None,
    };
    let _log = food_delivery_kit::telemetry::init_logging(&log).unwrap();
    let broker = BrokerBehindProxy::start().await;
    let database = TestDatabase::create(backend).await;
    let store = Store::connect(&database.url, 5).await.unwrap();
    store.migrate(support::EFFECT_MIGRATIONS).await.unwrap();
    let bus = EventBus::Kafka(
        KafkaBus::connect(&kafka_config(broker.bootstrap(), 3), "kit-outage").unwrap(),
    );
    let topics = Topics::new(unique("t"));
    let topic = topics.name("widgets");
    bus.ensure_topics(std::slice::from_ref(&topic))
        .await
        .unwrap();
    let outbox = Outbox::new(topics);

    let stop = CancellationToken::new();
    let relay = OutboxRelay::new(
        "kit-outage",
        store.clone(),
        bus.clone(),
        &outbox,
        Duration::from_millis(50),
    );
    let relay_task = tokio::spawn(relay.clone().run(stop.clone(), Duration::from_secs(5)));
    let consumer_task = tokio::spawn(run_consumer(
        store.clone(),
        bus.clone(),
        None,
        unique("g"),
        vec![topic.clone()],
        RecordEffects,
        stop.clone(),
    ));

    let mut seq = 0;
    for _ in 0..WRITES_BEFORE {
        write(&store, &outbox, seq).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let effects = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM effects")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    eventually(
        Duration::from_secs(60),
        "events before the outage",
        || async { (effects().await >= WRITES_BEFORE / 2).then_some(()) },
    )
    .await;

    broker.cut();
    for _ in 0..WRITES_DURING {
        write(&store, &outbox, seq).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        relay.backlog().await.unwrap() > 0,
        "writes during the outage wait in the outbox"
    );
    broker.restore();
    for _ in 0..WRITES_AFTER {
        write(&store, &outbox, seq).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let total = WRITES_BEFORE + WRITES_DURING + WRITES_AFTER;
    eventually(
        Duration::from_secs(120),
        "every event to be applied after the broker came back",
        || async { (effects().await >= total).then_some(()) },
    )
    .await;
    // Let any straggling redelivery arrive before judging "exactly once".
    tokio::time::sleep(Duration::from_secs(2)).await;
    let applied: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT event_id, subject, seq FROM effects ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        i64::try_from(applied.len()).unwrap(),
        total,
        "each event applied exactly once"
    );
    let mut last_seq_per_key: HashMap<String, i64> = HashMap::new();
    for (_, subject, seq) in &applied {
        let previous = last_seq_per_key.insert(subject.clone(), *seq);
        assert!(
            previous.is_none_or(|previous| previous < *seq),
            "{subject}: {seq} applied after {previous:?}"
        );
    }
    let mut seqs: Vec<i64> = applied.iter().map(|(_, _, seq)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..total).collect::<Vec<_>>(), "no event lost");

    stop.cancel();
    relay_task.await.unwrap();
    consumer_task.await.unwrap();
    database.remove().await;
}

food_delivery_testkit::on_both_backends!(
    every_event_arrives_in_order_exactly_once_after_a_broker_outage
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_stays_up_and_reports_the_broker_while_it_is_unreachable() {
    let broker = BrokerBehindProxy::start().await;
    let database = TestDatabase::create(Backend::Sqlite).await;
    let environment = Environment::from_pairs([
        ("DATABASE_URL", database.url.clone()),
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("KAFKA_TOPIC_PREFIX", unique("t")),
    ]);
    let spec = ServiceSpec {
        name: "readiness-test",
        migrations: &[],
        publishes: Some("widgets"),
        consumes: &["widgets"],
    };
    let host = ServiceHost::start(spec, KitConfig::from_env(&environment).unwrap(), None)
        .await
        .unwrap();
    host.health().mark_started();
    let readiness = || async { host.health().readiness().await };
    let (ready, body) = readiness().await;
    assert!(ready, "{body}");
    assert_eq!(body["checks"]["broker"]["status"], "up");
    assert_eq!(body["checks"]["store"]["backend"], "sqlite");

    // The outbox rides out a broker outage, so the API (cancellations included) keeps its traffic; the outage is
    // a detail, not a reason to leave the Service.
    broker.cut();
    let (ready, body) = eventually(Duration::from_secs(30), "the outage to show", || async {
        let (ready, body) = readiness().await;
        (body["checks"]["broker"]["status"] == "down").then_some((ready, body))
    })
    .await;
    assert!(
        ready,
        "a broker outage took the service out of its Service: {body}"
    );
    assert_eq!(body["checks"]["store"]["status"], "up", "{body}");

    broker.restore();
    eventually(
        Duration::from_secs(30),
        "the broker to show up again",
        || async {
            let (ready, body) = readiness().await;
            (ready && body["checks"]["broker"]["status"] == "up").then_some(())
        },
    )
    .await;
    host.stop().await;
}
