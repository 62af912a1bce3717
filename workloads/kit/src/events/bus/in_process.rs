//! Topics in memory: one partition each, an append-only log, committed positions per consumer group.
//! Mirrors Kafka closely enough that a service cannot tell which bus it runs on.
//!
//! Optionally backed by a journal (a SQLite file) so the all-in-one mode keeps its topics across restarts, as a
//! broker would: every message is written to the journal before it is visible to consumers, and committed
//! positions are saved at checkpoints. A crash between checkpoints only redelivers, which the inbox absorbs.
//!
//! With a journal, memory holds only what some group that reads the topic has not committed yet: the rest stays
//! on disk, and a reader behind (a new group, a rebuild) reads it from the journal. So the process's memory does
//! not grow with the number of events it has ever carried. Without a journal (tests) everything stays.

use super::delivery::{BusError, Delivery};
use crate::events::envelope::Message;
use crate::store::{ROWS_PER_STATEMENT, Store, value_rows};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

/// The journal's tables; created when missing, never migrated (the journal holds only what a broker would).
const JOURNAL_SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS kit_bus_messages (
        topic TEXT NOT NULL,
        position BIGINT NOT NULL,
        message_key TEXT NOT NULL,
        headers TEXT NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (topic, position)
    )",
    "CREATE TABLE IF NOT EXISTS kit_bus_positions (
        consumer_group TEXT NOT NULL,
        topic TEXT NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (consumer_group, topic)
    )",
];

#[derive(Debug)]
struct Journal {
    store: Store,
    /// Held while a batch is written and appended, so journal positions and memory positions agree.
    append_order: tokio::sync::Mutex<()>,
}

/// One topic's messages held in memory: positions `base..base + messages.len()`.
#[derive(Debug, Default)]
struct TopicLog {
    base: i64,
    messages: VecDeque<Message>,
}

impl TopicLog {
    fn end(&self) -> i64 {
        self.base + i64::try_from(self.messages.len()).unwrap_or(i64::MAX)
    }

    fn get(&self, position: i64) -> Option<&Message> {
        let at = usize::try_from(position.checked_sub(self.base)?).ok()?;
        self.messages.get(at)
    }

    /// Forgets the messages before `position` (they stay in the journal).
    fn trim_before(&mut self, position: i64) {
        while self.base < position && self.messages.pop_front().is_some() {
            self.base += 1;
        }
    }
}

#[derive(Debug, Default)]
struct Logs {
    topics: HashMap<String, TopicLog>,
    committed: HashMap<(String, String), i64>,
}

impl Logs {
    /// The lowest position some group reading `topic` has not committed: what memory must still hold.
    fn lowest_uncommitted(&self, topic: &str) -> Option<i64> {
        self.committed
            .iter()
            .filter(|((_, committed_topic), _)| committed_topic == topic)
            .map(|(_, position)| *position)
            .min()
    }
}

/// Messages read from the journal at once by a reader behind what memory holds.
const JOURNAL_READ_BATCH: i64 = 256;

/// An event bus inside this process.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    logs: Arc<Mutex<Logs>>,
    appended: Arc<watch::Sender<u64>>,
    journal: Option<Arc<Journal>>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self {
            logs: Arc::default(),
            appended: Arc::new(watch::Sender::new(0)),
            journal: None,
        }
    }
}

impl InProcessBus {
    /// An empty bus that forgets everything when the process ends.
    pub fn new() -> Self {
        Self::default()
    }

