//! What the kitchen does when an order event arrives (reserve or reject, cancel and give back), and the cooking
//! use case shared by the cooks' API and the unattended auto mode.

use crate::domain::{self, CookAction, StockDecision, Ticket, TicketStatus};
use crate::events::{
    COOKING_FINISHED, COOKING_REQUESTED, COOKING_STARTED, KITCHEN_REJECTED, KitchenRejectedData,
    MENU_ITEM_UPDATED, ORDER_CANCELLED, ORDER_CLEARED, ORDER_DISPATCHED, ORDER_PLACED,
    ORDER_REJECTED, OrderPlacedView, TICKET_ACCEPTED, TICKET_CANCELLED, TicketChanged,
};
use crate::store;
use food_delivery_kit::events::{
    Event, EventHandler, HandlerError, Outbox, OutboxError, PoisonReason,
};
use food_delivery_kit::periodic;
use food_delivery_kit::store::now_millis;
use food_delivery_kit::{Store, StoreTransaction};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Records the event of a ticket's step (subject: the order; data: the ticket's lines).
async fn record_ticket(
    outbox: &Outbox,
    transaction: &mut StoreTransaction,
    event_type: &str,
    ticket: &Ticket,
) -> Result<(), OutboxError> {
    let data = TicketChanged {
        order_id: ticket.order_id.clone(),
        lines: ticket.lines.clone(),
    };
    outbox
        .record(transaction, event_type, &ticket.order_id, &data)
        .await?;
    Ok(())
}

/// Records a dish as it stands now (subject: the dish), which the order service prices from.
pub async fn record_dish(
    outbox: &Outbox,
    transaction: &mut StoreTransaction,
    dish: &crate::domain::MenuItem,
) -> Result<(), OutboxError> {
    outbox
        .record(transaction, MENU_ITEM_UPDATED, &dish.menu_id, dish)
        .await?;
    Ok(())
}

/// Reserves stock for placed orders and gives it back for cancelled ones.
#[derive(Debug, Clone)]
pub struct KitchenOrders {
    /// Where the kitchen's events go.
    pub outbox: Outbox,
}

impl EventHandler for KitchenOrders {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            ORDER_PLACED => {
                let placed: OrderPlacedView = event.decode_data()?;
                self.reserve(transaction, &event.subject, placed).await
            }
            ORDER_CANCELLED => self.cancel(transaction, &event.subject).await,
            ORDER_CLEARED => self.start_cleared(transaction, &event.subject).await,
            ORDER_REJECTED | ORDER_DISPATCHED => Ok(()),
            other => Err(PoisonReason::UnknownType(other.to_owned()).into()),
        }
    }
}

impl KitchenOrders {
    /// The order service cleared the kitchen to cook (it will refuse a cancel from now on): an accepted ticket starts
    /// cooking. Anything else (cooking already, from an earlier version's direct start) stays as it is.
    async fn start_cleared(
        &self,
        transaction: &mut StoreTransaction,
        order_id: &str,
    ) -> Result<(), HandlerError> {
        let Some(ticket) = store::ticket(&mut **transaction, order_id).await? else {
            tracing::warn!(order_id, "cleared to cook an order without a ticket");
            return Ok(());
        };
        if ticket.status != TicketStatus::Accepted {
            return Ok(());
        }
        let read_status = ticket.status;
        let saved = async {
            let (started, event_type) = cooked(ticket, CookAction::Start)?;
            save_and_announce(transaction, &self.outbox, &started, read_status, event_type).await
        };
        match saved.await {
            Ok(()) => Ok(()),
            Err(CookError::Store(error)) => Err(error.into()),
            Err(other) => Err(HandlerError::Retry(other.to_string())),
        }
    }

