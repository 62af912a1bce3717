//! The event envelope and its wire form: CloudEvents 1.0 in Kafka's binary mode (attributes in `ce_*` headers,
//! the data as the JSON body, the subject as the message key).

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Header names of the binary-mode encoding.
pub mod header_names {
    /// CloudEvents spec version.
    pub const SPEC_VERSION: &str = "ce_specversion";
    /// Unique event id.
    pub const ID: &str = "ce_id";
    /// Event type with version, e.g. `food.order.placed.v1`.
    pub const TYPE: &str = "ce_type";
    /// The service that emitted it.
    pub const SOURCE: &str = "ce_source";
    /// The aggregate id.
    pub const SUBJECT: &str = "ce_subject";
    /// When it happened (RFC 3339).
    pub const TIME: &str = "ce_time";
    /// Correlation id extension attribute (CloudEvents extension names are lower-case alphanumerics).
    pub const CORRELATION_ID: &str = "ce_correlationid";
    /// Media type of the data.
    pub const CONTENT_TYPE: &str = "content-type";
}

/// A domain event as every service sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique id (UUID v7, so ids sort by creation time); the inbox key.
    pub id: String,
    /// Type with version, e.g. `food.order.placed.v1`.
    pub event_type: String,
    /// The emitting service, e.g. `order`.
    pub source: String,
    /// The aggregate id; also the message key, so one aggregate's events stay ordered on one partition.
    pub subject: String,
    /// When the state change happened.
    pub time: DateTime<Utc>,
    /// The id of the request (or earlier event) that caused this one.
    pub correlation_id: String,
    /// The event's data.
    pub data: serde_json::Value,
}

impl Event {
    /// A new event caused by the current request or event (its correlation id is carried over; a new one is made
    /// when there is none).
    pub fn new(
        event_type: impl Into<String>,
        source: impl Into<String>,
        subject: impl Into<String>,
        data: &impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: uuid::Uuid::now_v7().to_string(),
            event_type: event_type.into(),
            source: source.into(),
            subject: subject.into(),
            // Microseconds: what the wire form carries, so an event equals itself after a round trip.
            time: Utc::now().trunc_subsecs(6),
            correlation_id: crate::telemetry::current_correlation_id()
                .unwrap_or_else(crate::telemetry::new_correlation_id),
            data: serde_json::to_value(data)?,
        })
    }

    /// The data decoded as `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }

    /// The data decoded as `T`; data that does not fit makes the event poison (a consumer skips and parks it).
    pub fn decode_data<T: DeserializeOwned>(&self) -> Result<T, PoisonReason> {
        self.data_as().map_err(|error| PoisonReason::BadData {
            event_type: self.event_type.clone(),
            problem: error.to_string(),
        })
    }

    /// The wire form of this event on `topic`.
    pub fn to_message(&self, topic: impl Into<String>) -> Message {
        Message {
            topic: topic.into(),
            key: self.subject.clone(),
            headers: vec![
                (header_names::SPEC_VERSION.to_owned(), "1.0".to_owned()),
                (header_names::ID.to_owned(), self.id.clone()),
                (header_names::TYPE.to_owned(), self.event_type.clone()),
                (header_names::SOURCE.to_owned(), self.source.clone()),
                (header_names::SUBJECT.to_owned(), self.subject.clone()),
                (
                    header_names::TIME.to_owned(),
                    self.time.to_rfc3339_opts(SecondsFormat::Micros, true),
                ),
                (
                    header_names::CORRELATION_ID.to_owned(),
                    self.correlation_id.clone(),
                ),
                (
                    header_names::CONTENT_TYPE.to_owned(),
                    "application/json".to_owned(),
                ),
            ],
            payload: self.data.to_string().into_bytes(),
        }
    }

    /// Reads an event back from its wire form; anything missing or unreadable makes it poison.
    pub fn from_message(message: &Message) -> Result<Self, PoisonReason> {
        let attribute = |name: &'static str| {
            message
                .header(name)
                .filter(|value| !value.is_empty())
                .ok_or(PoisonReason::MissingAttribute(name))
        };
        let spec_version = attribute(header_names::SPEC_VERSION)?;
        if spec_version != "1.0" {
            return Err(PoisonReason::UnsupportedSpecVersion(
                spec_version.to_owned(),
            ));
        }
        let time = attribute(header_names::TIME)?;
        let time = DateTime::parse_from_rfc3339(time)
            .map_err(|error| PoisonReason::BadTime(format!("'{time}': {error}")))?
            .with_timezone(&Utc);
        let data = serde_json::from_slice(&message.payload)
            .map_err(|error| PoisonReason::BadPayload(error.to_string()))?;
        Ok(Self {
            id: attribute(header_names::ID)?.to_owned(),
            event_type: attribute(header_names::TYPE)?.to_owned(),
            source: attribute(header_names::SOURCE)?.to_owned(),
            subject: attribute(header_names::SUBJECT)?.to_owned(),
            time,
            correlation_id: message
                .header(header_names::CORRELATION_ID)
                .map(str::to_owned)
                .unwrap_or_else(crate::telemetry::new_correlation_id),
            data,
        })
    }
}

