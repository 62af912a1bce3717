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
        project(transaction, std::slice::from_ref(event)).await
    }

    /// A batch's events are kept first, then each view they touch is refolded once: my page's cost is a handful
    /// of statements per batch, not five per event.
    async fn handle_all(
        &self,
        transaction: &mut StoreTransaction,
        events: &[Event],
    ) -> Result<(), HandlerError> {
        project(transaction, events).await
    }
}

/// Keeps `events` with their subjects and refolds the views of the subjects that got a new one.
async fn project(transaction: &mut StoreTransaction, events: &[Event]) -> Result<(), HandlerError> {
    let mut about_orders = Vec::new();
    let mut about_customers = Vec::new();
    for event in events {
        let event_type = event.event_type.as_str();
        let kept = if ORDER_EVENTS.contains(&event_type) {
            &mut about_orders
        } else if CUSTOMER_EVENTS.contains(&event_type) {
            &mut about_customers
        } else if IGNORED.contains(&event_type) {
            continue;
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
        kept.push((
            event.subject.as_str(),
            RecordedEvent {
                id: event.id.clone(),
                event_type: event.event_type.clone(),
                source: event.source.clone(),
                time: event.time,
                data: event.data.clone(),
            },
        ));
    }
    for (subject, kept) in [
        (Subject::Order, about_orders),
        (Subject::Customer, about_customers),
    ] {
        if kept.is_empty() {
            continue;
        }
        // The inbox already filters redeliveries; keeping events by id also covers the same event arriving under
        // two groups' worth of history (a replay into a store that kept some rows): only views that got something
        // new are refolded.
        let changed = store::record_events(transaction, subject, &kept).await?;
        if changed.is_empty() {
            continue;
        }
        // Before reading the subjects' events: see store::lock_views.
        store::lock_views(transaction, subject, &changed).await?;
        let mut histories = store::events_of(transaction, subject, &changed).await?;
        match subject {
            Subject::Order => {
                let traces: Vec<_> = changed
                    .iter()
                    .map(|order_id| {
                        let events = histories.remove(order_id).unwrap_or_default();
                        let placed_micros = events
                            .iter()
                            .find(|event| event.event_type == crate::events::ORDER_PLACED)
                            .map(|event| event.time.timestamp_micros());
                        (domain::order_trace(order_id, events), placed_micros)
                    })
                    .collect();
                store::save_orders(transaction, &traces).await?;
            }
            Subject::Customer => {
                let views: Vec<_> = changed
                    .iter()
                    .map(|customer_id| {
                        domain::customer_history(
                            customer_id,
                            histories.remove(customer_id).unwrap_or_default(),
                        )
                    })
                    .collect();
                store::save_customers(transaction, &views).await?;
            }
        }
    }
    Ok(())
}
