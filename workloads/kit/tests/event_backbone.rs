//! The outbox, relay, inbox and consumer loop against the real broker, on both stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_testkit as support;

use food_delivery_kit::events::{
    ConsumerOutcome, EventBus, KafkaBus, Message, Outbox, OutboxRelay, Topics, apply_delivery,
    run_consumer,
};
use food_delivery_kit::{Store, StoreTransaction};
use std::time::Duration;
use support::{
    Backend, RecordEffects, TestDatabase, eventually, kafka_bootstrap, kafka_config, unique,
    widget_event,
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

struct Fixture {
    database: TestDatabase,
    store: Store,
    bus: EventBus,
    outbox: Outbox,
    topic: String,
}

/// A fresh store and a fresh topic of `partitions` partitions on the shared broker.
async fn fixture(backend: Backend, partitions: i32) -> Fixture {
    let database = TestDatabase::create(backend).await;
    let store = Store::connect(&database.url, 5).await.unwrap();
    store.migrate(support::EFFECT_MIGRATIONS).await.unwrap();
    let bus = EventBus::Kafka(
        KafkaBus::connect(&kafka_config(kafka_bootstrap(), partitions), "kit-test").unwrap(),
    );
    let topics = Topics::new(unique("t"));
    let topic = topics.name("widgets");
    bus.ensure_topics(std::slice::from_ref(&topic))
        .await
        .unwrap();
    Fixture {
        database,
        store,
        bus,
        outbox: Outbox::new(topics),
        topic,
    }
}

async fn save_widget(transaction: &mut StoreTransaction, outbox: &Outbox, id: &str, seq: i64) {
    sqlx::query("INSERT INTO widgets (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(format!("widget {seq}"))
        .execute(&mut **transaction)
        .await
        .unwrap();
    outbox
        .append(transaction, "widgets", &widget_event(id, seq))
        .await
        .unwrap();
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn state_change_and_event_commit_together(backend: Backend) {
    // One partition, so reading up to the sentinel has read everything published before it.
    let fixture = fixture(backend, 1).await;
    let relay = OutboxRelay::new(
        "kit-test",
        fixture.store.clone(),
        fixture.bus.clone(),
        &fixture.outbox,
        Duration::from_millis(50),
    );

    let mut committed = fixture.store.begin().await.unwrap();
    save_widget(&mut committed, &fixture.outbox, "w-committed", 1).await;
    committed.commit().await.unwrap();
    let mut rolled_back = fixture.store.begin().await.unwrap();
    save_widget(&mut rolled_back, &fixture.outbox, "w-rolled-back", 2).await;
    rolled_back.rollback().await.unwrap();

    assert_eq!(
        count(&fixture.store, "SELECT COUNT(*) FROM widgets").await,
        1
    );
    assert_eq!(
        relay.backlog().await.unwrap(),
        1,
        "exactly the committed change has its event waiting"
    );

    // A sentinel published after the relay proves nothing else was published between.
    assert_eq!(relay.publish_pending().await.unwrap(), 1);
    let sentinel = widget_event("sentinel", 0);
    let published = fixture
        .bus
        .publish_all(vec![sentinel.to_message(&fixture.topic)])
        .await;
    assert!(published.into_iter().all(|result| result.is_ok()));
    let mut subscription = fixture
        .bus
        .subscribe(&unique("g"), std::slice::from_ref(&fixture.topic))
        .unwrap();
    let mut subjects = Vec::new();
    while !subjects.contains(&"sentinel".to_owned()) {
        let delivery = tokio::time::timeout(WAIT, subscription.next())
            .await
            .unwrap()
            .unwrap();
        subjects.push(delivery.message.key);
    }
    assert!(subjects.contains(&"w-committed".to_owned()));
    assert!(
        !subjects.contains(&"w-rolled-back".to_owned()),
        "a rolled-back change published its event"
    );
    assert_eq!(relay.backlog().await.unwrap(), 0);
    subscription.close();
    fixture.database.remove().await;
}

async fn event_committed_before_a_crash_is_published_after_restart(backend: Backend) {
    let fixture = fixture(backend, 3).await;
    // First life: the change commits, then the process dies before any relay runs.
    let mut transaction = fixture.store.begin().await.unwrap();
    save_widget(&mut transaction, &fixture.outbox, "w-before-crash", 7).await;
    transaction.commit().await.unwrap();
    fixture.store.close().await;
    drop(fixture.store);

    // Second life: a new process opens the same database; its relay publishes what the first left behind.
    let store = Store::connect(&fixture.database.url, 5).await.unwrap();
    store.migrate(support::EFFECT_MIGRATIONS).await.unwrap();
    let relay = OutboxRelay::new(
        "kit-test",
        store.clone(),
        fixture.bus.clone(),
        &fixture.outbox,
        Duration::from_millis(50),
    );
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.clone().run(stop.clone(), Duration::from_secs(5)));

    let mut subscription = fixture
        .bus
        .subscribe(&unique("g"), std::slice::from_ref(&fixture.topic))
        .unwrap();
    let delivery = tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("event published after restart")
        .unwrap();
    let event = food_delivery_kit::events::Event::from_message(&delivery.message).unwrap();
    assert_eq!(event.subject, "w-before-crash");
    assert_eq!(event.data["seq"], 7);
    eventually(WAIT, "the row to be marked sent", || async {
        (relay.backlog().await.unwrap() == 0).then_some(())
    })
    .await;
    stop.cancel();
    relay_task.await.unwrap();
    subscription.close();
    fixture.database.remove().await;
}

async fn redelivery_after_a_crash_before_the_offset_is_stored_is_not_applied_twice(
    backend: Backend,
) {
    let fixture = fixture(backend, 3).await;
    let event = widget_event("w-redelivered", 1);
    let published = fixture
        .bus
        .publish_all(vec![event.to_message(&fixture.topic)])
        .await;
    assert!(published.into_iter().all(|result| result.is_ok()));
    let group = unique("g");
    let topics = std::slice::from_ref(&fixture.topic);

    // First member applies the event and commits, then dies before storing the offset.
    let mut first = fixture.bus.subscribe(&group, topics).unwrap();
    let delivery = tokio::time::timeout(WAIT, first.next())
        .await
        .unwrap()
        .unwrap();
    let outcome = apply_delivery(&fixture.store, &group, &RecordEffects, &delivery, None)
        .await
        .unwrap();
    assert_eq!(outcome, ConsumerOutcome::Applied);
    first.close();

    // The next member of the group gets the same event again; the inbox recognises it.
    let mut second = fixture.bus.subscribe(&group, topics).unwrap();
    let redelivered = tokio::time::timeout(WAIT, second.next())
        .await
        .expect("event redelivered")
        .unwrap();
    assert_eq!(
        redelivered.offset, delivery.offset,
        "the group resumed before the unacknowledged event"
    );
    let outcome = apply_delivery(&fixture.store, &group, &RecordEffects, &redelivered, None)
        .await
        .unwrap();
    assert_eq!(outcome, ConsumerOutcome::Duplicate);
    second.acknowledge(&redelivered);
    second.close();
    assert_eq!(
        count(&fixture.store, "SELECT COUNT(*) FROM effects").await,
        1,
        "the effect was applied once"
    );
    fixture.database.remove().await;
}

async fn poison_messages_are_skipped_counted_and_parked_and_the_next_good_one_is_applied(
    backend: Backend,
) {
    food_delivery_kit::metrics::prometheus().expect("recorder installed");
    let fixture = fixture(backend, 3).await;
    let unparseable = Message {
        topic: fixture.topic.clone(),
        key: "w-poison".to_owned(),
        headers: widget_event("w-poison", 1)
            .to_message(&fixture.topic)
            .headers,
        payload: b"{this is not json".to_vec(),
    };
    let mut unknown_type = widget_event("w-poison", 2);
    unknown_type.event_type = "test.widget.exploded.v9".to_owned();
    let good = widget_event("w-poison", 3);
    let messages = vec![
        unparseable,
        unknown_type.to_message(&fixture.topic),
        good.to_message(&fixture.topic),
    ];
    assert!(
        fixture
            .bus
            .publish_all(messages)
            .await
            .into_iter()
            .all(|result| result.is_ok())
    );

    let group = unique("g");
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        fixture.store.clone(),
        fixture.bus.clone(),
        None,
        group.clone(),
        vec![fixture.topic.clone()],
        RecordEffects,
        stop.clone(),
    ));
    let applied: Vec<(String, i64)> =
        eventually(WAIT, "the good event after the poison", || async {
            let rows: Vec<(String, i64)> = sqlx::query_as("SELECT event_id, seq FROM effects")
                .fetch_all(fixture.store.pool())
                .await
                .unwrap();
            (!rows.is_empty()).then_some(rows)
        })
        .await;
    assert_eq!(applied, vec![(good.id.clone(), 3)]);
    let parked: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT consumer, message_offset, reason FROM kit_parked_messages ORDER BY message_offset",
    )
    .fetch_all(fixture.store.pool())
    .await
    .unwrap();
    assert_eq!(
        parked.len(),
        2,
        "both poison messages are parked: {parked:?}"
    );
    assert!(parked.iter().all(|(consumer, _, _)| consumer == &group));
    assert!(parked[0].2.starts_with("unparseable payload"), "{parked:?}");
    assert_eq!(parked[1].2, "unknown event type 'test.widget.exploded.v9'");
    // librdkafka reports lag every 5 s while the consumer runs.
    eventually(
        Duration::from_secs(20),
        "consumer lag to be reported",
        || async {
            let metrics = food_delivery_kit::metrics::render();
            metrics
                .lines()
                .any(|line| {
                    line.starts_with("kafka_consumer_lag")
                        && line.contains(&format!("group=\"{group}\""))
                })
                .then_some(())
        },
    )
    .await;
    stop.cancel();
    tokio::time::timeout(WAIT, consumer)
        .await
        .expect("consumer stops on shutdown")
        .unwrap();

    let metrics = food_delivery_kit::metrics::render();
    for reason in ["unparseable", "unknown_type"] {
        let counted = metrics.lines().any(|line| {
            line.starts_with("events_skipped_total")
                && line.contains(&format!("group=\"{group}\""))
                && line.contains(&format!("reason=\"{reason}\""))
                && line.ends_with(" 1")
        });
        assert!(counted, "no skip counted for {reason} in:\n{metrics}");
    }
    fixture.database.remove().await;
}

