//! What the order service does when an event arrives: keep its menu replica, follow the order through the
//! kitchen and the delivery, turn a kitchen rejection into a rejected order (which gets its refund), and give up
//! orders whose payment never completed (which voids their hold).

use crate::domain::{self, MenuEntry, Order, OrderStatus};
use crate::events::{
    COOKING_FINISHED, COOKING_REQUESTED, COOKING_STARTED, DELIVERED, DELIVERY_STARTED, IGNORED,
    KITCHEN_REJECTED, KitchenRejectedView, MENU_ITEM_UPDATED, MenuItemView, ORDER_CLEARED,
    ORDER_DISPATCHED, ORDER_REJECTED, OrderEnded, OrderMovedOn, TICKET_ACCEPTED,
};
use crate::store;
use food_delivery_kit::events::{Event, EventHandler, HandlerError, Outbox, PoisonReason};
use food_delivery_kit::periodic;
use food_delivery_kit::store::now_millis;
use food_delivery_kit::{Store, StoreTransaction};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Follows orders through the kitchen and the delivery.
#[derive(Debug, Clone)]
pub struct FollowOrders {
    /// Where a rejection's event goes.
    pub outbox: Outbox,
}

impl EventHandler for FollowOrders {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let reported = match event.event_type.as_str() {
            MENU_ITEM_UPDATED => {
                let item: MenuItemView = event.decode_data()?;
                let entry = MenuEntry {
                    menu_id: item.menu_id,
                    name: item.name,
                    price: item.price,
                };
                return Ok(store::save_menu_entry(transaction, &entry).await?);
            }
            KITCHEN_REJECTED => return self.reject(transaction, event).await,
            TICKET_ACCEPTED => OrderStatus::Accepted,
            COOKING_REQUESTED => return self.clear_for_cooking(transaction, event).await,
            COOKING_STARTED => OrderStatus::Cooking,
            COOKING_FINISHED => return self.dispatch(transaction, event).await,
            DELIVERY_STARTED => OrderStatus::Delivering,
            DELIVERED => OrderStatus::Delivered,
            known if IGNORED.contains(&known) => return Ok(()),
            other => return Err(PoisonReason::UnknownType(other.to_owned()).into()),
        };
        move_order(transaction, &event.subject, reported, None)
            .await
            .map(|_| ())
    }
}

impl FollowOrders {
    /// The kitchen asks to cook: unless the order was cancelled first, it becomes COOKING and the kitchen is cleared
    /// (OrderCleared) in one transaction. The compare-and-set in `move_order` orders this against a cancel, as for
    /// the hand-over to delivery. A request for an order cleared already is answered again: the kitchen asks again
    /// only when it never heard the answer (parked by an earlier version during a rolling update, say), and without
    /// it the order would stay COOKING for ever, no longer cancellable and never cooked.
    async fn clear_for_cooking(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let moved = move_order(transaction, &event.subject, OrderStatus::Cooking, None).await?;
        let order = match moved {
            Some(order) => order,
            None => match store::order(&mut **transaction, &event.subject).await? {
                Some(order) if order.status == OrderStatus::Cooking => order,
                _ => return Ok(()),
            },
        };
        announce_step(transaction, &self.outbox, ORDER_CLEARED, &order).await
    }

    /// The food is cooked: unless the order was cancelled first, it becomes READY and is handed to delivery
    /// (OrderDispatched) in one transaction. The compare-and-set in `move_order` orders this against a cancel:
    /// whichever commits first wins, and the other finds the order changed.
    async fn dispatch(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let Some(order) = move_order(transaction, &event.subject, OrderStatus::Ready, None).await?
        else {
            return Ok(());
        };
        hand_to_delivery(transaction, &self.outbox, &order).await?;
        Ok(())
    }

    async fn reject(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let rejected: KitchenRejectedView = event.decode_data()?;
        let reason = describe_rejection(&rejected);
        let Some(order) = move_order(
            transaction,
            &event.subject,
            OrderStatus::Rejected,
            Some(reason),
        )
        .await?
        else {
            return Ok(());
        };
        let ended = OrderEnded {
            order_id: order.order_id.clone(),
            customer_id: order.customer_id.clone(),
            reason: rejected.reason,
            missing_items: rejected.missing_items,
        };
        self.outbox
            .record(transaction, ORDER_REJECTED, &order.order_id, &ended)
            .await?;
        Ok(())
    }
}