    async fn reserve(
        &self,
        transaction: &mut StoreTransaction,
        order_id: &str,
        placed: OrderPlacedView,
    ) -> Result<(), HandlerError> {
        // Any ticket (accepted, rejected, or a cancellation's tombstone) means this order was decided already,
        // even when the inbox no longer remembers the event (a replay older than its retention).
        if store::ticket(&mut **transaction, order_id).await?.is_some() {
            return Ok(());
        }
        let stock = store::stock(transaction).await?;
        let decision = domain::take_stock(&stock, &placed.items);
        let mut ticket = Ticket {
            order_id: order_id.to_owned(),
            status: TicketStatus::Accepted,
            lines: placed.items,
            accepted_at: now_millis(),
            start_requested_at: None,
            started_at: None,
            finished_at: None,
            cancelled_at: None,
        };
        if let StockDecision::OutOfStock(_) = &decision {
            ticket.status = TicketStatus::Rejected;
        }
        if !store::insert_ticket(transaction, &ticket).await? {
            // Another consumer decided this order between the read and the insert.
            return Ok(());
        }
        match decision {
            StockDecision::OutOfStock(missing_items) => {
                let data = KitchenRejectedData {
                    order_id: order_id.to_owned(),
                    reason: "OUT_OF_STOCK".to_owned(),
                    missing_items,
                };
                self.outbox
                    .record(transaction, KITCHEN_REJECTED, order_id, &data)
                    .await?;
                tracing::info!(order_id, "order rejected: out of stock");
            }
            StockDecision::Take(_) => {
                for line in &ticket.lines {
                    // Conditional on what is left, so concurrent consumers can never take the stock below zero;
                    // losing such a race rolls back and retries with fresh stock.
                    if !store::take_portions(transaction, &line.menu_id, line.qty).await? {
                        return Err(HandlerError::Retry(format!(
                            "stock of {} changed meanwhile",
                            line.menu_id
                        )));
                    }
                }
                record_ticket(&self.outbox, transaction, TICKET_ACCEPTED, &ticket).await?;
            }
        }
        Ok(())
    }

    async fn cancel(
        &self,
        transaction: &mut StoreTransaction,
        order_id: &str,
    ) -> Result<(), HandlerError> {
        let now = now_millis();
        // No ticket yet: a tombstone (a ticket born cancelled, holding nothing) so the order is never reserved.
        let tombstone = Ticket {
            order_id: order_id.to_owned(),
            status: TicketStatus::Cancelled,
            lines: Vec::new(),
            accepted_at: now,
            start_requested_at: None,
            started_at: None,
            finished_at: None,
            cancelled_at: Some(now),
        };
        if store::insert_ticket(transaction, &tombstone).await? {
            return Ok(());
        }
        let Some(mut ticket) = store::ticket(&mut **transaction, order_id).await? else {
            return Err(HandlerError::Retry(format!(
                "ticket of {order_id} vanished while being cancelled"
            )));
        };
        let read_status = ticket.status;
        if !domain::cancels(read_status) {
            return Ok(());
        }
        ticket.status = TicketStatus::Cancelled;
        ticket.cancelled_at = Some(now);
        // The status check comes first: only the transaction that moved the ticket gives its stock back.
        if !store::update_ticket(transaction, &ticket, read_status).await? {
            return Err(HandlerError::Retry(format!(
                "ticket of {order_id} changed while being cancelled"
            )));
        }
        for line in &ticket.lines {
            store::give_back_portions(transaction, &line.menu_id, line.qty).await?;
        }
        record_ticket(&self.outbox, transaction, TICKET_CANCELLED, &ticket).await?;
        Ok(())
    }
}

