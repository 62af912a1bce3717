//! The consumer loop: take a message, decode it, apply it through the inbox and the service's handler in one
//! transaction, commit, and only then acknowledge. Poison is logged with its coordinates, counted, parked in the
//! consumer's store and skipped, so the partition moves on.

use super::bus::{Delivery, EventBus};
use super::envelope::{Event, PoisonReason};
use super::inbox::record_first_delivery;
use super::outbox::Outbox;
use crate::store::{Store, StoreTransaction};
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Attempts for a failure that is not a lost database connection, before the event is treated as poison.
/// A lost connection is retried for as long as it lasts: skipping would lose the event.
const MAX_ATTEMPTS: u32 = 8;
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a service does when an event arrives (its `policies`).
pub trait EventHandler: Send + Sync + 'static {
    /// Applies `event` inside `transaction` (append follow-up events to the outbox in the same transaction).
    /// Return [`HandlerError::Poison`] for types or data this service cannot understand.
    fn handle<'a>(
        &'a self,
        transaction: &'a mut StoreTransaction,
        event: &'a Event,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;
}

/// Why an event was not applied.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event can never be applied; skip it.
    #[error("poison: {0}")]
    Poison(#[from] PoisonReason),
    /// The store failed; retried.
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    /// Anything else worth retrying a few times.
    #[error("{0}")]
    Retry(String),
}

impl HandlerError {
    fn is_lost_connection(&self) -> bool {
        matches!(
            self,
            Self::Store(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
            )
        )
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
}

/// Decodes and applies one delivery for consumer group `group`: inbox mark and effect in one transaction.
pub async fn apply_delivery<H: EventHandler>(
    store: &Store,
    group: &str,
    handler: &H,
    delivery: &Delivery,
) -> Result<ConsumerOutcome, HandlerError> {
    let event = match Event::from_message(&delivery.message) {
        Ok(event) => event,
        Err(reason) => return Ok(ConsumerOutcome::Skipped(reason)),
    };
    let mut transaction = store.begin().await?;
    if !record_first_delivery(&mut transaction, group, &event.id).await? {
        transaction.rollback().await?;
        return Ok(ConsumerOutcome::Duplicate);
    }
    // The span puts the correlation id on every log line the handler writes, as requests' spans do.
    let span = tracing::info_span!(
        "event",
        correlation_id = %event.correlation_id,
        event_type = %event.event_type,
        event_id = %event.id,
        consumer = group,
    );
    let handled = crate::telemetry::with_correlation_id(
        event.correlation_id.clone(),
        tracing::Instrument::instrument(handler.handle(&mut transaction, &event), span),
    )
    .await;
    match handled {
        Ok(()) => {
            transaction.commit().await?;
            Ok(ConsumerOutcome::Applied)
        }
        Err(HandlerError::Poison(reason)) => {
            transaction.rollback().await?;
            Ok(ConsumerOutcome::Skipped(reason))
        }
        Err(error) => {
            // Dropping the transaction rolls it back; an explicit rollback could fail on a lost connection.
            drop(transaction);
            Err(error)
        }
    }
}

/// Consumes `topics` as group `group` until `shutdown`, then leaves the group. The message in hand when
/// shutdown comes is finished first (or, if its transaction did not commit, redelivered to the next member).
pub async fn run_consumer<H: EventHandler>(
    store: Store,
    bus: EventBus,
    outbox: Option<Outbox>,
    group: String,
    topics: Vec<String>,
    handler: H,
    shutdown: CancellationToken,
) {
    crate::metrics::install();
    let mut subscription = loop {
        match bus.subscribe(&group, &topics) {
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
    tracing::info!(group, ?topics, "consumer started");
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = subscription.next() => match next {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::warn!(%error, group, "consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let outcome = apply_with_retries(&store, &group, &handler, &delivery, &shutdown).await;
        let Some(outcome) = outcome else { break };
        record_outcome(&group, &delivery, &outcome);
        if let ConsumerOutcome::Skipped(reason) = &outcome {
            park(&store, &group, &delivery, reason).await;
        }
        if let Err(error) = subscription.acknowledge(&delivery) {
            // After a rebalance the partition may belong to another member, which will redeliver; the inbox
            // makes that harmless.
            tracing::warn!(%error, group, topic = delivery.message.topic, partition = delivery.partition,
                offset = delivery.offset, "could not store offset");
        }
        if let (ConsumerOutcome::Applied, Some(outbox)) = (&outcome, &outbox) {
            outbox.wake_relay();
        }
    }
    subscription.close();
    tracing::info!(group, "consumer left its group");
}

/// Applies a delivery, retrying failures with backoff. `None` when shutdown interrupted the retries (the
/// delivery is not acknowledged and will come again).
async fn apply_with_retries<H: EventHandler>(
    store: &Store,
    group: &str,
    handler: &H,
    delivery: &Delivery,
    shutdown: &CancellationToken,
) -> Option<ConsumerOutcome> {
    let mut attempts = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        match apply_delivery(store, group, handler, delivery).await {
            Ok(outcome) => return Some(outcome),
            Err(error) => {
                attempts += 1;
                metrics::counter!(crate::metrics::EVENTS_FAILED, "group" => group.to_owned(),
                    "topic" => delivery.message.topic.clone())
                .increment(1);
                tracing::warn!(%error, group, attempts, topic = delivery.message.topic,
                    partition = delivery.partition, offset = delivery.offset, "event handling failed");
                if attempts >= MAX_ATTEMPTS && !error.is_lost_connection() {
                    let event_type = delivery
                        .message
                        .header(super::header_names::TYPE)
                        .unwrap_or("unknown")
                        .to_owned();
                    return Some(ConsumerOutcome::Skipped(PoisonReason::BadData {
                        event_type,
                        problem: format!("handler failed {attempts} times: {error}"),
                    }));
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Keeps a skipped message in the consumer's store (`kit_parked_messages`) so it can be inspected and replayed.
/// If even that fails, the error log has the coordinates and the broker still has the message until retention.
async fn park(store: &Store, group: &str, delivery: &Delivery, reason: &PoisonReason) {
    let headers = serde_json::to_string(&delivery.message.headers).unwrap_or_default();
    let parked = sqlx::query(
        "INSERT INTO kit_parked_messages (consumer, topic, partition_number, message_offset, message_key, headers, \
         payload, reason, parked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(&delivery.message.topic)
    .bind(delivery.partition)
    .bind(delivery.offset)
    .bind(&delivery.message.key)
    .bind(headers)
    .bind(String::from_utf8_lossy(&delivery.message.payload).into_owned())
    .bind(reason.to_string())
    .bind(crate::store::now_millis())
    .execute(store.pool())
    .await;
    if let Err(error) = parked {
        tracing::error!(%error, group, topic = delivery.message.topic, partition = delivery.partition,
            offset = delivery.offset, "could not park a poison message");
    }
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
        ConsumerOutcome::Skipped(reason) => {
            tracing::error!(group, topic, partition = delivery.partition, offset = delivery.offset,
                key = delivery.message.key, %reason, "skipping poison message");
            metrics::counter!(crate::metrics::EVENTS_SKIPPED, "group" => group.to_owned(), "topic" => topic,
                "reason" => reason.metric_label())
            .increment(1);
        }
    }
}
