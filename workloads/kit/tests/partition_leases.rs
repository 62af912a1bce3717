//! Replicas of a service share a consumer group's partitions through leases in their store (events/leases.rs):
//! every partition is read by one member, a member that leaves hands its partitions over within a round, and a
//! member that dies (no goodbye) loses them when its leases expire. Each event is applied once, in order per key,
//! whoever applies it. On the real broker (tansu) and one shared PostgreSQL database, as replicas run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_testkit as support;

use food_delivery_kit::Store;
use food_delivery_kit::events::{EventBus, KafkaBus, Outbox, OutboxRelay, Topics, run_consumer};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{Backend, RecordEffects, TestDatabase, eventually, kafka_config, unique};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Keys that land on every partition of a three-partition topic (librdkafka's default partitioner: CRC32 of the key
/// modulo the partition count; two keys on each of 0, 1, 2). Waiting for the events to be applied then waits for
/// every partition to have a holder: with the six keys used before, partition 1 got no events, so a hand-over of
/// that partition was never waited for and the holders were asserted before the survivor took it (seen in CI).
const KEYS: [&str; 6] = ["k-a", "k-b", "k-h", "k-c", "k-e", "k-i"];

struct Group {
    store: Store,
    bus: EventBus,
    topic: String,
    outbox: Outbox,
    group: String,
    seq: i64,
}

impl Group {
    /// A group on `partitions` partitions of a fresh topic, its store on a fresh PostgreSQL database, with an
    /// outbox relay publishing what `write` commits.
    async fn start(partitions: i32) -> (Self, TestDatabase, (CancellationToken, JoinHandle<()>)) {
        let database = TestDatabase::create(Backend::Postgres).await;
        let store = Store::connect(&database.url, 5).await.unwrap();
        store.migrate(support::EFFECT_MIGRATIONS).await.unwrap();
        let config = kafka_config(support::kafka_bootstrap(), partitions);
        let bus = EventBus::Kafka(KafkaBus::connect(&config, "kit-leases").unwrap());
        let topics = Topics::new(unique("t"));
        let topic = topics.name("widgets");
        bus.ensure_topics(std::slice::from_ref(&topic))
            .await
            .unwrap();
        let outbox = Outbox::new(topics);
        let stop_relay = CancellationToken::new();
        let relay = OutboxRelay::new(
            "kit-leases",
            store.clone(),
            bus.clone(),
            &outbox,
            Duration::from_millis(50),
        );
        let relay_task = tokio::spawn(relay.run(stop_relay.clone(), Duration::from_secs(5)));
        let group = Self {
            store,
            bus,
            topic,
            outbox,
            group: unique("g"),
            seq: 0,
        };
        (group, database, (stop_relay, relay_task))
    }

    async fn stop(
        self,
        database: TestDatabase,
        (stop_relay, relay_task): (CancellationToken, JoinHandle<()>),
    ) {
        stop_relay.cancel();
        relay_task.await.unwrap();
        self.store.close().await;
        database.remove().await;
    }

    fn member(&self) -> (CancellationToken, JoinHandle<()>) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_consumer(
            self.store.clone(),
            self.bus.clone(),
            None,
            self.group.clone(),
            vec![self.topic.clone()],
            RecordEffects,
            stop.clone(),
        ));
        (stop, task)
    }

    async fn write(&mut self, count: i64) -> i64 {
        for _ in 0..count {
            let subject = KEYS[usize::try_from(self.seq).unwrap() % KEYS.len()];
            support::write_widget(&self.store, &self.outbox, subject, self.seq).await;
            self.seq += 1;
        }
        self.seq
    }

    /// Waits until `total` events are applied; returns how long it took.
    async fn applied(&self, total: i64, what: &str) -> Duration {
        let started = Instant::now();
        eventually(Duration::from_secs(60), what, || async {
            let applied = support::applied_effects(&self.store).await.len();
            (i64::try_from(applied).unwrap() >= total).then_some(())
        })
        .await;
        started.elapsed()
    }

    /// Every event exactly once and, per key, in the order written.
    async fn assert_once_in_order(&self) {
        let applied = support::applied_effects(&self.store).await;
        let mut last: HashMap<String, i64> = HashMap::new();
        for (subject, seq) in &applied {
            let previous = last.insert(subject.clone(), *seq);
            assert!(
                previous.is_none_or(|previous| previous < *seq),
                "{subject}: {seq} applied after {previous:?}"
            );
        }
        let mut seqs: Vec<i64> = applied.iter().map(|(_, seq)| *seq).collect();
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (0..self.seq).collect::<Vec<_>>(),
            "each event exactly once"
        );
    }

    /// How many partitions each live member holds, as the lease table says.
    async fn holders(&self) -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM kit_consumer_leases WHERE consumer_group = $1 AND holder IS NOT NULL \
             GROUP BY holder ORDER BY holder",
        )
        .bind(&self.group)
        .fetch_all(self.store.pool())
        .await
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_to_the_surviving_member_after_a_graceful_leave_and_after_a_crash() {
    let (mut group, database, relay) = Group::start(3).await;

    // Two members share the three partitions: two and one.
    let (first_stop, first) = group.member();
    let (second_stop, second) = group.member();
    let total = group.write(30).await;
    group.applied(total, "events while both members run").await;
    // Settled, not merely both holding: the member giving leases back releases them one statement at a time and
    // the other takes them at its next round, so [1, 1] with one partition free is a moment of every hand-over.
    let shared = eventually(
        Duration::from_secs(10),
        "both members to hold every partition between them",
        || async {
            let holders = group.holders().await;
            (holders.len() == 2 && holders.iter().sum::<i64>() == 3).then_some(holders)
        },
    )
    .await;
    assert!(shared.contains(&2) && shared.contains(&1), "{shared:?}");

    // The first member leaves as a rollout stops it: the second takes its partitions within a round or two.
    first_stop.cancel();
    first.await.unwrap();
    let total = group.write(30).await;
    let graceful = group
        .applied(total, "events after the first member left")
        .await;
    assert_eq!(group.holders().await, [3], "the survivor holds everything");

    // A third member joins, then dies without a goodbye (its task is dropped mid-flight: no release).
    let (_third_stop, third) = group.member();
    eventually(
        Duration::from_secs(10),
        "the new member to take its share",
        || async { (group.holders().await.len() == 2).then_some(()) },
    )
    .await;
    third.abort();
    let _ = third.await;
    let total = group.write(30).await;
    // Bounded by the lease (8 s) plus a round, not by anything the broker decides.
    let crashed = group.applied(total, "events after a member died").await;
    eprintln!("hand-over: {graceful:?} after a graceful leave, {crashed:?} after a crash");
    group.assert_once_in_order().await;

    second_stop.cancel();
    second.await.unwrap();
    group.stop(database, relay).await;
}