/// Why a cooking step did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CookError {
    /// No ticket for that order.
    #[error("no ticket for order {0}")]
    NoTicket(String),
    /// The step does not follow from the ticket's status.
    #[error("{0}")]
    NotAllowed(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    /// The step's event could not be recorded.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Asks to start cooking an accepted ticket (COOKING_REQUESTED): the kitchen cooks once the order service clears it
/// (ORDER_CLEARED), which it does only if the order was not cancelled first. So a cancel the customer was told
/// about is never followed by cooking, whatever order the events arrive in.
pub async fn request_start(
    store: &Store,
    outbox: &Outbox,
    order_id: &str,
) -> Result<Ticket, CookError> {
    let mut transaction = store.begin().await?;
    let ticket = request_start_in(&mut transaction, outbox, order_id).await?;
    outbox.commit(transaction).await?;
    Ok(ticket)
}

/// [`request_start`] inside the caller's transaction.
async fn request_start_in(
    transaction: &mut StoreTransaction,
    outbox: &Outbox,
    order_id: &str,
) -> Result<Ticket, CookError> {
    change_ticket(transaction, outbox, order_id, |mut ticket| {
        domain::apply_cook_action(ticket.status, CookAction::Start)
            .map_err(CookError::NotAllowed)?;
        ticket.start_requested_at = Some(now_millis());
        Ok((ticket, COOKING_REQUESTED))
    })
    .await
}

/// Finishes cooking an order's ticket, with its event, in one transaction.
pub async fn finish(store: &Store, outbox: &Outbox, order_id: &str) -> Result<Ticket, CookError> {
    let mut transaction = store.begin().await?;
    let ticket = finish_in(&mut transaction, outbox, order_id).await?;
    outbox.commit(transaction).await?;
    Ok(ticket)
}

/// [`finish`] inside the caller's transaction.
async fn finish_in(
    transaction: &mut StoreTransaction,
    outbox: &Outbox,
    order_id: &str,
) -> Result<Ticket, CookError> {
    change_ticket(transaction, outbox, order_id, |ticket| {
        cooked(ticket, CookAction::Finish)
    })
    .await
}

/// Reads `order_id`'s ticket, changes it by `decide` (the changed ticket and its event's type), and saves both in
/// the caller's transaction. A refusal (no ticket, a step that does not follow) writes nothing.
async fn change_ticket(
    transaction: &mut StoreTransaction,
    outbox: &Outbox,
    order_id: &str,
    decide: impl FnOnce(Ticket) -> Result<(Ticket, &'static str), CookError>,
) -> Result<Ticket, CookError> {
    let read = store::ticket(&mut **transaction, order_id)
        .await?
        .ok_or_else(|| CookError::NoTicket(order_id.to_owned()))?;
    let read_status = read.status;
    let (ticket, event_type) = decide(read)?;
    save_and_announce(transaction, outbox, &ticket, read_status, event_type).await?;
    Ok(ticket)
}

impl CookError {
    /// Whether this is the ticket's state saying no (nothing was written), rather than the store failing.
    fn is_refusal(&self) -> bool {
        matches!(self, Self::NoTicket(_) | Self::NotAllowed(_))
    }
}

/// `ticket` moved by a cook's `action`, and the type of the event that says so.
fn cooked(mut ticket: Ticket, action: CookAction) -> Result<(Ticket, &'static str), CookError> {
    ticket.status =
        domain::apply_cook_action(ticket.status, action).map_err(CookError::NotAllowed)?;
    let event_type = match action {
        CookAction::Start => {
            ticket.started_at = Some(now_millis());
            COOKING_STARTED
        }
        CookAction::Finish => {
            ticket.finished_at = Some(now_millis());
            COOKING_FINISHED
        }
    };
    Ok((ticket, event_type))
}

/// Saves a changed `ticket` with its event, conditional on the status it was read in.
async fn save_and_announce(
    transaction: &mut StoreTransaction,
    outbox: &Outbox,
    ticket: &Ticket,
    read_status: TicketStatus,
    event_type: &str,
) -> Result<(), CookError> {
    if !store::update_ticket(transaction, ticket, read_status).await? {
        return Err(CookError::NotAllowed(format!(
            "the ticket of order {} changed meanwhile (cancelled, or another cook); look again",
            ticket.order_id
        )));
    }
    record_ticket(outbox, transaction, event_type, ticket).await?;
    Ok(())
}

/// How long a request to start waits for the order service's answer before auto mode asks again (a request an
/// earlier version of the order service ignored during a rolling update).
const REQUEST_AGAIN_AFTER_MS: i64 = 10_000;

/// How often auto mode looks for work.
const AUTO_TICK: Duration = Duration::from_millis(100);

/// Auto mode: asks to start tickets accepted `start_after` ago (the customer's window to cancel; they cook once the
/// order service clears them) and finishes them after `cook_time`, so demos and load tests run the whole
/// flow unattended. Driven by the stored state, so it picks up where it was after a restart.
pub async fn cook_unattended(
    store: Store,
    outbox: Outbox,
    start_after: Duration,
    cook_time: Duration,
    shutdown: CancellationToken,
) {
    let cook_millis = i64::try_from(cook_time.as_millis()).unwrap_or(i64::MAX);
    let start_after_millis = i64::try_from(start_after.as_millis()).unwrap_or(i64::MAX);
    periodic::every(
        AUTO_TICK,
        shutdown,
        "auto cook round failed; it is done again at the next tick",
        || cook_what_is_due(&store, &outbox, start_after_millis, cook_millis),
    )
    .await;
}

/// One round of auto mode: asks to start what waited `start_after_millis` (again when unanswered), finishes what
/// has cooked `cook_millis`.
async fn cook_what_is_due(
    store: &Store,
    outbox: &Outbox,
    start_after_millis: i64,
    cook_millis: i64,
) -> Result<(), CookError> {
    let now = now_millis();
    let to_start = store::tickets_to_request(
        store.pool(),
        now - start_after_millis,
        now - REQUEST_AGAIN_AFTER_MS,
    )
    .await?;
    let to_finish = store::tickets_in(
        store.pool(),
        TicketStatus::Cooking,
        Some(now_millis() - cook_millis),
    )
    .await?;
    if to_start.is_empty() && to_finish.is_empty() {
        return Ok(());
    }
    // The round's steps in one transaction, one commit: a transaction per ticket made the auto cook one of the
    // heaviest writers under load. A failing store rolls the round back; the next tick does it again.
    let mut transaction = store.begin().await?;
    for order_id in &to_start {
        skip_refusal(
            request_start_in(&mut transaction, outbox, order_id).await,
            order_id,
        )?;
    }
    for order_id in &to_finish {
        skip_refusal(
            finish_in(&mut transaction, outbox, order_id).await,
            order_id,
        )?;
    }
    outbox.commit(transaction).await?;
    Ok(())
}

/// A cancellation or a cook's button may have come first: that ticket is skipped, not an error of the round.
fn skip_refusal(step: Result<Ticket, CookError>, order_id: &str) -> Result<(), CookError> {
    match step {
        Err(error) if error.is_refusal() => {
            tracing::debug!(%error, order_id, "auto cook skipped a ticket");
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

/// Announces every dish as it stands (MENU_ITEM_UPDATED), at start and then `every`, so the order service's copy
/// of the menu heals whatever it lost; `just_seeded` were announced by the seeding a moment ago. Each dish is
/// locked while its event is appended, so a concurrent change's event never ends up before an older announcement.
pub async fn announce_menu(
    store: Store,
    outbox: Outbox,
    just_seeded: Vec<String>,
    every: Duration,
    shutdown: CancellationToken,
) {
    if let Err(error) = announce_every_dish(&store, &outbox, &just_seeded).await {
        tracing::warn!(%error, "cannot announce the menu; trying again later");
    }
    periodic::every(every, shutdown, "cannot announce the menu", || {
        announce_every_dish(&store, &outbox, &[])
    })
    .await;
}

async fn announce_every_dish(
    store: &Store,
    outbox: &Outbox,
    skip: &[String],
) -> Result<(), HandlerError> {
    for dish in store::menu(store.pool()).await? {
        if skip.contains(&dish.menu_id) {
            continue;
        }
        let mut transaction = store.begin().await?;
        if let Some(item) = store::lock_menu_item(&mut transaction, &dish.menu_id).await? {
            record_dish(outbox, &mut transaction, &item).await?;
        }
        outbox.commit(transaction).await?;
    }
    Ok(())
}
