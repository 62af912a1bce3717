//! The `EventBus` interface. Two implementations sit behind it: Kafka for deployments and an in-process bus for
//! the all-in-one mode and unit tests. Both have the same semantics where it matters: named topics that must
//! exist before use, consumer groups with committed positions, redelivery of whatever was not acknowledged.

mod delivery;
pub(super) mod in_process;
pub(super) mod kafka;

use crate::events::envelope::Message;
pub use delivery::{BusError, Delivery};
use in_process::{InProcessBus, InProcessSubscription};
use kafka::{KafkaAssigner, KafkaBus, KafkaSubscription};

/// The event bus a service publishes to and consumes from.
#[derive(Debug, Clone)]
pub enum EventBus {
    /// Apache Kafka (or any Kafka-protocol broker) through librdkafka.
    Kafka(KafkaBus),
    /// Topics in this process's memory.
    InProcess(InProcessBus),
}

impl EventBus {
    /// Creates the topics that do not exist yet.
    pub async fn ensure_topics(&self, topics: &[String]) -> Result<(), BusError> {
        match self {
            Self::Kafka(bus) => bus.ensure_topics(topics).await,
            Self::InProcess(bus) => {
                bus.ensure_topics(topics);
                Ok(())
            }
        }
    }

    /// Publishes messages in the given order and waits until the broker has each of them; one result per message.
    pub async fn publish_all(&self, messages: Vec<Message>) -> Vec<Result<(), BusError>> {
        match self {
            Self::Kafka(bus) => bus.publish_all(messages).await,
            Self::InProcess(bus) => bus.publish_all(messages).await,
        }
    }

    /// Reads every partition of `topics` as group `group`, starting where the group's acknowledged positions
    /// left off (or at the beginning): for tests and tools. A service's consumers [`join`](Self::join) instead.
    pub fn subscribe(&self, group: &str, topics: &[String]) -> Result<Subscription, BusError> {
        match self {
            Self::Kafka(bus) => bus.subscribe(group, topics, true).map(Subscription::Kafka),
            Self::InProcess(bus) => bus.subscribe(group, topics).map(Subscription::InProcess),
        }
    }

    /// A member of consumer group `group` on `topics`. On Kafka it reads nothing until its partitions are
    /// assigned through [`Subscription::kafka_assigner`] (events/leases.rs shares them out in the service's
    /// store); the in-process bus has one reader per group, which reads everything.
    pub fn join(&self, group: &str, topics: &[String]) -> Result<Subscription, BusError> {
        match self {
            Self::Kafka(bus) => bus.subscribe(group, topics, false).map(Subscription::Kafka),
            Self::InProcess(bus) => bus.subscribe(group, topics).map(Subscription::InProcess),
        }
    }

    /// Whether the broker answers, for readiness.
    pub async fn ping(&self) -> Result<(), BusError> {
        match self {
            Self::Kafka(bus) => bus.ping().await,
            Self::InProcess(_) => Ok(()),
        }
    }

    /// A short name for logs and readiness details.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kafka(_) => "kafka",
            Self::InProcess(_) => "in-process",
        }
    }
}

/// A consumer group membership.
#[derive(Debug)]
pub enum Subscription {
    /// A Kafka consumer.
    Kafka(KafkaSubscription),
    /// An in-process reader.
    InProcess(InProcessSubscription),
}

impl Subscription {
    /// Waits for the next message.
    pub async fn next(&mut self) -> Result<Delivery, BusError> {
        match self {
            Self::Kafka(subscription) => subscription.next().await,
            Self::InProcess(subscription) => Ok(subscription.next().await),
        }
    }

    /// Records that `delivery` (and everything before it on its partition) is done; the group resumes after it.
    /// Call only after the local transaction that applied it has committed. (On Kafka the position that counts
    /// moved inside that transaction; see events/leases.rs.)
    pub fn acknowledge(&self, delivery: &Delivery) {
        match self {
            Self::Kafka(subscription) => subscription.acknowledge(delivery),
            Self::InProcess(subscription) => subscription.acknowledge(delivery),
        }
    }

    /// The handle that decides which partitions a Kafka subscription reads (`None` for the in-process bus,
    /// whose one reader per group reads everything).
    pub fn kafka_assigner(&self) -> Option<KafkaAssigner> {
        match self {
            Self::Kafka(subscription) => Some(subscription.assigner()),
            Self::InProcess(_) => None,
        }
    }

    /// Stops reading.
    pub fn close(self) {
        match self {
            Self::Kafka(subscription) => subscription.close(),
            Self::InProcess(_) => {}
        }
    }
}