/// A member that loses a partition for a while (its lease ran out while it could not renew, another member
/// took it) keeps fetching it meanwhile without applying anything. When the partition is its own again, it must
/// read again from the position in the store, not from where its fetching got to, or the messages in between are
/// lost. (Seen in the fault-injection run before the fix: orders stuck in COOKING whose CookingFinished the order
/// service had skipped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_gets_a_partition_back_reads_from_the_stored_position_and_skips_nothing() {
    let (mut group, database, relay) = Group::start(1).await;
    let (stop, member) = group.member();
    let total = group.write(10).await;
    group
        .applied(total, "events before the partition is taken")
        .await;
    let pool = group.store.pool().clone();
    let execute = |statement: String| {
        let pool = pool.clone();
        async move { sqlx::query(&statement).execute(&pool).await.unwrap() }
    };
    let me: String =
        sqlx::query_scalar("SELECT member FROM kit_consumer_members WHERE consumer_group = $1")
            .bind(&group.group)
            .fetch_one(group.store.pool())
            .await
            .unwrap();

    // The member cannot renew (its heartbeats fail) and another member takes the partition meanwhile.
    execute(
        "CREATE FUNCTION refuse_heartbeats() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'no heartbeat'; END $$ \
         LANGUAGE plpgsql"
            .to_owned(),
    )
    .await;
    execute(
        "CREATE TRIGGER refuse_heartbeats BEFORE INSERT OR UPDATE ON kit_consumer_members \
         FOR EACH ROW EXECUTE FUNCTION refuse_heartbeats()"
            .to_owned(),
    )
    .await;
    execute(format!(
        "UPDATE kit_consumer_leases SET holder = 'another-member' WHERE consumer_group = '{}'",
        group.group
    ))
    .await;
    group.write(10).await;
    // Long enough for the member to fetch them and find it may not apply them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        support::applied_effects(&group.store).await.len(),
        10,
        "applied without the lease"
    );

    // The other member lets go and this one has the partition again before its next successful round, which
    // therefore finds the same partitions it had.
    execute(format!(
        "UPDATE kit_consumer_leases SET holder = '{me}' WHERE consumer_group = '{}'",
        group.group
    ))
    .await;
    execute("DROP TRIGGER refuse_heartbeats ON kit_consumer_members".to_owned()).await;
    let total = group.write(5).await;
    group
        .applied(total, "every event once the partition is back")
        .await;
    group.assert_once_in_order().await;

    stop.cancel();
    member.await.unwrap();
    group.stop(database, relay).await;
}

