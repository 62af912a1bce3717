//! The consumer loop: take a message, decode it, apply it through the inbox and the service's handler in one
//! transaction, commit, and only then acknowledge. Poison (undecodable data, an unknown type, data the handler
//! calls invalid) is logged with its coordinates, counted, parked in the consumer's store and skipped once the
//! park has committed, so the partition moves on. Anything else (a store that is down, read-only, full or locked)
//! is retried for as long as it lasts: acknowledging an event that was never applied would lose it. A partition
//! held up that way is visible as a metric and on readiness ([`stuck_deliveries`]).

use super::bus::kafka::KafkaAssigner;
use super::bus::{Delivery, EventBus};
use super::envelope::{Event, PoisonReason};
use super::inbox::{record_first_deliveries, record_first_delivery};
use super::leases::{HeldPartitions, PartitionKey, PartitionLeases, Position, ROUND};
use super::outbox::Outbox;
use crate::store::{Backend, Store, StoreTransaction};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Longest pause between attempts: short, because each attempt is cheap and the outage it waits out (a database
/// failover, a lock held from outside) ends at an unknown moment.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Attempts before a failing delivery is reported as stuck (metric, readiness detail, error log).
const STUCK_AFTER_ATTEMPTS: u32 = 3;

/// A delivery whose handling keeps failing: its partition does not move until it succeeds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StuckDelivery {
    /// The consumer group.
    pub group: String,
    /// Where the delivery is.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the first attempt failed.
    #[serde(with = "rfc3339")]
    pub since: SystemTime,
    /// The last error.
    pub error: String,
}

/// Serialises an instant as RFC 3339 for the readiness body.
mod rfc3339 {
    pub fn serialize<S: serde::Serializer>(
        instant: &std::time::SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&chrono::DateTime::<chrono::Utc>::from(*instant).to_rfc3339())
    }
}

/// A consumer group's partition: (group, topic, partition).
type GroupPartition = (String, String, i32);

/// Deliveries held up right now, per group partition, in this process.
static STUCK: LazyLock<Mutex<BTreeMap<GroupPartition, StuckDelivery>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// The deliveries of `groups` whose handling keeps failing right now (for readiness details).
pub fn stuck_deliveries(groups: &[String]) -> Vec<StuckDelivery> {
    STUCK
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .filter(|stuck| groups.contains(&stuck.group))
        .cloned()
        .collect()
}

fn report_stuck(stuck: StuckDelivery) {
    metrics::gauge!(crate::metrics::CONSUMER_STUCK, "group" => stuck.group.clone(), "topic" => stuck.topic.clone(),
        "partition" => stuck.partition.to_string())
    .set(1.0);
    STUCK.lock().unwrap_or_else(PoisonError::into_inner).insert(
        (stuck.group.clone(), stuck.topic.clone(), stuck.partition),
        stuck,
    );
}

fn clear_stuck(group: &str, delivery: &Delivery) {
    let key = (
        group.to_owned(),
        delivery.message.topic.clone(),
        delivery.partition,
    );
    let was_stuck = STUCK
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&key)
        .is_some();
    if was_stuck {
        metrics::gauge!(crate::metrics::CONSUMER_STUCK, "group" => key.0, "topic" => key.1,
            "partition" => key.2.to_string())
        .set(0.0);
        tracing::info!(
            group,
            topic = delivery.message.topic,
            partition = delivery.partition,
            offset = delivery.offset,
            "partition moving again"
        );
    }
}

/// What a service does when an event arrives (its `policies`).
pub trait EventHandler: Send + Sync + 'static {
    /// Applies `event` inside `transaction` (append follow-up events to the outbox in the same transaction).
    /// Return [`HandlerError::Poison`] for types or data this service cannot understand.
    fn handle<'a>(
        &'a self,
        transaction: &'a mut StoreTransaction,
        event: &'a Event,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;

    /// Applies `events`, in the order given, inside one `transaction` (a consumer's batch whose inbox marks are
    /// written already). Any error rolls the whole batch back and the consumer applies the events one by one with
    /// [`Self::handle`], so poison and retries keep their handling. The default is exactly that loop; a handler
    /// whose events share their reads and writes (my page refolds a view per event) overrides it to do them once
    /// per batch.
    fn handle_all<'a>(
        &'a self,
        transaction: &'a mut StoreTransaction,
        events: &'a [Event],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a
    where
        Self: Sized,
    {
        async move {
            for event in events {
                handle_in_span(self, transaction, event, None).await?;
            }
            Ok(())
        }
    }
}