/// The reason a customer sees: the kitchen's reason and what it lacked, e.g.
/// `OUT_OF_STOCK: green-tea (requested 3, available 1)`.
fn describe_rejection(rejected: &KitchenRejectedView) -> String {
    let missing: Vec<String> = rejected
        .missing_items
        .as_ref()
        .and_then(serde_json::Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    format!(
                        "{} (requested {}, available {})",
                        item["menuId"].as_str().unwrap_or("?"),
                        item["requested"],
                        item["available"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if missing.is_empty() {
        rejected.reason.clone()
    } else {
        format!("{}: {}", rejected.reason, missing.join(", "))
    }
}

/// Moves an order to `reported` if the lifecycle allows; the moved order, or `None` when it stays.
async fn move_order(
    transaction: &mut StoreTransaction,
    order_id: &str,
    reported: OrderStatus,
    reason: Option<String>,
) -> Result<Option<Order>, HandlerError> {
    let Some(mut order) = store::order(&mut **transaction, order_id).await? else {
        tracing::warn!(order_id, "event for an order this service does not have");
        return Ok(None);
    };
    let previous = order.status;
    let Some(next) = domain::advance(previous, reported) else {
        return Ok(None);
    };
    order.status = next;
    order.reason = reason.or(order.reason);
    order.updated_at = now_millis();
    if !store::save_status(transaction, &order, previous).await? {
        return Err(HandlerError::Retry(format!(
            "order {order_id} changed meanwhile"
        )));
    }
    Ok(Some(order))
}

/// Hands the READY `order` to delivery: OrderDispatched and the time it was written, in `transaction`. `false` (and
/// nothing written) when it was handed over already.
async fn hand_to_delivery(
    transaction: &mut StoreTransaction,
    outbox: &Outbox,
    order: &Order,
) -> Result<bool, HandlerError> {
    if !store::mark_dispatched(transaction, &order.order_id, now_millis()).await? {
        return Ok(false);
    }
    announce_step(transaction, outbox, ORDER_DISPATCHED, order).await?;
    Ok(true)
}

/// Appends the event that tells the kitchen or delivery that `order` moved on (cleared to cook, handed to delivery).
async fn announce_step(
    transaction: &mut StoreTransaction,
    outbox: &Outbox,
    event_type: &str,
    order: &Order,
) -> Result<(), HandlerError> {
    let data = OrderMovedOn {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
    };
    outbox
        .record(transaction, event_type, &order.order_id, &data)
        .await?;
    Ok(())
}

/// Hands to delivery the READY orders an earlier version left without OrderDispatched (it let delivery follow the
/// kitchen's CookingFinished, which delivery no longer reads): without this they would stay READY for ever, paid
/// and never delivered. Runs for as long as the service does, because pods of the earlier version can still move
/// orders to READY during a rolling update; every replica may run it at once (`mark_dispatched` is conditional).
pub async fn dispatch_orders_left_ready(
    store: Store,
    outbox: Outbox,
    every: Duration,
    shutdown: CancellationToken,
) {
    periodic::every(
        every,
        shutdown,
        "cannot look for READY orders not handed to delivery",
        || dispatch_left_ready(&store, &outbox),
    )
    .await;
}

async fn dispatch_left_ready(store: &Store, outbox: &Outbox) -> Result<(), sqlx::Error> {
    for order in store::undispatched_ready(store.pool()).await? {
        let handed = async {
            let mut transaction = store.begin().await?;
            let handed = hand_to_delivery(&mut transaction, outbox, &order).await?;
            outbox.commit(transaction).await?;
            Ok::<bool, HandlerError>(handed)
        };
        match handed.await {
            Ok(true) => tracing::info!(order_id = order.order_id, "READY order handed to delivery"),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot hand a READY order to delivery; retrying"),
        }
    }
    Ok(())
}

/// Gives up orders whose payment did not complete within `deadline` (the answer was lost to a timeout, a crash or a
/// client that went away): each is rejected with OrderRejected, which makes payment void the hold it may have made,
/// so no authorization outlives its order. Conditional on the order still waiting, so a payment answer or a cancel
/// that settles it first wins, and every replica may run this at once.
pub async fn give_up_unpaid_orders(
    store: Store,
    outbox: Outbox,
    deadline: Duration,
    shutdown: CancellationToken,
) {
    let deadline_millis = i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX);
    let reason = domain::abandoned_reason(deadline.as_secs());
    periodic::every(
        Duration::from_secs(1),
        shutdown,
        "cannot look for orders whose payment is overdue",
        || give_up_overdue(&store, &outbox, deadline_millis, &reason),
    )
    .await;
}

async fn give_up_overdue(
    store: &Store,
    outbox: &Outbox,
    deadline_millis: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    for order in store::pending_since(store.pool(), now_millis() - deadline_millis).await? {
        if let Err(error) = give_up(store, outbox, order, reason).await {
            tracing::warn!(%error, "cannot give up an unpaid order; retrying");
        }
    }
    Ok(())
}

async fn give_up(
    store: &Store,
    outbox: &Outbox,
    mut order: Order,
    reason: &str,
) -> Result<bool, HandlerError> {
    let mut transaction = store.begin().await?;
    order.status = OrderStatus::Rejected;
    order.reason = Some(reason.to_owned());
    order.updated_at = now_millis();
    if !store::save_status(&mut transaction, &order, OrderStatus::PaymentPending).await? {
        return Ok(false);
    }
    let ended = OrderEnded {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        reason: reason.to_owned(),
        missing_items: None,
    };
    outbox
        .record(&mut transaction, ORDER_REJECTED, &order.order_id, &ended)
        .await?;
    outbox.commit(transaction).await?;
    tracing::info!(
        order_id = order.order_id,
        "order given up: its payment did not complete in time"
    );
    Ok(true)
}

/// The order service's side of placing and cancelling, behind the API (which validates the request and turns the
/// outcome into HTTP): the pending record, the guarded payment call, the placement and its event, and the retries
/// with the same Idempotency-Key.
pub mod ordering {
    use crate::domain::{self, Order, OrderStatus, PricingError};
    use crate::events::{ORDER_CANCELLED, ORDER_PLACED, OrderEnded, OrderPlaced};
    use crate::store;
    use axum::http::StatusCode;
    use food_delivery_kit::Store;
    use food_delivery_kit::client::{CallError, ServiceClient};
    use food_delivery_kit::events::{Outbox, OutboxError};
    use food_delivery_kit::store::now_millis;
    use serde::{Deserialize, Serialize};
    use std::time::Duration;

    /// What placing needs.
    #[derive(Debug, Clone)]
    pub struct Ordering {
        /// The orders store.
        pub store: Store,
        /// Where events go.
        pub outbox: Outbox,
        /// The guarded client of the payment service.
        pub payment: ServiceClient,
        /// How long an order waits for its payment before it is given up and its hold voided.
        pub payment_deadline: Duration,
    }

    /// An order as asked for (validated by the API): who, and `(menu id, qty)` lines.
    #[derive(Debug, Clone)]
    pub struct Requested {
        /// Who orders.
        pub customer_id: String,
        /// The lines.
        pub lines: Vec<(String, i64)>,
    }

    impl Requested {
        /// Whether `existing` is what this request asks for (a retry) rather than a different order under the same
        /// key.
        fn matches(&self, existing: &Order) -> bool {
            let ordered: Vec<(String, i64)> = existing
                .lines
                .iter()
                .map(|line| (line.menu_id.clone(), line.qty))
                .collect();
            existing.customer_id == self.customer_id && ordered == self.lines
        }
    }

    /// Why an order was not placed.
    #[derive(Debug, thiserror::Error)]
    pub enum PlaceError {
        /// The menu does not have these lines' dishes: `(index into the request, menu id)`.
        #[error("unknown dishes")]
        UnknownDishes(Vec<(usize, String)>),
        /// The order would cost more than an order may.
        #[error("the order is too expensive")]
        AmountTooLarge,
        /// The Idempotency-Key was used for a different order.
        #[error("this Idempotency-Key was already used for a different order")]
        KeyReused,
        /// The order of this key was given up before its payment completed.
        #[error("the order was given up before its payment completed ({reason})")]
        GivenUp {
            /// Why it was given up.
            reason: String,
        },
        /// Payment said no: nothing is held and no order exists.
        #[error("payment refused: {0}")]
        Refused(Refusal),
        /// Payment did not authorize in time or answered something unusable: a hold may exist, and it is voided
        /// within `void_within` unless a retry with the same key completes the order.
        #[error("payment did not authorize: {failure}")]
        PaymentFailed {
            /// What went wrong.
            failure: PaymentFailure,
            /// When a hold made meanwhile is voided at the latest.
            void_within: Duration,
        },
        /// The order's row changed in a way that cannot happen (it vanished, or went back to pending).
        #[error("the order {0} changed unexpectedly")]
        Inconsistent(String),
        /// The store failed.
        #[error(transparent)]
        Store(#[from] sqlx::Error),
        /// The placement's event could not be recorded.
        #[error(transparent)]
        Outbox(#[from] OutboxError),
    }

    /// Payment's definite no.
    #[derive(Debug, thiserror::Error)]
    pub enum Refusal {
        /// Declined (over the limit, say), with payment's reason when it gave one.
        #[error("declined")]
        Declined(Option<String>),
        /// A different payment exists for this order id.
        #[error("a different payment already exists for this order")]
        Conflict,
    }

    /// Payment's failure to authorize that leaves the outcome open.
    #[derive(Debug, thiserror::Error)]
    pub enum PaymentFailure {
        /// The guarded call failed: open breaker, no slot, deadline, unreachable, 5xx, unreadable answer.
        #[error(transparent)]
        Call(CallError),
        /// Payment refused this service's credential without acting (a rollout is changing it).
        #[error("payment refused this service's internal credential")]
        CredentialRefused,
        /// Payment answered with a payment that is not an authorization.
        #[error("payment answered with a payment that is {0}, not an authorization")]
        NotAnAuthorization(String),
        /// Payment answered a status it has no business answering.
        #[error("payment answered {0} to a valid authorization")]
        UnexpectedStatus(StatusCode),
    }

    #[derive(Debug, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct PaymentRequest<'a> {
        order_id: &'a str,
        customer_id: &'a str,
        amount: i64,
        qty: i64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PaymentAnswer {
        payment_id: String,
        status: String,
    }

    /// The payment statuses that mean "authorized": a fresh hold, or (for a retry) a hold already captured.
    const AUTHORIZED_STATUSES: [&str; 2] = ["AUTHORIZED", "APPROVED"];

    /// What a payment call came to.
    enum Authorization {
        Authorized(String),
        Refused(Refusal),
        Failed(PaymentFailure),
    }

    /// Asks payment to authorize.
    async fn authorize(ordering: &Ordering, order: &Order) -> Authorization {
        let request = PaymentRequest {
            order_id: &order.order_id,
            customer_id: &order.customer_id,
            amount: order.amount,
            qty: order.lines.iter().map(|line| line.qty).sum(),
        };
        let answer = match ordering.payment.post_json("/payments", &request, &[]).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(%error, order_id = order.order_id, "payment unavailable");
                return Authorization::Failed(PaymentFailure::Call(error));
            }
        };
        match answer.status {
            StatusCode::OK | StatusCode::CREATED => match answer.json::<PaymentAnswer>() {
                // Anything but an authorization (a voided or refunded payment, a status this version does not
                // know) must not place the order.
                Ok(authorized) if !AUTHORIZED_STATUSES.contains(&authorized.status.as_str()) => {
                    Authorization::Failed(PaymentFailure::NotAnAuthorization(authorized.status))
                }
                Ok(authorized) => Authorization::Authorized(authorized.payment_id),
                Err(error) => Authorization::Failed(PaymentFailure::Call(error)),
            },
            // Payment's refusal is a problem+json; only its detail is passed on. A body that is not one is an
            // unreadable answer (the pending order stays, as after any answer that is not a clear no).
            StatusCode::PAYMENT_REQUIRED => match answer.json::<food_delivery_kit::Problem>() {
                Ok(declined) => Authorization::Refused(Refusal::Declined(declined.detail)),
                Err(error) => Authorization::Failed(PaymentFailure::Call(error)),
            },
            StatusCode::CONFLICT => Authorization::Refused(Refusal::Conflict),
            // Payment refused this service's credential without acting: the two hold different ones for a moment
            // (the credential's Secret re-created and one of them not rolled yet, or the first rollout after the
            // operator began to set one). Retrying shortly reaches a matching pair; nothing was held.
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::warn!(
                    order_id = order.order_id,
                    "payment refused this service's internal credential"
                );
                Authorization::Failed(PaymentFailure::CredentialRefused)
            }
            other => Authorization::Failed(PaymentFailure::UnexpectedStatus(other)),
        }
    }

    /// Places an order: prices it from the kitchen's menu, records it as waiting for its payment, has payment
    /// authorize it (a hold, through the guarded client), then places and announces it in one transaction. An order
    /// is only placed with an authorization; a payment answer that never arrives (a timeout, a crash, a client that
    /// gave up) leaves a pending order that its deadline settles, voiding any hold. A retry under the same order id
    /// (the same Idempotency-Key) gets the first outcome and is never charged twice.
    pub async fn place(
        ordering: &Ordering,
        order_id: &str,
        requested: &Requested,
    ) -> Result<Order, PlaceError> {
        let found = match store::order(ordering.store.pool(), order_id).await? {
            Some(existing) => resume(ordering, requested, existing)?,
            None => match record_pending(ordering, requested, order_id).await? {
                Ok(pending) => Resumed::Pending(pending),
                // A concurrent request with the same key recorded it first.
                Err(existing) => resume(ordering, requested, existing)?,
            },
        };
        let pending = match found {
            Resumed::Pending(pending) => pending,
            Resumed::Done(order) => return Ok(order),
        };
        let payment_id = match authorize(ordering, &pending).await {
            Authorization::Authorized(payment_id) => payment_id,
            Authorization::Refused(refusal) => {
                // Payment said no: nothing is held, so the pending order goes, and the answer's "no order" is true.
                // A retry asks again from scratch.
                store::forget_pending(ordering.store.pool(), order_id).await?;
                return Err(PlaceError::Refused(refusal));
            }
            Authorization::Failed(failure) => {
                return Err(PlaceError::PaymentFailed {
                    failure,
                    void_within: ordering.payment_deadline + Duration::from_secs(5),
                });
            }
        };
        let order = Order {
            payment_id,
            status: OrderStatus::Placed,
            updated_at: now_millis(),
            ..pending
        };
        let placed = OrderPlaced {
            order_id: order.order_id.clone(),
            customer_id: order.customer_id.clone(),
            items: order.lines.clone(),
            amount: order.amount,
            payment_id: order.payment_id.clone(),
        };
        let mut transaction = ordering.store.begin().await?;
        if !store::place_pending(&mut transaction, &order).await? {
            transaction.rollback().await?;
            // Settled meanwhile: placed by a concurrent retry (its answer is ours), or given up or cancelled (the
            // hold is voided by the event that settled it).
            let settled = store::order(ordering.store.pool(), order_id)
                .await?
                .ok_or_else(|| PlaceError::Inconsistent(order_id.to_owned()))?;
            return match resume(ordering, requested, settled)? {
                Resumed::Done(order) => Ok(order),
                Resumed::Pending(_) => Err(PlaceError::Inconsistent(order_id.to_owned())),
            };
        }
        ordering
            .outbox
            .record(&mut transaction, ORDER_PLACED, order_id, &placed)
            .await?;
        ordering.outbox.commit(transaction).await?;
        Ok(order)
    }

    /// Prices the request and records it as waiting for its payment (committed before payment is asked); `Err`
    /// with the existing order when one with this id is there already.
    async fn record_pending(
        ordering: &Ordering,
        requested: &Requested,
        order_id: &str,
    ) -> Result<Result<Order, Order>, PlaceError> {
        let menu = store::menu(ordering.store.pool()).await?;
        let (lines, amount) =
            domain::price(&menu, &requested.lines).map_err(|error| match error {
                PricingError::UnknownDishes(unknown) => PlaceError::UnknownDishes(
                    unknown
                        .into_iter()
                        .map(|index| (index, requested.lines[index].0.clone()))
                        .collect(),
                ),
                PricingError::AmountTooLarge => PlaceError::AmountTooLarge,
            })?;
        let now = now_millis();
        let pending = Order {
            order_id: order_id.to_owned(),
            customer_id: requested.customer_id.clone(),
            lines,
            amount,
            payment_id: String::new(),
            status: OrderStatus::PaymentPending,
            reason: None,
            placed_at: now,
            updated_at: now,
        };
        let mut transaction = ordering.store.begin().await?;
        if store::insert_order(&mut transaction, &pending).await? {
            transaction.commit().await?;
            return Ok(Ok(pending));
        }
        transaction.rollback().await?;
        let existing = store::order(ordering.store.pool(), order_id)
            .await?
            .ok_or_else(|| PlaceError::Inconsistent(order_id.to_owned()))?;
        Ok(Err(existing))
    }

    /// What a request with an existing order id (a retry with the same key) carries on with.
    enum Resumed {
        /// Still waiting for its payment: ask payment again (it answers with the same hold).
        Pending(Order),
        /// Placed already: the first outcome is the answer.
        Done(Order),
    }

    /// What a request finds when its order id exists already: a pending order is resumed, a placed one is the
    /// first outcome, one given up before its payment completed is a conflict that says so.
    fn resume(
        ordering: &Ordering,
        requested: &Requested,
        existing: Order,
    ) -> Result<Resumed, PlaceError> {
        if !requested.matches(&existing) {
            return Err(PlaceError::KeyReused);
        }
        match existing.status {
            OrderStatus::PaymentPending => Ok(Resumed::Pending(existing)),
            _ if existing.payment_id.is_empty() => Err(PlaceError::GivenUp {
                reason: existing.reason.clone().unwrap_or_else(|| {
                    domain::abandoned_reason(ordering.payment_deadline.as_secs())
                }),
            }),
            _ => Ok(Resumed::Done(existing)),
        }
    }

    /// Why an order was not cancelled.
    #[derive(Debug, thiserror::Error)]
    pub enum CancelError {
        /// No such order.
        #[error("no order {0}")]
        NoOrder(String),
        /// Its state does not allow a cancel any more (the domain's words).
        #[error("{0}")]
        TooLate(String),
        /// The order kept changing under the cancel (kitchen and delivery events racing it).
        #[error("the order kept changing; try again")]
        KeptChanging,
        /// The store failed.
        #[error(transparent)]
        Store(#[from] sqlx::Error),
        /// The cancel's event could not be recorded.
        #[error(transparent)]
        Outbox(#[from] OutboxError),
    }

    /// Cancels an order while the domain allows it: writes the order and its event only, so it works whatever else
    /// is down. A repeated cancel answers the cancelled order.
    pub async fn cancel(
        store: &Store,
        outbox: &Outbox,
        order_id: &str,
    ) -> Result<Order, CancelError> {
        // A kitchen or delivery event may change the order between our read and our write; then decide again.
        for _ in 0..3 {
            let mut transaction = store.begin().await?;
            let mut order = store::order(&mut *transaction, order_id)
                .await?
                .ok_or_else(|| CancelError::NoOrder(order_id.to_owned()))?;
            let previous = order.status;
            if !domain::cancel(previous)
                .map_err(|refusal| CancelError::TooLate(refusal.to_string()))?
            {
                return Ok(order);
            }
            order.status = OrderStatus::Cancelled;
            order.reason = Some("cancelled by the customer".to_owned());
            order.updated_at = now_millis();
            if !store::save_status(&mut transaction, &order, previous).await? {
                continue;
            }
            let ended = OrderEnded {
                order_id: order.order_id.clone(),
                customer_id: order.customer_id.clone(),
                reason: "cancelled by the customer".to_owned(),
                missing_items: None,
            };
            outbox
                .record(&mut transaction, ORDER_CANCELLED, order_id, &ended)
                .await?;
            outbox.commit(transaction).await?;
            return Ok(order);
        }
        Err(CancelError::KeptChanging)
    }
}
