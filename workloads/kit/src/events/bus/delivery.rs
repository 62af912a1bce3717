//! What both buses hand out and fail with, below both so neither bus depends on the interface above it.

use crate::events::envelope::Message;

/// Why the bus refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The Kafka client reported an error.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A topic could not be created or does not exist.
    #[error("topic {topic}: {problem}")]
    Topic {
        /// The topic.
        topic: String,
        /// What went wrong.
        problem: String,
    },
    /// The broker did not answer in time.
    #[error("broker unreachable: {0}")]
    Unreachable(String),
    /// The in-process bus's journal could not be read or written.
    #[error("event journal: {0}")]
    Journal(String),
}

/// A message taken from a subscription, with its coordinates for logging and acknowledgement.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
}
