//! Several replicas on one PostgreSQL database: only one relays at a time (advisory lock), so rows are not
//! published twice or out of order by racing relays, and another takes over when the relaying one stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_testkit as support;

use food_delivery_kit::Store;
use food_delivery_kit::events::{EventBus, InProcessBus, Outbox, OutboxRelay, Topics};
use std::time::Duration;
use support::{Backend, TestDatabase, eventually, widget_event};
use tokio_util::sync::CancellationToken;

async fn write(store: &Store, outbox: &Outbox, seqs: std::ops::Range<i64>) {
    for seq in seqs {
        let mut transaction = store.begin().await.unwrap();
        outbox
            .append(&mut transaction, "widgets", &widget_event("order-1", seq))
            .await
            .unwrap();
        transaction.commit().await.unwrap();
        outbox.wake_relay();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_relays_at_a_time_and_another_takes_over() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let bus = InProcessBus::new();
    let topics = Topics::new("food");
    EventBus::InProcess(bus.clone())
        .ensure_topics(&[topics.name("widgets")])
        .await
        .unwrap();
    let outbox = Outbox::new(topics.clone());
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = Store::connect(&database.url, 5).await.unwrap();
        store.migrate(support::EFFECT_MIGRATIONS).await.unwrap();
        let relay = OutboxRelay::new(
            "leadership-test",
            store.clone(),
            EventBus::InProcess(bus.clone()),
            &outbox,
            Duration::from_millis(20),
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(relay.clone().run(stop.clone(), Duration::from_secs(2)));
        replicas.push((store, relay, stop, task));
    }
    let published = || bus.messages("food.widgets");

    write(&replicas[0].0, &outbox, 0..100).await;
    write(&replicas[1].0, &outbox, 100..200).await;
    eventually(Duration::from_secs(20), "every row published", || async {
        (replicas[0].1.backlog().await.unwrap() == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        published().len(),
        200,
        "each row published once, not once per replica"
    );

    // Whichever replica leads, stopping both in turn must leave the other relaying.
    let (store, _, stop, task) = replicas.remove(0);
    stop.cancel();
    task.await.unwrap();
    store.close().await;
    write(&replicas[0].0, &outbox, 200..250).await;
    eventually(
        Duration::from_secs(20),
        "the remaining replica to relay",
        || async { (published().len() == 250).then_some(()) },
    )
    .await;
    let seqs: Vec<i64> = published()
        .iter()
        .map(|message| {
            serde_json::from_slice::<serde_json::Value>(&message.payload).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seqs,
        (0..250).collect::<Vec<_>>(),
        "published in commit order, each once"
    );
    let (_, _, stop, task) = replicas.remove(0);
    stop.cancel();
    task.await.unwrap();
    database.remove().await;
}
