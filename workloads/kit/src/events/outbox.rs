//! The transactional outbox. A state change and the events it causes are written in one local transaction;
//! the relay publishes committed rows in id order and marks them sent. A crash anywhere loses nothing: unsent
//! rows are simply published after restart, and consumers' inboxes absorb the duplicates a crash between
//! publish and mark can cause.

use super::bus::EventBus;
use super::envelope::{Event, Message};
use super::topics::Topics;
use crate::store::{Backend, Store, StoreTransaction, now_millis};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows published per round trip.
const BATCH_SIZE: i64 = 256;
/// Longest pause between attempts while the broker is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Sent rows are kept this long for inspection, then deleted.
const SENT_RETENTION: Duration = Duration::from_secs(3600);
/// Inbox entries are kept this long: far beyond any redelivery (a rebalance or restart), bounded for disk.
const INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a relay's lease lasts without renewal (PostgreSQL, several replicas): the longest a crashed or cut-off
/// relay delays its successor.
const RELAY_LEASE: Duration = Duration::from_secs(10);
/// A holder renews when this much of its lease has passed, well before it runs out.
const RELAY_LEASE_RENEW_AFTER: Duration = Duration::from_secs(3);
/// The name of the one lease row in each store.
const RELAY_LEASE_NAME: &str = "outbox-relay";
/// Inbox rows deleted per statement, so one prune never holds a long write lock.
const PRUNE_BATCH: i64 = 5_000;

/// Why an event could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The store refused the row or the commit (retryable: see `store::is_transient`).
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    /// The event's data or headers could not be written as JSON (a bug in the event's type).
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
    /// The service records an event but publishes to no topic (a wiring mistake).
    #[error("{source_name} publishes no events")]
    NoTopic {
        /// The service.
        source_name: &'static str,
    },
}

/// Recording an event at the HTTP edge: the store's failures answer as the store's (a 503 when it is momentarily
/// unavailable), the rest as a fault on our side.
impl From<OutboxError> for crate::problem::Problem {
    fn from(error: OutboxError) -> Self {
        match error {
            OutboxError::Store(error) => error.into(),
            other => Self::unexpected(other),
        }
    }
}

/// Who records events through an outbox, and where they go.
#[derive(Debug, Clone, Copy)]
struct Publisher {
    /// The service: the events' CloudEvents `source`.
    source: &'static str,
    /// The topic (without prefix) its events go to, if it publishes.
    topic: Option<&'static str>,
}

/// Where a service records the events of a state change.
#[derive(Debug, Clone)]
pub struct Outbox {
    topics: Topics,
    wake: Arc<Notify>,
    publisher: Publisher,
}

impl Outbox {
    /// An outbox naming topics with `topics`, for events appended ready-made (see [`Self::append`]).
    pub fn new(topics: Topics) -> Self {
        Self {
            topics,
            wake: Arc::new(Notify::new()),
            publisher: Publisher {
                source: "unnamed",
                topic: None,
            },
        }
    }

    /// The same outbox, recording events of service `source` on its topic `topic` (without prefix).
    pub fn publishing(mut self, source: &'static str, topic: Option<&'static str>) -> Self {
        self.publisher = Publisher { source, topic };
        self
    }

    /// Records an event of this service inside the caller's transaction: its type, the aggregate it is about
    /// (`subject`, also the message key) and its data; source and topic are the service's.
    pub async fn record(
        &self,
        transaction: &mut StoreTransaction,
        event_type: &str,
        subject: &str,
        data: &impl serde::Serialize,
    ) -> Result<Event, OutboxError> {
        let Publisher { source, topic } = self.publisher;
        let topic = topic.ok_or(OutboxError::NoTopic {
            source_name: source,
        })?;
        let event = Event::new(event_type, source, subject, data)?;
        self.append(transaction, topic, &event).await?;
        Ok(event)
    }