food_delivery_testkit::on_both_backends!(
    state_change_and_event_commit_together,
    event_committed_before_a_crash_is_published_after_restart,
    redelivery_after_a_crash_before_the_offset_is_stored_is_not_applied_twice,
    poison_messages_are_skipped_counted_and_parked_and_the_next_good_one_is_applied,
);

/// A member's assignment is visible (metric and readiness detail), so one that holds nothing shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reports_its_assignment_and_forgets_it_when_it_leaves() {
    let fixture = fixture(Backend::Sqlite, 3).await;
    let group = unique("g");
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        fixture.store.clone(),
        fixture.bus.clone(),
        None,
        group.clone(),
        vec![fixture.topic.clone()],
        RecordEffects,
        stop.clone(),
    ));
    let report = eventually(WAIT, "the member's report", || async {
        food_delivery_kit::events::membership_reports(std::slice::from_ref(&group))
            .into_iter()
            .find(|report| report.assigned_partitions == 3)
    })
    .await;
    assert_eq!(report.live_members, 1, "{report:?}");
    assert!(!report.member.is_empty(), "{report:?}");
    stop.cancel();
    consumer.await.unwrap();
    assert!(
        food_delivery_kit::events::membership_reports(std::slice::from_ref(&group)).is_empty(),
        "a member that left reports nothing"
    );
    fixture.database.remove().await;
}
