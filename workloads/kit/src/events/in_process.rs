//! Topics in memory: one partition each, an append-only log, committed positions per consumer group.
//! Mirrors Kafka closely enough that a service cannot tell which bus it runs on.

use super::bus::{BusError, Delivery};
use super::envelope::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

#[derive(Debug, Default)]
struct Logs {
    topics: HashMap<String, Vec<Message>>,
    committed: HashMap<(String, String), i64>,
}

/// An event bus inside this process.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    logs: Arc<Mutex<Logs>>,
    appended: Arc<watch::Sender<u64>>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self {
            logs: Arc::default(),
            appended: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl InProcessBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
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
            log.push(message);
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
        })
    }

    /// Every message ever published to `topic`, for tests and rebuilds.
    pub fn messages(&self, topic: &str) -> Vec<Message> {
        self.logs().topics.get(topic).cloned().unwrap_or_default()
    }
}

/// A consumer group member reading from memory.
#[derive(Debug)]
pub struct InProcessSubscription {
    bus: InProcessBus,
    group: String,
    positions: Vec<(String, i64)>,
    next_topic: usize,
    appended: watch::Receiver<u64>,
}

impl InProcessSubscription {
    fn take_next(&mut self) -> Option<Delivery> {
        let logs = self.bus.logs();
        // Round-robin over topics so a busy topic cannot starve the others.
        for step in 0..self.positions.len() {
            let index = (self.next_topic + step) % self.positions.len();
            let (topic, position) = &mut self.positions[index];
            let log = logs.topics.get(topic.as_str())?;
            if let Some(message) = usize::try_from(*position).ok().and_then(|at| log.get(at)) {
                let delivery = Delivery {
                    message: message.clone(),
                    partition: 0,
                    offset: *position,
                };
                *position += 1;
                self.next_topic = index + 1;
                return Some(delivery);
            }
        }
        None
    }

    pub(super) async fn next(&mut self) -> Delivery {
        loop {
            // Mark the current version seen before looking, so an append after the look still wakes us.
            self.appended.borrow_and_update();
            if let Some(delivery) = self.take_next() {
                return delivery;
            }
            if self.appended.changed().await.is_err() {
                // The sender lives as long as the bus, which this subscription holds: cannot happen.
                std::future::pending::<()>().await;
            }
        }
    }

    pub(super) fn acknowledge(&self, delivery: &Delivery) {
        let mut logs = self.bus.logs();
        let committed = logs
            .committed
            .entry((self.group.clone(), delivery.message.topic.clone()))
            .or_insert(0);
        *committed = (*committed).max(delivery.offset + 1);
    }
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
}