    /// Commits the state change with the events recorded in it, then wakes the relay.
    pub async fn commit(&self, transaction: StoreTransaction) -> Result<(), OutboxError> {
        transaction.commit().await?;
        self.wake_relay();
        Ok(())
    }

    /// Appends `event` for the topic called `topic` (without prefix) inside the caller's transaction.
    pub async fn append(
        &self,
        transaction: &mut StoreTransaction,
        topic: &str,
        event: &Event,
    ) -> Result<(), OutboxError> {
        let message = event.to_message(self.topics.name(topic));
        let headers = serde_json::to_string(&message.headers)?;
        sqlx::query(
            "INSERT INTO kit_outbox (topic, message_key, headers, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(message.topic)
        .bind(message.key)
        .bind(headers)
        .bind(String::from_utf8_lossy(&message.payload).into_owned())
        .bind(now_millis())
        .execute(&mut **transaction)
        .await?;
        Ok(())
    }

    /// Tells the relay that rows were committed, so it publishes now instead of at its next poll.
    pub fn wake_relay(&self) {
        self.wake.notify_one();
    }

    /// The topic naming in use.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }
}

/// Why a relay round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading or marking rows failed.
    #[error("outbox store: {0}")]
    Store(#[from] sqlx::Error),
    /// The bus refused a message; the round stops there and is retried.
    #[error("publish to {topic} failed: {source}")]
    Publish {
        /// Topic of the first message that failed.
        topic: String,
        /// The bus error.
        source: super::bus::BusError,
    },
}

/// Publishes committed outbox rows.
#[derive(Debug, Clone)]
pub struct OutboxRelay {
    store: Store,
    bus: EventBus,
    wake: Arc<Notify>,
    poll_interval: Duration,
    service: &'static str,
}

type OutboxRow = (i64, String, String, String, String);

impl OutboxRelay {
    /// A relay for `outbox`'s rows in `store`.
    pub fn new(
        service: &'static str,
        store: Store,
        bus: EventBus,
        outbox: &Outbox,
        poll_interval: Duration,
    ) -> Self {
        crate::metrics::install();
        Self {
            store,
            bus,
            wake: outbox.wake.clone(),
            poll_interval,
            service,
        }
    }

    /// Publishes one batch of unsent rows; returns how many were published. Rows up to the first failure are
    /// marked sent; the failed one and those after it stay for the next round, keeping per-key order.
    pub async fn publish_pending(&self) -> Result<usize, RelayError> {
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "SELECT id, topic, message_key, headers, payload FROM kit_outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(BATCH_SIZE)
        .fetch_all(self.store.pool())
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut messages = Vec::with_capacity(rows.len());
        for (id, topic, key, headers, payload) in rows {
            // A row whose headers cannot be read would block the outbox forever; it was written by this code, so
            // this only happens after manual edits. Publish it without headers and let consumers park it.
            let headers = serde_json::from_str(&headers).unwrap_or_else(|error| {
                tracing::error!(outbox_id = id, %error, "outbox row has unreadable headers");
                Vec::new()
            });
            ids.push(id);
            messages.push(Message {
                topic,
                key,
                headers,
                payload: payload.into_bytes(),
            });
        }
        let topics: Vec<String> = messages
            .iter()
            .map(|message| message.topic.clone())
            .collect();
        let results = self.bus.publish_all(messages).await;
        let delivered = results.iter().take_while(|result| result.is_ok()).count();
        if delivered > 0 {
            self.mark_sent(&ids[..delivered]).await?;
            metrics::counter!(crate::metrics::OUTBOX_PUBLISHED, "service" => self.service)
                .increment(delivered as u64);
        }
        if let Some((index, Err(source))) = results
            .into_iter()
            .enumerate()
            .find(|(_, result)| result.is_err())
        {
            let failed = ids.len() - index;
            metrics::counter!(crate::metrics::OUTBOX_PUBLISH_FAILURES, "service" => self.service)
                .increment(failed as u64);
            return Err(RelayError::Publish {
                topic: topics[index].clone(),
                source,
            });
        }
        Ok(delivered)
    }

