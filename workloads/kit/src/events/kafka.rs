//! The Kafka implementation of the bus, on librdkafka: an idempotent producer (no duplicates or reordering from
//! the producer's own retries), consumer groups with offsets stored by hand after the local commit and committed
//! by librdkafka in the background, and topic creation through the admin API.

use super::bus::{BusError, Delivery};
use super::envelope::Message;
use crate::config::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

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

    pub(super) fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<KafkaSubscription, BusError> {
        let mut config = self.base_config();
        if let Some(instance) = &self.config.group_instance_id {
            config.set("group.instance.id", instance);
        }
        let consumer: StreamConsumer<LagReporter> = config
            .set("group.id", group)
            // Offsets are stored by the consumer loop after the local transaction commits; librdkafka commits
            // the stored ones in the background and on close.
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            // Kafka's own default since 3.0. A member is only declared gone after this long without a heartbeat,
            // so a broker outage or a network blip shorter than this never costs it its membership. On tansu 0.6
            // that matters more than on Kafka: tansu expires members lazily without a rebalance, and a group left
            // with a leader that is no longer a member never completes one again (docs/architecture.md). A
            // shutdown does not wait for it: a dynamic member leaves its group on close, and its partitions move.
            .set("session.timeout.ms", "45000")
            // Reconnect within a second once the broker is back, instead of backing off up to 10 s.
            .set("reconnect.backoff.max.ms", "1000")
            // A consumer waits on an event its store cannot take yet (an outage) for as long as the outage lasts,
            // without polling. Leaving the group after the default 5 minutes would only hand the same event to
            // another member sharing the same store (and, on tansu 0.6, risk the group never rebalancing again);
            // the stuck partition is reported instead (metric and readiness detail).
            .set("max.poll.interval.ms", "86400000")
            .set("statistics.interval.ms", "5000")
            .set(
                "fetch.wait.max.ms",
                self.config.fetch_wait_max.as_millis().to_string(),
            )
            .create_with_context(LagReporter {
                group: group.to_owned(),
            })?;
        let topic_names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_names)?;
        Ok(KafkaSubscription { consumer })
    }
}

/// What a consumer group member of this process last reported about itself (librdkafka's statistics, every 5 s).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipReport {
    /// The group.
    pub group: String,
    /// Partitions assigned to this member.
    pub assigned_partitions: i32,
    /// librdkafka's join state (`steady` once it has its assignment).
    pub join_state: String,
    /// Rebalances this member went through.
    pub rebalances: i64,
    /// Messages waiting in the partitions it holds.
    pub lag: i64,
}

/// The latest report of each group's member in this process.
static MEMBERSHIPS: std::sync::LazyLock<
    std::sync::Mutex<std::collections::BTreeMap<String, MembershipReport>>,
> = std::sync::LazyLock::new(Default::default);

/// What the members of `groups` in this process last reported: a member with no partitions, or one that never
/// reaches `steady`, is what a rollout that stalled the saga looks like.
pub fn membership_reports(groups: &[String]) -> Vec<MembershipReport> {
    MEMBERSHIPS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .filter(|report| groups.contains(&report.group))
        .cloned()
        .collect()
}

/// Publishes consumer lag and group membership from librdkafka's periodic statistics.
struct LagReporter {
    group: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        let mut lag = 0;
        for topic_statistics in statistics.topics.values() {
            for (partition, partition_statistics) in &topic_statistics.partitions {
                if *partition >= 0 && partition_statistics.consumer_lag > 0 {
                    lag += partition_statistics.consumer_lag;
                }
            }
        }
        if let Some(membership) = &statistics.cgrp {
            metrics::gauge!(crate::metrics::CONSUMER_ASSIGNED_PARTITIONS, "group" => self.group.clone())
                .set(f64::from(membership.assignment_size));
            MEMBERSHIPS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    self.group.clone(),
                    MembershipReport {
                        group: self.group.clone(),
                        assigned_partitions: membership.assignment_size,
                        join_state: membership.join_state.clone(),
                        rebalances: membership.rebalance_cnt,
                        lag,
                    },
                );
        }
        for (topic, topic_statistics) in statistics.topics {
            for (partition, partition_statistics) in topic_statistics.partitions {
                // librdkafka reports -1 for unknown lag and uses partition -1 for its internal queue.
                if partition >= 0 && partition_statistics.consumer_lag >= 0 {
                    metrics::gauge!(
                        crate::metrics::CONSUMER_LAG,
                        "group" => self.group.clone(),
                        "topic" => topic.clone(),
                        "partition" => partition.to_string(),
                    )
                    .set(partition_statistics.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for LagReporter {}

/// A Kafka consumer group member.
pub struct KafkaSubscription {
    consumer: StreamConsumer<LagReporter>,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KafkaSubscription")
            .finish_non_exhaustive()
    }
}

impl KafkaSubscription {
    pub(super) async fn next(&mut self) -> Result<Delivery, BusError> {
        use rdkafka::Message as _;
        let message = self.consumer.recv().await?;
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

    pub(super) fn acknowledge(&self, delivery: &Delivery) -> Result<(), BusError> {
        // librdkafka's store commits offset + 1: the next message to read.
        self.consumer
            .store_offset(&delivery.message.topic, delivery.partition, delivery.offset)
            .map_err(BusError::Kafka)
    }

    pub(super) fn close(self) {
        MEMBERSHIPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.consumer.context().group);
        // Dropping closes the consumer: it commits stored offsets and leaves the group, so the partitions are
        // reassigned at once instead of after the session timeout.
        drop(self.consumer);
    }
}