/// Runs `handler` on `event` in a span carrying the event's correlation id, as requests' spans do, so every log line
/// the handler writes names it.
async fn handle_in_span<H: EventHandler>(
    handler: &H,
    transaction: &mut StoreTransaction,
    event: &Event,
    group: Option<&str>,
) -> Result<(), HandlerError> {
    let span = tracing::info_span!(
        "event",
        correlation_id = %event.correlation_id,
        event_type = %event.event_type,
        event_id = %event.id,
        consumer = group,
    );
    crate::telemetry::with_correlation_id(
        event.correlation_id.clone(),
        tracing::Instrument::instrument(handler.handle(transaction, event), span),
    )
    .await
}

/// Why an event was not applied.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event can never be applied; skip it.
    #[error("poison: {0}")]
    Poison(#[from] PoisonReason),
    /// The store failed; retried until it works again.
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    /// Anything else that may succeed later (a lost race, say); retried until it does.
    #[error("{0}")]
    Retry(String),
}

impl From<super::outbox::OutboxError> for HandlerError {
    fn from(error: super::outbox::OutboxError) -> Self {
        match error {
            super::outbox::OutboxError::Store(error) => Self::Store(error),
            other => Self::Retry(other.to_string()),
        }
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerOutcome {
    /// The effect was applied and committed.
    Applied,
    /// The inbox had seen the event: nothing was applied.
    Duplicate,
    /// The message was poison and is skipped.
    Skipped(PoisonReason),
    /// This member does not hold the message's partition (any more), or its reading ran ahead of the partition's
    /// position: nothing was applied; whoever holds the partition reads from the position the store has.
    NotHeld,
}

/// Decodes and applies one delivery for consumer group `group`: position (when `leases` keep it), inbox mark and
/// effect in one transaction.
pub async fn apply_delivery<H: EventHandler>(
    store: &Store,
    group: &str,
    handler: &H,
    delivery: &Delivery,
    leases: Option<&PartitionLeases>,
) -> Result<ConsumerOutcome, HandlerError> {
    let event = match Event::from_message(&delivery.message) {
        Ok(event) => event,
        Err(reason) => return Ok(ConsumerOutcome::Skipped(reason)),
    };
    let mut transaction = store.begin().await?;
    // First, so the lease row stays locked until the commit: the partition cannot change hands in between.
    if let Some(passed) = move_position(&mut transaction, delivery, leases).await? {
        return Ok(passed);
    }
    match apply_in(&mut transaction, group, handler, &event).await {
        Ok(applied) => {
            transaction.commit().await?;
            Ok(if applied {
                ConsumerOutcome::Applied
            } else {
                ConsumerOutcome::Duplicate
            })
        }
        Err(HandlerError::Poison(reason)) => {
            transaction.rollback().await?;
            Ok(ConsumerOutcome::Skipped(reason))
        }
        Err(HandlerError::Store(error)) if is_refused_data(&error) => {
            // The store refuses this event's data (a NUL in a text column, a value out of range, a constraint it
            // breaks): no retry can apply it, so it is poison, not an outage.
            drop(transaction);
            Ok(ConsumerOutcome::Skipped(PoisonReason::BadData {
                event_type: event.event_type.clone(),
                problem: format!("the store refuses its data: {error}"),
            }))
        }
        Err(error) => {
            // Dropping the transaction rolls it back; an explicit rollback could fail on a lost connection.
            drop(transaction);
            Err(error)
        }
    }
}

/// Applies `event` with `handler` inside `transaction` (its position already moved), unless the inbox has seen it:
/// `true` when applied, `false` for a duplicate. Nothing is committed here.
async fn apply_in<H: EventHandler>(
    transaction: &mut StoreTransaction,
    group: &str,
    handler: &H,
    event: &Event,
) -> Result<bool, HandlerError> {
    if !record_first_delivery(transaction, group, &event.id).await? {
        // Nothing to apply, but the position (if kept here) moves past it.
        return Ok(false);
    }
    handle_in_span(handler, transaction, event, Some(group)).await?;
    Ok(true)
}

/// The most deliveries applied in one transaction unless configured (`CONSUMER_BATCH_MAX`).
pub const DEFAULT_BATCH_MAX: usize = 64;

/// Applies the deliveries waiting together in one transaction: one commit (one fsync) for all of them instead of
/// one each, which is what bounds a consumer's rate, and one inbox statement for all of them; the handler gets
/// the new events together ([`EventHandler::handle_all`]). Only the plain case: every event readable, every
/// partition held, every handler content. Anything else (`None`) rolls the whole batch back, and the caller applies
/// the deliveries one by one, where poison, retries and lost partitions have their own handling.
async fn apply_together<H: EventHandler>(
    store: &Store,
    group: &str,
    handler: &H,
    deliveries: &[Delivery],
    leases: Option<&PartitionLeases>,
) -> Option<Vec<ConsumerOutcome>> {
    let events = deliveries
        .iter()
        .map(|delivery| Event::from_message(&delivery.message).ok())
        .collect::<Option<Vec<Event>>>()?;
    let mut transaction = store.begin().await.ok()?;
    let mut outcomes = vec![ConsumerOutcome::Applied; deliveries.len()];
    // Positions first, as for one delivery: the lease rows stay locked until the commit. A partition's deliveries
    // move its position in one statement when the first of them is the next one; otherwise one by one.
    if let Some(held) = leases {
        let mut by_partition: BTreeMap<PartitionKey, Vec<usize>> = BTreeMap::new();
        for (index, delivery) in deliveries.iter().enumerate() {
            by_partition
                .entry(partition_of(delivery))
                .or_default()
                .push(index);
        }
        for (key, indexes) in by_partition {
            let offsets: Vec<i64> = indexes
                .iter()
                .map(|index| deliveries[*index].offset)
                .collect();
            if let (Some(first), Some(last)) = (offsets.first(), offsets.last())
                && offsets.windows(2).all(|pair| pair[0] < pair[1])
                && held
                    .advance_past(&mut transaction, &key, *first, *last)
                    .await
                    .ok()?
            {
                continue;
            }
            for index in indexes {
                match move_position(&mut transaction, &deliveries[index], leases)
                    .await
                    .ok()?
                {
                    Some(ConsumerOutcome::Duplicate) => {
                        outcomes[index] = ConsumerOutcome::Duplicate
                    }
                    Some(_) => return None,
                    None => {}
                }
            }
        }
    }
    let candidates: Vec<&str> = events
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| **outcome == ConsumerOutcome::Applied)
        .map(|(event, _)| event.id.as_str())
        .collect();
    let mut first = record_first_deliveries(&mut transaction, group, &candidates)
        .await
        .ok()?
        .into_iter();
    let mut fresh = Vec::with_capacity(events.len());
    for (event, outcome) in events.into_iter().zip(&mut outcomes) {
        if *outcome != ConsumerOutcome::Applied {
            continue;
        }
        if first.next()? {
            fresh.push(event);
        } else {
            *outcome = ConsumerOutcome::Duplicate;
        }
    }
    let span = tracing::info_span!("batch", consumer = group, events = fresh.len());
    tracing::Instrument::instrument(handler.handle_all(&mut transaction, &fresh), span)
        .await
        .ok()?;
    transaction.commit().await.ok()?;
    Some(outcomes)
}

/// Moves the partition's position past `delivery` inside `transaction` when the store keeps positions (`leases`).
/// `Some(outcome)` when the delivery must not be applied here: applied before, or its partition is not this
/// member's.
async fn move_position(
    transaction: &mut StoreTransaction,
    delivery: &Delivery,
    leases: Option<&PartitionLeases>,
) -> Result<Option<ConsumerOutcome>, sqlx::Error> {
    let Some(leases) = leases else {
        return Ok(None);
    };
    Ok(
        match leases
            .advance(transaction, &partition_of(delivery), delivery.offset)
            .await?
        {
            Position::Next => None,
            Position::AlreadyApplied => Some(ConsumerOutcome::Duplicate),
            Position::Elsewhere => Some(ConsumerOutcome::NotHeld),
        },
    )
}

fn partition_of(delivery: &Delivery) -> PartitionKey {
    PartitionKey {
        topic: delivery.message.topic.clone(),
        partition: delivery.partition,
    }
}

/// Whether the store refused the data itself rather than failed: SQLSTATE class 22 (data exception: invalid text,
/// numeric overflow), a foreign-key, not-null or check violation, or a stored value this code cannot decode.
/// Everything else (connections, timeouts, locks, read-only, disk full, unique races) may pass and is retried.
fn is_refused_data(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => {
            // A unique violation is usually a race with another replica applying the same thing: the retry finds
            // what won (or the inbox entry), so it is not poison.
            let constraint = matches!(
                database.kind(),
                sqlx::error::ErrorKind::ForeignKeyViolation
                    | sqlx::error::ErrorKind::NotNullViolation
                    | sqlx::error::ErrorKind::CheckViolation
            );
            // PostgreSQL's SQLSTATE has five characters; SQLite's numeric codes never do, and some of them
            // (I/O errors) start with the same digits.
            let postgres_data_exception = database
                .code()
                .is_some_and(|code| code.len() == 5 && code.starts_with("22"));
            constraint || postgres_data_exception
        }
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => true,
        _ => false,
    }
}