    async fn mark_sent(&self, ids: &[i64]) -> Result<(), sqlx::Error> {
        // Explicit ids, never a range: a row with a lower id may commit after we read (PostgreSQL sequences).
        let statement = format!(
            "UPDATE kit_outbox SET sent_at = $1 WHERE id IN ({})",
            crate::store::value_list(2, ids.len())
        );
        let mut query = sqlx::query(&statement).bind(now_millis());
        for id in ids {
            query = query.bind(*id);
        }
        query.execute(self.store.pool()).await?;
        Ok(())
    }

    /// Rows waiting to be published.
    pub async fn backlog(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM kit_outbox WHERE sent_at IS NULL")
            .fetch_one(self.store.pool())
            .await
    }

    async fn delete_old_rows(&self) -> Result<(), sqlx::Error> {
        let now = now_millis();
        sqlx::query("DELETE FROM kit_outbox WHERE sent_at IS NOT NULL AND sent_at < $1")
            .bind(now - i64::try_from(SENT_RETENTION.as_millis()).unwrap_or(i64::MAX))
            .execute(self.store.pool())
            .await?;
        let cutoff = now - i64::try_from(INBOX_RETENTION.as_millis()).unwrap_or(i64::MAX);
        // In batches, through the age index: a week of inbox rows is millions under load.
        loop {
            let pruned = sqlx::query(
                "DELETE FROM kit_inbox WHERE (consumer, event_id) IN \
                 (SELECT consumer, event_id FROM kit_inbox WHERE processed_at < $1 LIMIT $2)",
            )
            .bind(cutoff)
            .bind(PRUNE_BATCH)
            .execute(self.store.pool())
            .await?;
            if pruned.rows_affected() < u64::try_from(PRUNE_BATCH).unwrap_or(u64::MAX) {
                return Ok(());
            }
        }
    }

    /// Takes or renews this relay's lease (PostgreSQL only). The lease is a row with an expiry judged by the
    /// database's clock, so it needs no session state (it works behind a transaction-pooling proxy) and a holder
    /// that stops renewing (crashed, cut off, half-dead connection) loses it after [`RELAY_LEASE`], never later.
    /// Returns whether this relay holds the lease now.
    async fn acquire_lease(&self, holder: &str) -> Result<bool, sqlx::Error> {
        let database_now = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";
        let statement = format!(
            "INSERT INTO kit_relay_lease (name, holder, expires_at) VALUES ($1, $2, {database_now} + $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE kit_relay_lease.holder = excluded.holder OR kit_relay_lease.expires_at < {database_now}"
        );
        let taken = sqlx::query(&statement)
            .bind(RELAY_LEASE_NAME)
            .bind(holder)
            .bind(i64::try_from(RELAY_LEASE.as_millis()).unwrap_or(i64::MAX))
            .execute(self.store.pool())
            .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Gives the lease up at shutdown, so the next replica relays at once instead of after the expiry.
    async fn release_lease(&self, holder: &str) {
        let released = sqlx::query("DELETE FROM kit_relay_lease WHERE name = $1 AND holder = $2")
            .bind(RELAY_LEASE_NAME)
            .bind(holder)
            .execute(self.store.pool())
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, "could not release the outbox relay lease; it expires by itself");
        }
    }

