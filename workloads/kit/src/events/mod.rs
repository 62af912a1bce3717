//! The event backbone: the envelope every event travels in, the bus (Kafka or in-process), the transactional
//! outbox with its relay, the idempotent inbox and the consumer loop that ties inbox and handler together.

mod bus;
mod consumer;
mod envelope;
mod inbox;
mod leases;
mod outbox;
mod topics;

pub use bus::in_process::InProcessBus;
pub use bus::kafka::{KafkaAssigner, KafkaBus, MembershipReport, membership_reports};
pub use bus::{BusError, Delivery, EventBus, Subscription};
pub use consumer::{
    ConsumerOutcome, DEFAULT_BATCH_MAX, EventHandler, HandlerError, StuckDelivery, apply_delivery,
    run_consumer, run_consumer_batched, stuck_deliveries,
};
pub use envelope::{Event, Message, PoisonReason, header_names};
pub use inbox::record_first_delivery;
pub use leases::{
    HeldPartitions, LeasePlan, LeaseRound, LeaseRow, PartitionKey, PartitionLeases, Position,
};
pub use outbox::{Outbox, OutboxError, OutboxRelay};
pub use topics::Topics;