/// A message as it travels on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Full topic name, prefix included.
    pub topic: String,
    /// Partitioning key (the aggregate id).
    pub key: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub payload: Vec<u8>,
}

impl Message {
    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why a message cannot be handled, ever. Poison is logged, counted and skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoisonReason {
    /// A required CloudEvents attribute is absent.
    #[error("missing attribute {0}")]
    MissingAttribute(&'static str),
    /// Not CloudEvents 1.0.
    #[error("unsupported CloudEvents spec version '{0}'")]
    UnsupportedSpecVersion(String),
    /// The time attribute is not RFC 3339.
    #[error("unreadable time {0}")]
    BadTime(String),
    /// The body is not JSON.
    #[error("unparseable payload: {0}")]
    BadPayload(String),
    /// No handler knows this type (or this version of it).
    #[error("unknown event type '{0}'")]
    UnknownType(String),
    /// The type is known but the data does not match it.
    #[error("data does not match {event_type}: {problem}")]
    BadData {
        /// The type whose schema was expected.
        event_type: String,
        /// What did not match.
        problem: String,
    },
}

impl PoisonReason {
    /// A short, bounded label for the skip metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MissingAttribute(_) | Self::UnsupportedSpecVersion(_) | Self::BadTime(_) => {
                "bad_envelope"
            }
            Self::BadPayload(_) => "unparseable",
            Self::UnknownType(_) => "unknown_type",
            Self::BadData { .. } => "bad_data",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn event_survives_the_wire_and_keeps_the_callers_correlation_id() {
        let event = crate::telemetry::with_correlation_id("corr-1".to_owned(), async {
            Event::new(
                "food.order.placed.v1",
                "order",
                "order-7",
                &serde_json::json!({"qty": 2}),
            )
            .unwrap()
        })
        .await;
        assert_eq!(event.correlation_id, "corr-1");
        let message = event.to_message("food.orders");
        assert_eq!(message.key, "order-7");
        assert_eq!(message.header("ce_type"), Some("food.order.placed.v1"));
        let decoded = Event::from_message(&message).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn damaged_messages_are_poison_with_a_reason() {
        let good = Event::new("t.v1", "s", "k", &1)
            .unwrap()
            .to_message("food.t");
        let mut unparseable = good.clone();
        unparseable.payload = b"{not json".to_vec();
        assert_eq!(
            Event::from_message(&unparseable)
                .unwrap_err()
                .metric_label(),
            "unparseable"
        );
        let mut headless = good.clone();
        headless
            .headers
            .retain(|(name, _)| name != header_names::TYPE);
        assert_eq!(
            Event::from_message(&headless).unwrap_err(),
            PoisonReason::MissingAttribute("ce_type")
        );
        let mut bad_time = good;
        for (name, value) in &mut bad_time.headers {
            if name == header_names::TIME {
                *value = "yesterday".to_owned();
            }
        }
        assert_eq!(
            Event::from_message(&bad_time).unwrap_err().metric_label(),
            "bad_envelope"
        );
    }
}