    /// Relays until `shutdown`, then flushes what it can within `flush_timeout`.
    pub async fn run(self, shutdown: CancellationToken, flush_timeout: Duration) {
        let mut backoff = Duration::ZERO;
        let mut last_cleanup = tokio::time::Instant::now();
        let mut last_backlog_report: Option<tokio::time::Instant> = None;
        // SQLite has one replica, so it needs no lease; on PostgreSQL replicas share the outbox.
        let needs_lease = self.store.backend() == Backend::Postgres;
        let holder = format!("{}-{}", self.service, uuid::Uuid::new_v4());
        // When this relay last renewed its lease successfully (its local clock, taken before asking).
        let mut renewed_at: Option<tokio::time::Instant> = None;
        while !shutdown.is_cancelled() {
            if needs_lease && renewed_at.is_none_or(|at| at.elapsed() >= RELAY_LEASE_RENEW_AFTER) {
                let asked_at = tokio::time::Instant::now();
                match self.acquire_lease(&holder).await {
                    Ok(true) => {
                        if renewed_at.is_none() {
                            tracing::info!("this replica relays the outbox");
                        }
                        renewed_at = Some(asked_at);
                    }
                    Ok(false) => {
                        if renewed_at.take().is_some() {
                            tracing::warn!("another replica took the outbox relay lease");
                        }
                        self.sleep(&shutdown, self.poll_interval * 8).await;
                        continue;
                    }
                    Err(error) => {
                        // Past the lease another replica may relay; stop until this one holds it again.
                        if renewed_at.is_some_and(|at| at.elapsed() >= RELAY_LEASE) {
                            renewed_at = None;
                        }
                        tracing::warn!(%error, "cannot renew the outbox relay lease");
                        self.sleep(&shutdown, MAX_BACKOFF.min(self.poll_interval * 8))
                            .await;
                        continue;
                    }
                }
            }
            // A round waits for the broker's acknowledgements for as long as an outage lasts (the producer never
            // gives a message up, which keeps each key's order); shutdown must not wait for it.
            let round = tokio::select! {
                () = shutdown.cancelled() => break,
                round = self.publish_pending() => round,
            };
            match round {
                Ok(published) => {
                    backoff = Duration::ZERO;
                    if usize::try_from(BATCH_SIZE).is_ok_and(|batch| published == batch) {
                        continue;
                    }
                    // Counting on every round would cost a query per commit under load; once a second will do.
                    if last_backlog_report.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        last_backlog_report = Some(tokio::time::Instant::now());
                        self.report_backlog().await;
                    }
                    if last_cleanup.elapsed() > Duration::from_secs(60) {
                        last_cleanup = tokio::time::Instant::now();
                        if let Err(error) = self.delete_old_rows().await {
                            tracing::warn!(%error, "outbox cleanup failed");
                        }
                    }
                    self.wait_for_work(&shutdown).await;
                }
                Err(error) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "outbox relay backing off");
                    self.report_backlog().await;
                    // Commits keep waking the relay during an outage; the backoff must not be cut short by them.
                    self.sleep(&shutdown, backoff).await;
                }
            }
        }
        if !needs_lease || renewed_at.is_some_and(|at| at.elapsed() < RELAY_LEASE) {
            self.flush(flush_timeout).await;
        }
        if needs_lease && renewed_at.is_some() {
            self.release_lease(&holder).await;
        }
    }

    /// Publishes until the outbox is empty, a round fails, or `timeout` passes.
    pub async fn flush(&self, timeout: Duration) {
        let flushed = tokio::time::timeout(timeout, async {
            loop {
                match self.publish_pending().await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "outbox flush stopped; unsent rows will be published after restart");
                        break;
                    }
                }
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!("outbox flush timed out; unsent rows will be published after restart");
        }
        self.report_backlog().await;
    }

    async fn report_backlog(&self) {
        if let Ok(backlog) = self.backlog().await {
            metrics::gauge!(crate::metrics::OUTBOX_BACKLOG, "service" => self.service)
                .set(backlog as f64);
        }
    }

    /// Until a commit wakes the relay, the poll interval passes, or shutdown.
    async fn wait_for_work(&self, shutdown: &CancellationToken) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(self.poll_interval) => {}
        }
    }

    /// For `duration` or until shutdown, whatever commits happen meanwhile.
    async fn sleep(&self, shutdown: &CancellationToken, duration: Duration) {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(duration) => {}
        }
    }
}
