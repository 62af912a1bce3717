//! The Kafka implementation of the bus, on librdkafka: an idempotent producer (no duplicates or reordering from
//! the producer's own retries), consumers that read the partitions their member leased in the service's store
//! (events/leases.rs) from the positions kept there, and topic creation through the admin API.

use super::delivery::{BusError, Delivery};
use crate::config::KafkaConfig;
use crate::events::envelope::Message;
use crate::events::leases::PartitionKey;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// The most messages a record batch of ours holds.
const RECORD_BATCH_MESSAGES: i64 = 256;

/// How long an admin round trip may take.
const BROKER_ROUND_TRIP: Duration = Duration::from_secs(3);
/// How long the readiness ping may take: inside the readiness check's own bound, so the report says why.
const PING_TIMEOUT: Duration = Duration::from_millis(1500);

/// A connection to a Kafka cluster.
#[derive(Clone)]
pub struct KafkaBus {
    config: KafkaConfig,
    client_id: String,
    /// Replaced when librdkafka reports a fatal error: an idempotent producer that lost its sequence state
    /// (the broker forgot it, say) refuses every later message, which would stop the outbox for good.
    producer: Arc<RwLock<FutureProducer>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KafkaBus")
            .field("config", &self.config)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl KafkaBus {
    /// Creates the producer; connections are made lazily, so this succeeds while the broker is down.
    pub fn connect(config: &KafkaConfig, client_id: &str) -> Result<Self, BusError> {
        let producer = Self::create_producer(config, client_id)?;
        Ok(Self {
            config: config.clone(),
            client_id: client_id.to_owned(),
            producer: Arc::new(RwLock::new(producer)),
        })
    }

    fn create_producer(config: &KafkaConfig, client_id: &str) -> Result<FutureProducer, BusError> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", &config.bootstrap_servers)
            .set("client.id", client_id)
            .set("enable.idempotence", "true")
            // Never give a message up (0 = no timeout). A message that timed out would leave a gap the idempotent
            // producer fills with the later messages of the same partition, and the relay would publish it again
            // after them: one key's events out of order. Waiting keeps the order; the relay's round simply lasts
            // as long as the outage, and shutdown does not wait for it (unsent rows go out after the restart).
            .set("message.timeout.ms", "0")
            .set("linger.ms", "2")
            // Bounds a record batch, so a consumer that starts this many offsets early is sure to start at or
            // before the batch holding its position (see `KafkaAssigner::assign`).
            .set("batch.num.messages", RECORD_BATCH_MESSAGES.to_string())
            .set("reconnect.backoff.max.ms", "1000")
            .create()?)
    }

    fn producer(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Swaps in a fresh producer when the current one can no longer publish: librdkafka reported a fatal
    /// error, or the broker rejected its idempotence state (fenced epoch, unknown producer id, sequence gap),
    /// which happens after timeouts during an outage and never heals by itself. The failed messages stay in the
    /// outbox and go out through the new producer on the next round; consumers' inboxes absorb any duplicate.
    fn replace_producer_if_stuck(
        &self,
        producer: &FutureProducer,
        results: &[Result<(), BusError>],
    ) {
        let fatal = producer.client().fatal_error();
        let lost_idempotence_state = results.iter().any(|result| {
            matches!(
                result,
                Err(BusError::Kafka(KafkaError::MessageProduction(
                    RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::OutOfOrderSequenceNumber
                        | RDKafkaErrorCode::UnknownProducerId
                        | RDKafkaErrorCode::InvalidProducerEpoch
                        | RDKafkaErrorCode::InvalidProducerIdMapping
                )))
            )
        });
        if fatal.is_none() && !lost_idempotence_state {
            return;
        }
        tracing::error!(?fatal, "kafka producer can no longer publish; replacing it");
        match Self::create_producer(&self.config, &self.client_id) {
            Ok(fresh) => {
                *self
                    .producer
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = fresh
            }
            Err(error) => tracing::error!(%error, "cannot create a new kafka producer"),
        }
    }

    fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.config.bootstrap_servers)
            .set("client.id", &self.client_id);
        config
    }

    pub(super) async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        if topics.is_empty() {
            // The admin API refuses an empty request as an invalid argument.
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self.base_config().create()?;
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|topic| {
                NewTopic::new(
                    topic,
                    self.config.topic_partitions,
                    TopicReplication::Fixed(self.config.replication_factor),
                )
            })
            .collect();
        let options = AdminOptions::new().request_timeout(Some(BROKER_ROUND_TRIP));
        for result in admin.create_topics(&new_topics, &options).await? {
            match result {
                Ok(topic) => tracing::info!(topic, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(BusError::Topic {
                        topic,
                        problem: code.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    pub(super) async fn publish_all(&self, messages: Vec<Message>) -> Vec<Result<(), BusError>> {
        // Enqueue everything first, in order (librdkafka keeps per-partition order), then wait for the acks.
        let producer = self.producer();
        let mut pending = Vec::with_capacity(messages.len());
        for message in &messages {
            let headers = message.headers.iter().fold(
                OwnedHeaders::new_with_capacity(message.headers.len()),
                |headers, (key, value)| {
                    headers.insert(Header {
                        key,
                        value: Some(value.as_bytes()),
                    })
                },
            );
            let record = FutureRecord::to(&message.topic)
                .key(&message.key)
                .payload(&message.payload)
                .headers(headers);
            pending.push(
                producer
                    .send_result(record)
                    .map_err(|(error, _)| BusError::Kafka(error)),
            );
        }
        let mut results = Vec::with_capacity(pending.len());
        for enqueued in pending {
            results.push(match enqueued {
                Err(error) => Err(error),
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((error, _))) => Err(BusError::Kafka(error)),
                    Err(_canceled) => Err(BusError::Unreachable(
                        "producer dropped the message".to_owned(),
                    )),
                },
            });
        }
        if results.iter().any(Result::is_err) {
            self.replace_producer_if_stuck(&producer, &results);
        }
        results
    }

    pub(super) async fn ping(&self) -> Result<(), BusError> {
        let producer = self.producer();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, PING_TIMEOUT)
                .map(|_| ())
        })
        .await
        .map_err(|error| BusError::Unreachable(error.to_string()))?
        .map_err(BusError::Kafka)
    }

    /// A consumer for `group` on `topics` that never joins the broker's group. A member (`read_all` false)
    /// reads the partitions it is given ([`KafkaAssigner::assign`]): which member reads what, and from where, is
    /// kept in the service's store (events/leases.rs). A reader (`read_all`) takes every partition itself, from
    /// the group's committed offsets (tests and tools).
    pub(super) fn subscribe(
        &self,
        group: &str,
        topics: &[String],
        read_all: bool,
    ) -> Result<KafkaSubscription, BusError> {
        let consumer: StreamConsumer<LagReporter> = self
            .base_config()
            // Nothing joins the group. A member's positions are in its store and it never talks to the group
            // coordinator (no commits: closing then waits for nothing). A reader (tests, tools) commits what it
            // acknowledged and starts from the group's committed offsets, as a standalone consumer does.
            .set("group.id", group)
            .set(
                "enable.auto.commit",
                if read_all { "true" } else { "false" },
            )
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            // Reconnect within a second once the broker is back, instead of backing off up to 10 s.
            .set("reconnect.backoff.max.ms", "1000")
            .set("statistics.interval.ms", "5000")
            .set(
                "fetch.wait.max.ms",
                self.config.fetch_wait_max.as_millis().to_string(),
            )
            .create_with_context(LagReporter {
                group: group.to_owned(),
            })?;
        // Unique per process start: a restarted container is a new member, and the old one's leases expire.
        let member = format!(
            "{}-{}",
            self.config
                .member_name
                .as_deref()
                .unwrap_or(&self.client_id),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(KafkaSubscription {
            unassigned_reader: read_all,
            assigner: KafkaAssigner {
                consumer: Arc::new(consumer),
                topics: topics.to_vec(),
                member,
            },
        })
    }
}