/// A member that takes over a partition whose position lies inside a record batch (the previous holder applied
/// half of a relay's batch, then crashed) must read the rest of that batch. tansu 0.6 answers a fetch from the
/// middle of a batch with the batches after it, so resuming exactly at the position lost the rest of the batch
/// for good (seen in the fault-injection run: orders stuck in DELIVERING whose Delivered came in the same batch as
/// another order's DeliveryStarted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_resuming_inside_a_record_batch_reads_the_rest_of_it() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let store = Store::connect(&database.url, 5).await.unwrap();
    store.migrate(support::EFFECT_MIGRATIONS).await.unwrap();
    let bus = EventBus::Kafka(
        KafkaBus::connect(&kafka_config(support::kafka_bootstrap(), 1), "kit-leases").unwrap(),
    );
    let topic = unique("t");
    bus.ensure_topics(std::slice::from_ref(&topic))
        .await
        .unwrap();
    // Ten events in one produce request: one record batch, offsets 0-9.
    let batch: Vec<_> = (0..10)
        .map(|seq| support::widget_event("k-a", seq).to_message(&topic))
        .collect();
    assert!(
        bus.publish_all(batch)
            .await
            .into_iter()
            .all(|result| result.is_ok())
    );
    // The previous holder applied offsets 0-4 and is gone.
    let group = unique("g");
    sqlx::query(
        "INSERT INTO kit_consumer_leases (consumer_group, topic, partition_number, holder, expires_at, next_offset) \
         VALUES ($1, $2, 0, NULL, 0, 5)",
    )
    .bind(&group)
    .bind(&topic)
    .execute(store.pool())
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let member = tokio::spawn(run_consumer(
        store.clone(),
        bus.clone(),
        None,
        group,
        vec![topic],
        RecordEffects,
        stop.clone(),
    ));
    let applied = eventually(Duration::from_secs(30), "the rest of the batch", || async {
        let applied = support::applied_effects(&store).await;
        (applied.len() >= 5).then_some(applied)
    })
    .await;
    let seqs: Vec<i64> = applied.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(
        seqs,
        [5, 6, 7, 8, 9],
        "from the position on, nothing before it"
    );
    stop.cancel();
    member.await.unwrap();
    store.close().await;
    database.remove().await;
}
