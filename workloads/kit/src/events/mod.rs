//! The event backbone: the envelope every event travels in, the bus (Kafka or in-process), the transactional
//! outbox with its relay, the idempotent inbox and the consumer loop that ties inbox and handler together.

mod bus;
mod consumer;
mod envelope;
mod in_process;
mod inbox;
mod kafka;
mod leases;
mod outbox;

pub use bus::{BusError, Delivery, EventBus, Subscription};
pub use consumer::{
    ConsumerOutcome, EventHandler, HandlerError, StuckDelivery, apply_delivery, run_consumer,
    stuck_deliveries,
};
pub use envelope::{Event, Message, PoisonReason, header_names};
pub use in_process::InProcessBus;
pub use inbox::record_first_delivery;
pub use kafka::{KafkaAssigner, KafkaBus, MembershipReport, membership_reports};
pub use leases::{
    HeldPartitions, LeasePlan, LeaseRound, LeaseRow, PartitionKey, PartitionLeases, Position,
};
pub use outbox::{Outbox, OutboxRelay};

/// Checks a topic prefix against Kafka's rules for topic names (the prefix plus `.` plus a name must stay valid).
pub fn validate_topic_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 200 {
        return Err("must be 1 to 200 characters".to_owned());
    }
    if prefix == "." || prefix == ".." {
        return Err("cannot be '.' or '..'".to_owned());
    }
    if let Some(bad) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "may contain only ASCII letters, digits, '.', '_' and '-', found '{bad}'"
        ));
    }
    Ok(())
}

/// Topic naming: `<prefix>.<name>`, e.g. `food.orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (validated by the configuration).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The full name of the topic called `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// The full names of several topics.
    pub fn names(&self, names: &[&str]) -> Vec<String> {
        names.iter().map(|name| self.name(name)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_prefix_follows_kafka_rules() {
        assert!(validate_topic_prefix("food").is_ok());
        assert!(validate_topic_prefix("good-morning.prod_1").is_ok());
        assert!(validate_topic_prefix("").is_err());
        assert!(validate_topic_prefix("..").is_err());
        assert!(
            validate_topic_prefix("food/orders")
                .unwrap_err()
                .contains("'/'")
        );
        assert!(validate_topic_prefix(&"a".repeat(201)).is_err());
        assert_eq!(Topics::new("food").name("orders"), "food.orders");
    }
}