/// What a member of a consumer group in this process reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipReport {
    /// The group.
    pub group: String,
    /// This member's id in the group's lease table.
    pub member: String,
    /// Partitions this member holds.
    pub assigned_partitions: usize,
    /// Members of the group alive in the store, this one included.
    pub live_members: usize,
    /// Messages waiting in the partitions it holds (librdkafka's statistics, every 5 s).
    pub lag: i64,
}

/// The latest report of each group's member in this process.
static MEMBERSHIPS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::BTreeMap<String, MembershipReport>>,
> = std::sync::LazyLock::new(Default::default);

/// What the members of `groups` in this process last reported: a member with no partitions while the group has
/// work, or with a lag that does not shrink, is what a stalled saga looks like.
pub fn membership_reports(groups: &[String]) -> Vec<MembershipReport> {
    MEMBERSHIPS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .filter(|report| groups.contains(&report.group))
        .cloned()
        .collect()
}

/// Records what the member of `group` holds after a lease round.
pub(in crate::events) fn report_membership(
    group: &str,
    member: &str,
    assigned: usize,
    live_members: usize,
) {
    metrics::gauge!(crate::metrics::CONSUMER_ASSIGNED_PARTITIONS, "group" => group.to_owned())
        .set(assigned as f64);
    let mut reports = MEMBERSHIPS.lock().unwrap_or_else(PoisonError::into_inner);
    let report = reports
        .entry(group.to_owned())
        .or_insert_with(|| MembershipReport {
            group: group.to_owned(),
            member: member.to_owned(),
            assigned_partitions: 0,
            live_members: 0,
            lag: 0,
        });
    report.member = member.to_owned();
    report.assigned_partitions = assigned;
    report.live_members = live_members;
}