    /// A bus journaled in `store`: topics, messages and the last checkpointed positions come back on reopening.
    pub async fn durable(store: Store) -> Result<Self, BusError> {
        for statement in JOURNAL_SCHEMA {
            sqlx::query(statement)
                .execute(store.pool())
                .await
                .map_err(journal_error)?;
        }
        let positions: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT consumer_group, topic, position FROM kit_bus_positions")
                .fetch_all(store.pool())
                .await
                .map_err(journal_error)?;
        let mut logs = Logs::default();
        for (group, topic, position) in positions {
            logs.committed.insert((group, topic), position);
        }
        let ends: Vec<(String, i64)> =
            sqlx::query_as("SELECT topic, MAX(position) + 1 FROM kit_bus_messages GROUP BY topic")
                .fetch_all(store.pool())
                .await
                .map_err(journal_error)?;
        for (topic, end) in ends {
            // Only what some group has not committed comes back into memory.
            let base = logs.lowest_uncommitted(&topic).unwrap_or(0).min(end);
            let rows: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(
                "SELECT position, message_key, headers, payload FROM kit_bus_messages
                 WHERE topic = $1 AND position >= $2 ORDER BY position",
            )
            .bind(&topic)
            .bind(base)
            .fetch_all(store.pool())
            .await
            .map_err(journal_error)?;
            let mut log = TopicLog {
                base,
                messages: VecDeque::with_capacity(rows.len()),
            };
            for (position, key, headers, payload) in rows {
                if position != log.end() {
                    return Err(BusError::Journal(format!(
                        "{topic}: position {position} follows position {}",
                        log.end() - 1
                    )));
                }
                log.messages
                    .push_back(journal_message(&topic, position, key, &headers, payload)?);
            }
            logs.topics.insert(topic, log);
        }
        Ok(Self {
            logs: Arc::new(Mutex::new(logs)),
            appended: Arc::new(watch::Sender::new(0)),
            journal: Some(Arc::new(Journal {
                store,
                append_order: tokio::sync::Mutex::new(()),
            })),
        })
    }