/// Consumes `topics` as group `group` until `shutdown`, then leaves the group. The message in hand when
/// shutdown comes is finished first (or, if its transaction did not commit, read again by the next holder of
/// its partition). On Kafka, which member reads which partition is leased in `store` (events/leases.rs).
pub async fn run_consumer<H: EventHandler>(
    store: Store,
    bus: EventBus,
    outbox: Option<Outbox>,
    group: String,
    topics: Vec<String>,
    handler: H,
    shutdown: CancellationToken,
) {
    run_consumer_batched(
        store,
        bus,
        outbox,
        group,
        topics,
        handler,
        shutdown,
        DEFAULT_BATCH_MAX,
    )
    .await;
}

/// [`run_consumer`], applying at most `batch_max` waiting events in one transaction (1: each alone).
#[allow(clippy::too_many_arguments)]
pub async fn run_consumer_batched<H: EventHandler>(
    store: Store,
    bus: EventBus,
    outbox: Option<Outbox>,
    group: String,
    topics: Vec<String>,
    handler: H,
    shutdown: CancellationToken,
    batch_max: usize,
) {
    crate::metrics::install();
    let mut subscription = loop {
        match bus.join(&group, &topics) {
            Ok(subscription) => break subscription,
            Err(error) => {
                tracing::warn!(%error, group, "cannot subscribe; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(MAX_BACKOFF) => {}
                }
            }
        }
    };
    // The lease keeper publishes what this member holds after every round; this loop points the Kafka consumer
    // at it between two messages, so no message taken before a re-assignment is applied after it.
    let (held_sender, mut held_receiver) = tokio::sync::watch::channel(None);
    let leases = subscription.kafka_assigner().map(|assigner| {
        let leases =
            PartitionLeases::new(store.clone(), group.clone(), assigner.member().to_owned());
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep_leases(
            leases.clone(),
            assigner.clone(),
            group.clone(),
            held_sender,
            stop.clone(),
        ));
        // The leases live exactly as long as this consumer: if it panics or is dropped, renewing stops and they
        // expire, so its partitions cannot be held by a member that reads nothing.
        (leases, assigner, stop.drop_guard(), task)
    });
    // What the consumer reads now, and the partitions it read past without applying (it did not hold them at
    // that moment): nothing more from those is applied until the consumer is pointed back at the stored position,
    // or a message between would be skipped for good.
    let mut assigned: Option<Vec<PartitionKey>> = None;
    // Where each assigned partition's stored position was: the consumer starts a batch early, and what comes
    // before the position was applied already.
    let mut positions: BTreeMap<PartitionKey, i64> = BTreeMap::new();
    let mut strayed: BTreeSet<PartitionKey> = BTreeSet::new();
    tracing::info!(group, ?topics, "consumer started");
    'consuming: loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = held_receiver.changed(), if leases.is_some() => {
                if changed.is_err() {
                    // The keeper is gone (it only stops at shutdown).
                    held_receiver.mark_unchanged();
                    tokio::time::sleep(ROUND).await;
                    continue;
                }
                let held: Option<HeldPartitions> = held_receiver.borrow_and_update().clone();
                if let (Some(held), Some((leases, assigner, _, _))) = (held, &leases) {
                    let keys: Vec<PartitionKey> = held.iter().map(|(key, _)| key.clone()).collect();
                    let reread = keys.iter().any(|key| strayed.contains(key));
                    if reread || assigned.as_ref() != Some(&keys) {
                        match assigner.assign(&held) {
                            Ok(()) => {
                                tracing::info!(group, member = leases.member(), partitions = ?keys, "reading partitions");
                                positions = held
                                    .iter()
                                    .filter_map(|(key, position)| Some((key.clone(), (*position)?)))
                                    .collect();
                                assigned = Some(keys);
                                strayed.clear();
                            }
                            Err(error) => tracing::warn!(%error, group, "cannot assign partitions"),
                        }
                    }
                }
                continue;
            }
            next = subscription.next() => match next {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::warn!(%error, group, "consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let held = leases.as_ref().map(|(leases, _, _, _)| leases);
        // What else is waiting already is applied with it (see `apply_together`).
        let mut batch = vec![delivery];
        while batch.len() < batch_max {
            match futures::FutureExt::now_or_never(subscription.next()) {
                Some(Ok(waiting)) => batch.push(waiting),
                Some(Err(error)) => {
                    tracing::warn!(%error, group, "consumer error");
                    break;
                }
                None => break,
            }
        }
        // What precedes a partition's stored position was applied already (the consumer starts a batch early).
        batch.retain(|delivery| {
            positions
                .get(&partition_of(delivery))
                .is_none_or(|position| delivery.offset >= *position)
        });
        // With positions kept in lease rows on PostgreSQL (several replicas), one transaction moves one partition's
        // row only: locking several would deadlock against the lease keeper's renewal, which locks them all. So the
        // batch is applied in runs of one partition there. Without lease rows (the in-process bus) and on SQLite
        // (one connection, so the keeper and the consumer take turns and cannot deadlock) the batch is one run:
        // split by partition, a consumer reading nine interleaved partitions over Kafka committed every few events.
        let one_run = held.is_none() || store.backend() == Backend::Sqlite;
        let mut runs: Vec<Vec<Delivery>> = Vec::new();
        for delivery in batch {
            match runs.last_mut() {
                Some(run)
                    if one_run || run.last().map(partition_of) == Some(partition_of(&delivery)) =>
                {
                    run.push(delivery);
                }
                _ => runs.push(vec![delivery]),
            }
        }
        for run in runs {
            if run.len() > 1
                && !run
                    .iter()
                    .any(|delivery| strayed.contains(&partition_of(delivery)))
                && let Some(outcomes) = apply_together(&store, &group, &handler, &run, held).await
            {
                for (delivery, outcome) in run.iter().zip(&outcomes) {
                    record_outcome(&group, delivery, outcome);
                    subscription.acknowledge(delivery);
                }
                if let (true, Some(outbox)) =
                    (outcomes.contains(&ConsumerOutcome::Applied), &outbox)
                {
                    outbox.wake_relay();
                }
                continue;
            }
            for delivery in run {
                let outcome = if strayed.contains(&partition_of(&delivery)) {
                    Some(ConsumerOutcome::NotHeld)
                } else {
                    apply_with_retries(&store, &group, &handler, &delivery, held, &shutdown).await
                };
                let Some(mut outcome) = outcome else {
                    break 'consuming;
                };
                if let ConsumerOutcome::Skipped(reason) = &outcome {
                    record_outcome(&group, &delivery, &outcome);
                    match park_with_retries(&store, &group, &delivery, reason, held, &shutdown)
                        .await
                    {
                        // Shutdown came before the park committed: not acknowledged, so it comes again.
                        None => break 'consuming,
                        Some(parked) => outcome = parked,
                    }
                } else {
                    record_outcome(&group, &delivery, &outcome);
                }
                if outcome == ConsumerOutcome::NotHeld {
                    strayed.insert(partition_of(&delivery));
                    continue;
                }
                subscription.acknowledge(&delivery);
                if let (ConsumerOutcome::Applied, Some(outbox)) = (&outcome, &outbox) {
                    outbox.wake_relay();
                }
            }
        }
    }
    if let Some((leases, _, stop, task)) = leases {
        // The keeper first, so no round reports or renews after this member is gone.
        drop(stop);
        if tokio::time::timeout(LEAVE_TIMEOUT, task).await.is_err() {
            tracing::warn!(group, "the partition lease keeper did not stop in time");
        }
        // Bounded: a store that is down cannot take the release, and the leases then simply expire.
        match tokio::time::timeout(LEAVE_TIMEOUT, leases.leave()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, group, "could not release partition leases; they expire by themselves");
            }
            Err(_) => tracing::warn!(
                group,
                "releasing partition leases timed out; they expire by themselves"
            ),
        }
    }
    subscription.close();
    tracing::info!(group, "consumer left its group");
}