/// Publishes consumer lag and group membership from librdkafka's periodic statistics.
struct LagReporter {
    group: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        let mut total = 0;
        for (topic, topic_statistics) in statistics.topics {
            for (partition, partition_statistics) in topic_statistics.partitions {
                // Positions are stored after each local commit; librdkafka reports -1 for an unknown lag and uses
                // partition -1 for its internal queue.
                let lag = partition_statistics.consumer_lag_stored;
                if partition >= 0 && lag >= 0 {
                    total += lag;
                    metrics::gauge!(
                        crate::metrics::CONSUMER_LAG,
                        "group" => self.group.clone(),
                        "topic" => topic.clone(),
                        "partition" => partition.to_string(),
                    )
                    .set(lag as f64);
                }
            }
        }
        if let Some(report) = MEMBERSHIPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&self.group)
        {
            report.lag = total;
        }
    }
}

impl ConsumerContext for LagReporter {}

/// A consumer of a group's topics, reading the partitions its member holds.
pub struct KafkaSubscription {
    assigner: KafkaAssigner,
    /// A reader that has not taken its partitions yet (it does on the first `next`).
    unassigned_reader: bool,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KafkaSubscription")
            .field("topics", &self.assigner.topics)
            .finish_non_exhaustive()
    }
}

/// Changes which partitions a [`KafkaSubscription`] reads, from the task that keeps the leases.
#[derive(Clone)]
pub struct KafkaAssigner {
    consumer: Arc<StreamConsumer<LagReporter>>,
    topics: Vec<String>,
    member: String,
}

impl std::fmt::Debug for KafkaAssigner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KafkaAssigner")
            .field("topics", &self.topics)
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl KafkaAssigner {
    /// This consumer's member id in its group's lease table.
    pub fn member(&self) -> &str {
        &self.member
    }

    /// Every partition of the subscribed topics, as the broker reports them now.
    pub async fn partitions(&self) -> Result<Vec<PartitionKey>, BusError> {
        let consumer = self.consumer.clone();
        let topics = self.topics.clone();
        tokio::task::spawn_blocking(move || {
            let mut partitions = Vec::new();
            for topic in &topics {
                let metadata = consumer.fetch_metadata(Some(topic), BROKER_ROUND_TRIP)?;
                for described in metadata.topics() {
                    if described.error().is_some() {
                        return Err(BusError::Topic {
                            topic: topic.clone(),
                            problem: format!("{:?}", described.error()),
                        });
                    }
                    partitions.extend(described.partitions().iter().map(|partition| {
                        PartitionKey {
                            topic: described.name().to_owned(),
                            partition: partition.id(),
                        }
                    }));
                }
            }
            Ok(partitions)
        })
        .await
        .map_err(|error| BusError::Unreachable(error.to_string()))?
    }

    /// Reads exactly `partitions`, each from at or before its position (`None`: from the beginning; the inbox and
    /// the consumers' tombstones make a replay harmless); the caller drops what comes before the position.
    /// Messages already fetched and not yet taken are dropped.
    ///
    /// At or before: tansu 0.6 answers a fetch from an offset inside a record batch with the batches after it,
    /// so a consumer resuming in the middle of a batch would never see the rest of that batch (measured:
    /// kit/tests/partition_leases.rs). Starting a whole batch early is always at or before the batch holding the
    /// position, on tansu as on Kafka (which returns the holding batch).
    pub fn assign(&self, partitions: &[(PartitionKey, Option<i64>)]) -> Result<(), BusError> {
        let mut list = TopicPartitionList::with_capacity(partitions.len());
        for (key, position) in partitions {
            // Not the group's committed offset (`Offset::Stored`): librdkafka gives up looking it up after two
            // failed attempts and then never starts fetching the partition, which would hold it for good.
            let offset = position.map_or(Offset::Beginning, |position| {
                Offset::Offset((position - RECORD_BATCH_MESSAGES).max(0))
            });
            list.add_partition_offset(&key.topic, key.partition, offset)?;
        }
        self.consumer.assign(&list)?;
        Ok(())
    }
}

impl KafkaSubscription {
    pub(super) async fn next(&mut self) -> Result<Delivery, BusError> {
        use rdkafka::Message as _;
        if self.unassigned_reader {
            let mut every = TopicPartitionList::new();
            for key in self.assigner.partitions().await? {
                every.add_partition_offset(&key.topic, key.partition, Offset::Stored)?;
            }
            self.assigner.consumer.assign(&every)?;
            self.unassigned_reader = false;
        }
        let message = self.assigner.consumer.recv().await?;
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (
                            header.key.to_owned(),
                            String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Delivery {
            message: Message {
                topic: message.topic().to_owned(),
                key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                headers,
                payload: message.payload().unwrap_or_default().to_vec(),
            },
            partition: message.partition(),
            offset: message.offset(),
        })
    }

    /// The handle that changes which partitions this subscription reads.
    pub(super) fn assigner(&self) -> KafkaAssigner {
        self.assigner.clone()
    }

    pub(super) fn acknowledge(&self, delivery: &Delivery) {
        // A member's position that counts moved in the store with the effect. This copy feeds the lag statistics
        // (and a reader's commits); a partition handed over meanwhile refuses it, harmlessly.
        let _ = self.assigner.consumer.store_offset(
            &delivery.message.topic,
            delivery.partition,
            delivery.offset,
        );
    }

    pub(super) fn close(self) {
        MEMBERSHIPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.assigner.consumer.context().group);
    }
}