    /// Saves every group's committed position to the journal (a no-op without one). Positions saved late only
    /// cause redelivery, which consumers absorb, so a periodic checkpoint plus one at shutdown is enough.
    pub async fn checkpoint(&self) -> Result<(), BusError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let committed: Vec<((String, String), i64)> = self
            .logs()
            .committed
            .iter()
            .map(|(key, position)| (key.clone(), *position))
            .collect();
        let mut transaction = journal.store.pool().begin().await.map_err(journal_error)?;
        for ((group, topic), position) in committed {
            sqlx::query(
                "INSERT INTO kit_bus_positions (consumer_group, topic, position) VALUES ($1, $2, $3)
                 ON CONFLICT (consumer_group, topic) DO UPDATE SET position = excluded.position",
            )
            .bind(group)
            .bind(topic)
            .bind(position)
            .execute(&mut *transaction)
            .await
            .map_err(journal_error)?;
        }
        transaction.commit().await.map_err(journal_error)
    }

    /// Publishes `messages` in order: journaled first (all or none), then visible to consumers.
    pub(super) async fn publish_all(&self, messages: Vec<Message>) -> Vec<Result<(), BusError>> {
        let Some(journal) = &self.journal else {
            return messages
                .into_iter()
                .map(|message| self.publish(message))
                .collect();
        };
        let _in_order = journal.append_order.lock().await;
        let written = self.write_to_journal(journal, &messages).await;
        match written {
            Ok(()) => messages
                .into_iter()
                .map(|message| self.publish(message))
                .collect(),
            Err(error) => messages
                .iter()
                .map(|_| Err(BusError::Journal(error.to_string())))
                .collect(),
        }
    }

    async fn write_to_journal(
        &self,
        journal: &Journal,
        messages: &[Message],
    ) -> Result<(), BusError> {
        // Positions continue each topic's log; the append-order lock keeps anyone else from appending meanwhile.
        let mut next: HashMap<&str, i64> = HashMap::new();
        {
            let logs = self.logs();
            for message in messages {
                let Some(log) = logs.topics.get(&message.topic) else {
                    return Err(BusError::Topic {
                        topic: message.topic.clone(),
                        problem: "does not exist".to_owned(),
                    });
                };
                next.entry(message.topic.as_str()).or_insert(log.end());
            }
        }
        let mut transaction = journal.store.pool().begin().await.map_err(journal_error)?;
        for chunk in messages.chunks(ROWS_PER_STATEMENT) {
            let statement = format!(
                "INSERT INTO kit_bus_messages (topic, position, message_key, headers, payload) VALUES {}",
                value_rows(1, chunk.len(), 5)
            );
            let mut query = sqlx::query(&statement);
            for message in chunk {
                let position = next.entry(message.topic.as_str()).or_default();
                let headers = serde_json::to_string(&message.headers)
                    .map_err(|error| BusError::Journal(error.to_string()))?;
                query = query
                    .bind(&message.topic)
                    .bind(*position)
                    .bind(&message.key)
                    .bind(headers)
                    .bind(&message.payload);
                *position += 1;
            }
            query
                .execute(&mut *transaction)
                .await
                .map_err(journal_error)?;
        }
        transaction.commit().await.map_err(journal_error)
    }

    fn logs(&self) -> MutexGuard<'_, Logs> {
        // A panic while holding the lock cannot leave a log half-appended (push is atomic), so carry on.
        self.logs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn ensure_topics(&self, topics: &[String]) {
        let mut logs = self.logs();
        for topic in topics {
            logs.topics.entry(topic.clone()).or_default();
        }
    }

    pub(super) fn publish(&self, message: Message) -> Result<(), BusError> {
        {
            let mut logs = self.logs();
            let log = logs
                .topics
                .get_mut(&message.topic)
                .ok_or_else(|| BusError::Topic {
                    topic: message.topic.clone(),
                    problem: "does not exist".to_owned(),
                })?;
            log.messages.push_back(message);
        }
        self.appended.send_modify(|version| *version += 1);
        Ok(())
    }

    pub(super) fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<InProcessSubscription, BusError> {
        let logs = self.logs();
        let mut positions = Vec::with_capacity(topics.len());
        for topic in topics {
            if !logs.topics.contains_key(topic) {
                return Err(BusError::Topic {
                    topic: topic.clone(),
                    problem: "does not exist".to_owned(),
                });
            }
            let committed = logs
                .committed
                .get(&(group.to_owned(), topic.clone()))
                .copied()
                .unwrap_or(0);
            positions.push((topic.clone(), committed));
        }
        Ok(InProcessSubscription {
            bus: self.clone(),
            group: group.to_owned(),
            positions,
            next_topic: 0,
            appended: self.appended.subscribe(),
            from_journal: VecDeque::new(),
        })
    }

    /// The messages of `topic` held in memory: every one ever published on a bus without a journal (tests), the
    /// ones some group has not committed on a journaled bus.
    pub fn messages(&self, topic: &str) -> Vec<Message> {
        self.logs()
            .topics
            .get(topic)
            .map(|log| log.messages.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Reads up to a batch of `topic`'s messages from `from` on, from the journal.
    async fn read_journal(&self, topic: &str, from: i64) -> Result<Vec<Delivery>, BusError> {
        let Some(journal) = &self.journal else {
            return Ok(Vec::new());
        };
        let rows: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT position, message_key, headers, payload FROM kit_bus_messages
             WHERE topic = $1 AND position >= $2 ORDER BY position LIMIT $3",
        )
        .bind(topic)
        .bind(from)
        .bind(JOURNAL_READ_BATCH)
        .fetch_all(journal.store.pool())
        .await
        .map_err(journal_error)?;
        rows.into_iter()
            .map(|(position, key, headers, payload)| {
                Ok(Delivery {
                    message: journal_message(topic, position, key, &headers, payload)?,
                    partition: 0,
                    offset: position,
                })
            })
            .collect()
    }
}

/// A consumer group member reading from memory (and from the journal when it is behind what memory holds).
#[derive(Debug)]
pub struct InProcessSubscription {
    bus: InProcessBus,
    group: String,
    positions: Vec<(String, i64)>,
    next_topic: usize,
    appended: watch::Receiver<u64>,
    /// Messages read from the journal, not delivered yet.
    from_journal: VecDeque<Delivery>,
}

/// What the next look finds.
enum Next {
    Message(Delivery),
    /// The reader of this topic is behind what memory holds.
    InJournal {
        topic: String,
        position: i64,
    },
    Nothing,
}

impl InProcessSubscription {
    fn take_next(&mut self) -> Next {
        if let Some(delivery) = self.from_journal.pop_front() {
            if let Some((_, position)) = self
                .positions
                .iter_mut()
                .find(|(topic, _)| *topic == delivery.message.topic)
            {
                *position = delivery.offset + 1;
            }
            return Next::Message(delivery);
        }
        let logs = self.bus.logs();
        // Round-robin over topics so a busy topic cannot starve the others.
        for step in 0..self.positions.len() {
            let index = (self.next_topic + step) % self.positions.len();
            let (topic, position) = &mut self.positions[index];
            let Some(log) = logs.topics.get(topic.as_str()) else {
                return Next::Nothing;
            };
            if *position < log.base {
                return Next::InJournal {
                    topic: topic.clone(),
                    position: *position,
                };
            }
            if let Some(message) = log.get(*position) {
                let delivery = Delivery {
                    message: message.clone(),
                    partition: 0,
                    offset: *position,
                };
                *position += 1;
                self.next_topic = index + 1;
                return Next::Message(delivery);
            }
        }
        Next::Nothing
    }

