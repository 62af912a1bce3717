//! The all-in-one mode's bus through the whole kit: host, outbox, relay, consumer loop and inbox, no broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_testkit as support;

use food_delivery_kit::events::{EventBus, InProcessBus};
use food_delivery_kit::{Environment, KitConfig, ServiceHost, ServiceSpec};
use std::time::Duration;
use support::{Backend, RecordEffects, TestDatabase, eventually, widget_event};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_flow_from_outbox_to_consumer_on_the_in_process_bus() {
    let database = TestDatabase::create(Backend::Sqlite).await;
    let environment = Environment::from_pairs([("DATABASE_URL", database.url.clone())]);
    let config = KitConfig::from_env(&environment).unwrap();
    let bus = InProcessBus::new();
    let spec = ServiceSpec {
        name: "in-process-test",
        migrations: support::EFFECT_MIGRATIONS,
        publishes: Some("widgets"),
        consumes: &["widgets"],
    };
    let mut host = ServiceHost::start(spec, config, Some(EventBus::InProcess(bus.clone())))
        .await
        .unwrap();
    host.spawn_consumer("effects", RecordEffects).unwrap();
    let store = host.store().unwrap();
    let outbox = host.outbox();

    let events: Vec<_> = (0..20).map(|seq| widget_event("order-1", seq)).collect();
    for event in &events {
        let mut transaction = store.begin().await.unwrap();
        outbox
            .append(&mut transaction, "widgets", event)
            .await
            .unwrap();
        transaction.commit().await.unwrap();
        outbox.wake_relay();
    }
    let applied: Vec<i64> = eventually(Duration::from_secs(10), "every event applied", || async {
        let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM effects ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        (seqs.len() == events.len()).then_some(seqs)
    })
    .await;
    assert_eq!(applied, (0..20).collect::<Vec<_>>(), "in order, each once");
    assert_eq!(
        bus.messages("food.widgets").len(),
        20,
        "the relay published each row once"
    );
    host.stop().await;
}
