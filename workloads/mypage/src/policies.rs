//! What my page does when an event arrives: keep it with its subject and refold the subject's view.

use crate::domain::{self, RecordedEvent};
use crate::events::{CUSTOMER_EVENTS, IGNORED, ORDER_EVENTS};
use crate::store::{self, Subject};
use food_delivery_kit::StoreTransaction;
use food_delivery_kit::events::{Event, EventHandler, HandlerError, PoisonReason};

/// Projects every order and customer event into the views.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProjectViews;

impl EventHandler for ProjectViews {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let event_type = event.event_type.as_str();
        let subject = if ORDER_EVENTS.contains(&event_type) {
            Subject::Order
        } else if CUSTOMER_EVENTS.contains(&event_type) {
            Subject::Customer
        } else if IGNORED.contains(&event_type) {
            return Ok(());
        } else {
            return Err(PoisonReason::UnknownType(event.event_type.clone()).into());
        };
        if !event.data.is_object() {
            return Err(PoisonReason::BadData {
                event_type: event.event_type.clone(),
                problem: "data is not a JSON object".to_owned(),
            }
            .into());
        }
        let recorded = RecordedEvent {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            source: event.source.clone(),
            time: event.time,
            data: event.data.clone(),
        };
        // The inbox already filters redeliveries; this also covers the same event arriving under two groups'
        // worth of history (a replay into a store that kept some rows).
        if !store::record_event(transaction, subject, &event.subject, &recorded).await? {
            return Ok(());
        }
        // Before reading the subject's events: see store::lock_view.
        store::lock_view(transaction, subject, &event.subject).await?;
        let events = store::events_of(transaction, subject, &event.subject).await?;
        match subject {
            Subject::Order => {
                let placed_micros = events
                    .iter()
                    .find(|event| event.event_type == crate::events::ORDER_PLACED)
                    .map(|event| event.time.timestamp_micros());
                let trace = domain::order_trace(&event.subject, events);
                store::save_order(transaction, &trace, placed_micros).await?;
            }
            Subject::Customer => {
                let history = domain::customer_history(&event.subject, events);
                store::save_customer(transaction, &history).await?;
            }
        }
        Ok(())
    }
}