/// How long a leaving member may take to give its leases back.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the partitions of the subscribed topics are read again from the broker (a topic may grow).
const PARTITIONS_REFRESH: Duration = Duration::from_secs(30);

/// Renews this member's partition leases every round, takes its share, and publishes what it holds (each
/// partition with the position the store has for it) to the consumer loop.
async fn keep_leases(
    leases: PartitionLeases,
    assigner: KafkaAssigner,
    group: String,
    held: tokio::sync::watch::Sender<Option<HeldPartitions>>,
    stop: CancellationToken,
) {
    let mut partitions: Vec<PartitionKey> = Vec::new();
    let mut partitions_read_at: Option<std::time::Instant> = None;
    loop {
        if partitions_read_at.is_none_or(|at| at.elapsed() >= PARTITIONS_REFRESH) {
            match assigner.partitions().await {
                Ok(found) if !found.is_empty() => {
                    partitions = found;
                    partitions_read_at = Some(std::time::Instant::now());
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, group, "cannot read the topics' partitions"),
            }
        }
        if !partitions.is_empty() {
            match leases.round(&partitions).await {
                Ok(round) => {
                    super::bus::kafka::report_membership(
                        &group,
                        leases.member(),
                        round.held.len(),
                        round.members,
                    );
                    // Every round, even unchanged: the consumer re-reads a partition it strayed from.
                    held.send_replace(Some(round.held));
                }
                // Meanwhile the partitions in hand are still read: a member whose lease ran out and was taken
                // finds out in its next transaction, which then changes nothing.
                Err(error) => tracing::warn!(%error, group, "cannot renew partition leases"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(ROUND) => {}
        }
    }
}

/// Applies a delivery, retrying failures with backoff for as long as they last. `None` when shutdown interrupted
/// the retries (the delivery is not acknowledged and will come again).
async fn apply_with_retries<H: EventHandler>(
    store: &Store,
    group: &str,
    handler: &H,
    delivery: &Delivery,
    leases: Option<&PartitionLeases>,
    shutdown: &CancellationToken,
) -> Option<ConsumerOutcome> {
    let mut retries = Retries::new(group, delivery);
    loop {
        match apply_delivery(store, group, handler, delivery, leases).await {
            Ok(outcome) => {
                retries.forget_if_reported();
                return Some(outcome);
            }
            Err(error) => {
                metrics::counter!(crate::metrics::EVENTS_FAILED, "group" => group.to_owned(),
                    "topic" => delivery.message.topic.clone())
                .increment(1);
                if !retries.wait_after(&error.to_string(), shutdown).await {
                    return None;
                }
            }
        }
    }
}

/// Parks a poison message, retrying until the park (and the position past it) has committed: `Skipped`, or
/// `NotHeld` when the partition changed hands first. `None` when shutdown came first.
async fn park_with_retries(
    store: &Store,
    group: &str,
    delivery: &Delivery,
    reason: &PoisonReason,
    leases: Option<&PartitionLeases>,
    shutdown: &CancellationToken,
) -> Option<ConsumerOutcome> {
    let mut retries = Retries::new(group, delivery);
    loop {
        match park(store, group, delivery, reason, leases).await {
            Ok(outcome) => {
                retries.forget_if_reported();
                return Some(outcome);
            }
            Err(error) => {
                if !retries
                    .wait_after(&format!("parking a poison message: {error}"), shutdown)
                    .await
                {
                    return None;
                }
            }
        }
    }
}

/// The backoff and reporting of one delivery's failed attempts.
struct Retries<'a> {
    group: &'a str,
    delivery: &'a Delivery,
    attempts: u32,
    backoff: Duration,
    since: SystemTime,
}

impl<'a> Retries<'a> {
    fn new(group: &'a str, delivery: &'a Delivery) -> Self {
        Self {
            group,
            delivery,
            attempts: 0,
            backoff: Duration::from_millis(100),
            since: SystemTime::now(),
        }
    }

    /// The delivery went through (or this process lets go of it at shutdown): if it had been reported stuck, it is
    /// not any more. Only then is the shared registry touched, so a delivery that works at once (nearly all of
    /// them) costs no lock and no allocation.
    fn forget_if_reported(&self) {
        if self.attempts >= STUCK_AFTER_ATTEMPTS {
            clear_stuck(self.group, self.delivery);
        }
    }

    /// Records a failed attempt and waits before the next. `false` when shutdown came first.
    async fn wait_after(&mut self, error: &str, shutdown: &CancellationToken) -> bool {
        self.attempts += 1;
        let delivery = self.delivery;
        if self.attempts == STUCK_AFTER_ATTEMPTS {
            tracing::error!(
                error,
                group = self.group,
                attempts = self.attempts,
                topic = delivery.message.topic,
                partition = delivery.partition,
                offset = delivery.offset,
                "event keeps failing; its partition waits until it succeeds"
            );
        } else {
            tracing::warn!(
                error,
                group = self.group,
                attempts = self.attempts,
                topic = delivery.message.topic,
                partition = delivery.partition,
                offset = delivery.offset,
                "event handling failed; retrying"
            );
        }
        if self.attempts >= STUCK_AFTER_ATTEMPTS {
            report_stuck(StuckDelivery {
                group: self.group.to_owned(),
                topic: delivery.message.topic.clone(),
                partition: delivery.partition,
                offset: delivery.offset,
                attempts: self.attempts,
                since: self.since,
                error: error.to_owned(),
            });
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                // This process no longer holds the partition up; whoever gets it next reports for itself.
                self.forget_if_reported();
                return false;
            }
            _ = tokio::time::sleep(self.backoff) => {}
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        true
    }
}

/// Keeps a skipped message in the consumer's store (`kit_parked_messages`) so it can be inspected and replayed;
/// the partition's position (when kept in the store) moves past it in the same transaction.
async fn park(
    store: &Store,
    group: &str,
    delivery: &Delivery,
    reason: &PoisonReason,
    leases: Option<&PartitionLeases>,
) -> Result<ConsumerOutcome, sqlx::Error> {
    let mut transaction = store.begin().await?;
    if let Some(passed) = move_position(&mut transaction, delivery, leases).await? {
        return Ok(passed);
    }
    // Text columns refuse NUL on PostgreSQL, and a poison message is exactly where one may be: keep it visible.
    let text = |raw: String| raw.replace('\0', "\\u0000");
    let headers = text(serde_json::to_string(&delivery.message.headers).unwrap_or_default());
    sqlx::query(
        "INSERT INTO kit_parked_messages (consumer, topic, partition_number, message_offset, message_key, headers, \
         payload, reason, parked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(&delivery.message.topic)
    .bind(delivery.partition)
    .bind(delivery.offset)
    .bind(text(delivery.message.key.clone()))
    .bind(headers)
    .bind(text(String::from_utf8_lossy(&delivery.message.payload).into_owned()))
    .bind(text(reason.to_string()))
    .bind(crate::store::now_millis())
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(ConsumerOutcome::Skipped(reason.clone()))
}

fn record_outcome(group: &str, delivery: &Delivery, outcome: &ConsumerOutcome) {
    let topic = delivery.message.topic.clone();
    match outcome {
        ConsumerOutcome::Applied => {
            metrics::counter!(crate::metrics::EVENTS_CONSUMED, "group" => group.to_owned(), "topic" => topic).increment(1);
        }
        ConsumerOutcome::Duplicate => {
            metrics::counter!(crate::metrics::EVENTS_DUPLICATE, "group" => group.to_owned(), "topic" => topic).increment(1);
        }
        ConsumerOutcome::NotHeld => {
            tracing::info!(
                group,
                topic,
                partition = delivery.partition,
                offset = delivery.offset,
                "not applied here: this member does not hold the partition or read past its position"
            );
        }
        ConsumerOutcome::Skipped(reason) => {
            tracing::error!(group, topic, partition = delivery.partition, offset = delivery.offset,
                key = delivery.message.key, %reason, "skipping poison message");
            metrics::counter!(crate::metrics::EVENTS_SKIPPED, "group" => group.to_owned(), "topic" => topic,
                "reason" => reason.metric_label())
            .increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Migration;

    const APPLIED: &[Migration] = &[Migration {
        version: 100,
        description: "what the test handler applied, duplicates allowed",
        sqlite: "CREATE TABLE applied (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL)",
        postgres: "CREATE TABLE applied (id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL)",
    }];

    /// Writes each event it applies, with no uniqueness: an event applied twice shows twice.
    struct Apply;

    impl EventHandler for Apply {
        async fn handle(
            &self,
            transaction: &mut StoreTransaction,
            event: &Event,
        ) -> Result<(), HandlerError> {
            sqlx::query("INSERT INTO applied (event_id) VALUES ($1)")
                .bind(&event.id)
                .execute(&mut **transaction)
                .await?;
            Ok(())
        }
    }

    fn delivery_of(event: &Event, offset: i64) -> Delivery {
        Delivery {
            message: event.to_message("food.widgets"),
            partition: 0,
            offset,
        }
    }

    #[tokio::test]
    async fn a_batch_applies_each_new_event_once_in_order_and_reports_what_it_had_seen() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        store.migrate(APPLIED).await.unwrap();
        let events: Vec<Event> = (0..4)
            .map(|seq| Event::new("test.widget.v1", "test", "w-1", &seq).unwrap())
            .collect();
        // The inbox saw the first one already (a redelivery after a crash before the offset was stored).
        let mut transaction = store.begin().await.unwrap();
        assert!(
            record_first_delivery(&mut transaction, "group", &events[0].id)
                .await
                .unwrap()
        );
        transaction.commit().await.unwrap();
        // The second is delivered twice in one batch (the relay published it again before it could mark it).
        let batch = [&events[0], &events[1], &events[2], &events[1], &events[3]];
        let deliveries: Vec<Delivery> = batch
            .iter()
            .zip(0..)
            .map(|(event, offset)| delivery_of(event, offset))
            .collect();

        let outcomes = apply_together(&store, "group", &Apply, &deliveries, None)
            .await
            .expect("a plain batch is applied together, not one by one");

        use ConsumerOutcome::{Applied, Duplicate};
        assert_eq!(
            outcomes,
            vec![Duplicate, Applied, Applied, Duplicate, Applied]
        );
        let applied: Vec<String> = sqlx::query_scalar("SELECT event_id FROM applied ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(
            applied,
            [
                events[1].id.clone(),
                events[2].id.clone(),
                events[3].id.clone()
            ],
            "each new event once, in delivery order"
        );
    }

    /// Positions kept in lease rows (a Kafka consumer): a batch moves each partition's position once, past its
    /// last delivery, and what precedes a position is a duplicate, as one by one.
    #[tokio::test]
    async fn a_batch_moves_each_partition_past_its_last_delivery_and_skips_what_was_applied() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        store.migrate(APPLIED).await.unwrap();
        let leases = PartitionLeases::new(store.clone(), "group".into(), "member".into());
        let key = |partition| PartitionKey {
            topic: "food.widgets".into(),
            partition,
        };
        leases.round(&[key(0), key(1)]).await.unwrap();
        // Partition 1 was applied up to offset 7 before (a re-read after a re-assignment starts earlier).
        let mut transaction = store.begin().await.unwrap();
        assert!(
            leases
                .advance_past(&mut transaction, &key(1), 0, 7)
                .await
                .unwrap()
        );
        transaction.commit().await.unwrap();
        let events: Vec<Event> = (0..5)
            .map(|seq| Event::new("test.widget.v1", "test", "w-1", &seq).unwrap())
            .collect();
        let placed = [(0, 0), (1, 7), (0, 1), (1, 8), (0, 2)];
        let deliveries: Vec<Delivery> = events
            .iter()
            .zip(placed)
            .map(|(event, (partition, offset))| Delivery {
                partition,
                ..delivery_of(event, offset)
            })
            .collect();

        let outcomes = apply_together(&store, "group", &Apply, &deliveries, Some(&leases))
            .await
            .expect("a plain batch is applied together");

        use ConsumerOutcome::{Applied, Duplicate};
        assert_eq!(
            outcomes,
            vec![Applied, Duplicate, Applied, Applied, Applied]
        );
        let positions: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT partition_number, next_offset FROM kit_consumer_leases ORDER BY partition_number",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(positions, [(0, 3), (1, 9)]);
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM applied")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(applied, 4);
    }

    #[tokio::test]
    async fn a_batch_with_an_unreadable_message_is_left_to_the_one_by_one_path() {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        store.migrate(APPLIED).await.unwrap();
        let good = Event::new("test.widget.v1", "test", "w-1", &1).unwrap();
        let mut unreadable = delivery_of(&good, 1);
        unreadable.message.headers.clear();
        let deliveries = [delivery_of(&good, 0), unreadable];
        assert!(
            apply_together(&store, "group", &Apply, &deliveries, None)
                .await
                .is_none()
        );
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM applied")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(applied, 0, "nothing of the batch is kept");
    }
}