    pub(super) async fn next(&mut self) -> Delivery {
        loop {
            // Mark the current version seen before looking, so an append after the look still wakes us.
            self.appended.borrow_and_update();
            match self.take_next() {
                Next::Message(delivery) => return delivery,
                Next::InJournal { topic, position } => {
                    match self.bus.read_journal(&topic, position).await {
                        Ok(deliveries) => self.from_journal.extend(deliveries),
                        Err(error) => {
                            // The journal is this process's own SQLite file: try again shortly.
                            tracing::warn!(%error, topic, position, "cannot read the bus journal");
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                    }
                }
                Next::Nothing => {
                    if self.appended.changed().await.is_err() {
                        // The sender lives as long as the bus, which this subscription holds: cannot happen.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    pub(super) fn acknowledge(&self, delivery: &Delivery) {
        let topic = &delivery.message.topic;
        let mut logs = self.bus.logs();
        let committed = logs
            .committed
            .entry((self.group.clone(), topic.clone()))
            .or_insert(0);
        *committed = (*committed).max(delivery.offset + 1);
        // What every reading group has committed is on disk already: memory lets it go.
        if self.bus.journal.is_some()
            && let Some(lowest) = logs.lowest_uncommitted(topic)
            && let Some(log) = logs.topics.get_mut(topic)
        {
            log.trim_before(lowest);
        }
    }
}

fn journal_message(
    topic: &str,
    position: i64,
    key: String,
    headers: &str,
    payload: Vec<u8>,
) -> Result<Message, BusError> {
    let headers: Vec<(String, String)> = serde_json::from_str(headers).map_err(|error| {
        BusError::Journal(format!("{topic}@{position}: unreadable headers: {error}"))
    })?;
    Ok(Message {
        topic: topic.to_owned(),
        key,
        headers,
        payload,
    })
}

fn journal_error(error: sqlx::Error) -> BusError {
    BusError::Journal(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(topic: &str, key: &str) -> Message {
        Message {
            topic: topic.to_owned(),
            key: key.to_owned(),
            headers: Vec::new(),
            payload: key.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn unacknowledged_messages_are_redelivered_to_the_next_member_of_the_group() {
        let bus = InProcessBus::new();
        let topics = vec!["food.orders".to_owned()];
        bus.ensure_topics(&topics);
        bus.publish(message("food.orders", "a")).unwrap();
        bus.publish(message("food.orders", "b")).unwrap();
        let mut first = bus.subscribe("kitchen", &topics).unwrap();
        let a = first.next().await;
        first.acknowledge(&a);
        let b = first.next().await;
        assert_eq!(b.message.key, "b");
        drop(first);
        let mut second = bus.subscribe("kitchen", &topics).unwrap();
        assert_eq!(
            second.next().await.message.key,
            "b",
            "b was never acknowledged"
        );
        let mut other_group = bus.subscribe("mypage", &topics).unwrap();
        assert_eq!(
            other_group.next().await.message.key,
            "a",
            "groups are independent"
        );
    }

    #[tokio::test]
    async fn subscriber_wakes_for_a_later_publish_and_unknown_topics_are_refused() {
        let bus = InProcessBus::new();
        let topics = vec!["food.t".to_owned()];
        bus.ensure_topics(&topics);
        let mut subscription = bus.subscribe("g", &topics).unwrap();
        let waiter = tokio::spawn(async move { subscription.next().await.message.key });
        tokio::task::yield_now().await;
        bus.publish(message("food.t", "late")).unwrap();
        assert_eq!(waiter.await.unwrap(), "late");
        assert!(bus.publish(message("food.missing", "x")).is_err());
        assert!(bus.subscribe("g", &["food.missing".to_owned()]).is_err());
    }

    #[tokio::test]
    async fn a_journaled_bus_reopens_with_its_messages_and_checkpointed_positions() {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/events.db", directory.path().display());
        let topics = vec!["food.orders".to_owned(), "food.kitchen".to_owned()];
        {
            let store = Store::connect(&url, 1).await.unwrap();
            let bus = InProcessBus::durable(store.clone()).await.unwrap();
            bus.ensure_topics(&topics);
            let published = bus
                .publish_all(vec![
                    message("food.orders", "a"),
                    message("food.kitchen", "k"),
                    message("food.orders", "b"),
                ])
                .await;
            assert!(published.iter().all(Result::is_ok));
            let mut subscription = bus.subscribe("kitchen", &topics[..1]).unwrap();
            let a = subscription.next().await;
            subscription.acknowledge(&a);
            bus.checkpoint().await.unwrap();
            let b = subscription.next().await;
            subscription.acknowledge(&b);
            // No checkpoint after b: as after a crash, b comes again.
            store.close().await;
        }
        let bus = InProcessBus::durable(Store::connect(&url, 1).await.unwrap())
            .await
            .unwrap();
        assert_eq!(
            bus.messages("food.orders")
                .iter()
                .map(|message| message.key.as_str())
                .collect::<Vec<_>>(),
            ["b"],
            "a was committed and checkpointed: it stays on disk only"
        );
        let mut newcomer = bus.subscribe("mypage", &topics[..1]).unwrap();
        assert_eq!(
            newcomer.next().await.message.key,
            "a",
            "read from the journal"
        );
        assert_eq!(newcomer.next().await.message.key, "b");
        assert_eq!(bus.messages("food.kitchen")[0].payload, b"k");
        let mut resumed = bus.subscribe("kitchen", &topics[..1]).unwrap();
        assert_eq!(resumed.next().await.message.key, "b");
        bus.publish_all(vec![message("food.orders", "c")]).await[0]
            .as_ref()
            .unwrap();
        assert_eq!(resumed.next().await.message.key, "c");
        assert!(
            bus.publish_all(vec![message("food.missing", "x")]).await[0].is_err(),
            "unknown topics are refused before anything is journaled"
        );
    }

    #[tokio::test]
    async fn a_journaled_bus_keeps_in_memory_only_what_is_not_committed_and_serves_the_rest_from_disk()
     {
        let directory = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/events.db", directory.path().display());
        let topics = vec!["food.orders".to_owned()];
        let store = Store::connect(&url, 1).await.unwrap();
        let bus = InProcessBus::durable(store.clone()).await.unwrap();
        bus.ensure_topics(&topics);
        let published: Vec<Message> = (0..1000)
            .map(|index| message("food.orders", &format!("m{index}")))
            .collect();
        assert!(bus.publish_all(published).await.iter().all(Result::is_ok));
        let mut kitchen = bus.subscribe("kitchen", &topics).unwrap();
        for _ in 0..1000 {
            let delivery = kitchen.next().await;
            kitchen.acknowledge(&delivery);
        }
        assert!(
            bus.messages("food.orders").is_empty(),
            "everything is committed by the only reading group: nothing stays in memory"
        );
        // A group that comes later (a rebuild) still reads every message, in order, from the journal.
        let mut rebuild = bus.subscribe("mypage", &topics).unwrap();
        for index in 0..1000 {
            let delivery = rebuild.next().await;
            assert_eq!(delivery.offset, index);
            assert_eq!(delivery.message.key, format!("m{index}"));
        }
        bus.publish_all(vec![message("food.orders", "late")]).await[0]
            .as_ref()
            .unwrap();
        assert_eq!(rebuild.next().await.message.key, "late", "then from memory");
        assert_eq!(kitchen.next().await.message.key, "late");
        bus.checkpoint().await.unwrap();
        store.close().await;
        let reopened = InProcessBus::durable(Store::connect(&url, 1).await.unwrap())
            .await
            .unwrap();
        assert_eq!(
            reopened.messages("food.orders").len(),
            1,
            "only what the slowest group had not committed comes back into memory"
        );
        let mut again = reopened.subscribe("kitchen", &topics).unwrap();
        assert_eq!(again.next().await.message.key, "late");
    }
}
