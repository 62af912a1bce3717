//! HTTP: place (after the guarded payment call), read and cancel orders. Validation of input lives here.

use crate::domain::PricingError;
use crate::domain::{self, Order, OrderStatus};
use crate::events::{ORDER_CANCELLED, ORDER_PLACED, OrderEnded, OrderPlaced};
use crate::store;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use food_delivery_contract::limits;
use food_delivery_kit::client::ServiceClient;
use food_delivery_kit::events::Outbox;
use food_delivery_kit::http::{Json, Path, Query};
use food_delivery_kit::store::now_millis;
use food_delivery_kit::{FieldViolation, Problem, Store};
use serde::{Deserialize, Serialize};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct OrderApi {
    /// The orders store.
    pub store: Store,
    /// Where events go.
    pub outbox: Outbox,
    /// The guarded client of the payment service.
    pub payment: ServiceClient,
    /// How long an order waits for its payment before it is given up and its hold voided.
    pub payment_deadline: std::time::Duration,
}

/// The order routes.
pub fn routes(api: OrderApi) -> Router {
    Router::new()
        .route("/orders", post(place_order).get(orders_of_customer))
        .route("/orders/{order_id}", get(order_by_id))
        .route("/orders/{order_id}/cancel", post(cancel_order))
        .route(
            food_delivery_kit::http::OPENAPI_PATH,
            get(food_delivery_kit::http::openapi_document::<OrderApiDocument>),
        )
        .with_state(api)
}

/// The service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "food-delivery order",
        description = "Places an order once its payment is authorized; follows it through kitchen and delivery; cancels it until the kitchen is cleared to cook."
    ),
    paths(place_order, order_by_id, orders_of_customer, cancel_order),
    components(schemas(PlaceOrder, RequestedItem, Order, Problem))
)]
pub struct OrderApiDocument;

/// `POST /orders` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrder {
    /// Who orders, 1-64 characters.
    customer_id: String,
    /// 1-20 lines.
    items: Vec<RequestedItem>,
}

/// One requested line.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestedItem {
    /// A dish on the kitchen's menu.
    menu_id: String,
    /// 1-100.
    qty: i64,
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl PlaceOrder {
    fn validate(&self) -> Result<(), Problem> {
        let mut violations = Vec::new();
        if self.customer_id.trim().is_empty() || self.customer_id.len() > 64 {
            violations.push(FieldViolation::new("customerId", "must be 1-64 characters"));
        }
        if !(1..=limits::MAX_ORDER_LINES).contains(&self.items.len()) {
            violations.push(FieldViolation::new(
                "items",
                format!("must have 1 to {} lines", limits::MAX_ORDER_LINES),
            ));
        }
        for (index, item) in self.items.iter().enumerate() {
            if item.menu_id.trim().is_empty() {
                violations.push(FieldViolation::new(
                    format!("items[{index}].menuId"),
                    "must not be empty",
                ));
            }
            if !(1..=limits::MAX_LINE_QTY).contains(&item.qty) {
                violations.push(FieldViolation::new(
                    format!("items[{index}].qty"),
                    format!("must be between 1 and {}", limits::MAX_LINE_QTY),
                ));
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Problem::validation(violations))
        }
    }

    fn requested(&self) -> Vec<(String, i64)> {
        self.items
            .iter()
            .map(|item| (item.menu_id.clone(), item.qty))
            .collect()
    }

    /// Whether `existing` is what this request asks for (a retry) rather than a different order under the same key.
    fn matches(&self, existing: &Order) -> bool {
        let ordered: Vec<(String, i64)> = existing
            .lines
            .iter()
            .map(|line| (line.menu_id.clone(), line.qty))
            .collect();
        existing.customer_id == self.customer_id && ordered == self.requested()
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|key| {
        (1..=255).contains(&key.len()) && key.bytes().all(|byte| byte.is_ascii_graphic())
    });
    key.map(|key| Some(key.to_owned())).ok_or_else(|| {
        Problem::bad_request("Idempotency-Key must be 1-255 visible ASCII characters")
    })
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

/// Asks payment to authorize; the payment id, or the problem the customer gets.
async fn authorize(
    api: &OrderApi,
    order_id: &str,
    customer_id: &str,
    amount: i64,
    qty: i64,
) -> Result<String, Problem> {
    let request = PaymentRequest {
        order_id,
        customer_id,
        amount,
        qty,
    };
    let answer = api
        .payment
        .post_json("/payments", &request, &[])
        .await
        .map_err(|error| {
            tracing::warn!(%error, order_id, "payment unavailable");
            error.to_problem()
        })?;
    match answer.status {
        StatusCode::OK | StatusCode::CREATED => {
            let authorized: PaymentAnswer = answer.json().map_err(|error| error.to_problem())?;
            // Anything but an authorization (a voided or refunded payment, a status this version does not know)
            // must not place the order.
            if !AUTHORIZED_STATUSES.contains(&authorized.status.as_str()) {
                return Err(Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "bad-gateway",
                    "A dependency failed",
                )
                .with_detail(format!(
                    "payment answered with a payment that is {}, not an authorization",
                    authorized.status
                )));
            }
            Ok(authorized.payment_id)
        }
        StatusCode::PAYMENT_REQUIRED => {
            let declined: Problem = answer.json().map_err(|error| error.to_problem())?;
            Err(Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment-declined",
                "Payment declined",
            )
            .with_detail(
                declined
                    .detail
                    .unwrap_or_else(|| "the payment was declined".to_owned()),
            ))
        }
        StatusCode::CONFLICT => Err(Problem::conflict(
            "a different payment already exists for this order",
        )),
        // Payment refused this service's credential without acting: the two hold different ones for a moment (the
        // credential's Secret re-created and one of them not rolled yet, or the first rollout after the operator
        // began to set one). Retrying shortly reaches a matching pair; nothing was held.
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            tracing::warn!(
                order_id,
                "payment refused this service's internal credential"
            );
            Err(Problem::unavailable(
                "payment did not accept this service's credential (a rollout is changing it); nothing was \
                 charged: try again shortly",
                std::time::Duration::from_secs(2),
            ))
        }
        other => Err(Problem::new(
            StatusCode::BAD_GATEWAY,
            "bad-gateway",
            "A dependency failed",
        )
        .with_detail(format!("payment answered {other} to a valid authorization"))),
    }
}

/// Places an order: prices it from the kitchen's menu, records it as waiting for its payment, has payment
/// authorize it (a hold, with a deadline, a concurrency limit and a circuit breaker), then places and announces it in
/// one transaction. An order is only placed with an authorization; a payment answer that never arrives (a timeout,
/// a crash, a client that gave up) leaves a pending order that its deadline settles, voiding any hold. With an
/// `Idempotency-Key`, a retry gets the first outcome and is never charged twice.
#[utoipa::path(
    post,
    path = "/orders",
    request_body = PlaceOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and request give the same order")),
    responses(
        (status = 201, description = "Paid and placed (or the first outcome of a retry)", body = Order),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "Payment declined; no order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used for a different order, or its earlier attempt was given up", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule (unknown dish, qty out of range); `errors` names it", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Payment is slow, down or its circuit is open; retry after Retry-After with the same Idempotency-Key. Nothing is charged: a hold made meanwhile is voided unless the retry completes the order", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn place_order(
    State(api): State<OrderApi>,
    headers: HeaderMap,
    Json(request): Json<PlaceOrder>,
) -> Result<(StatusCode, axum::Json<Order>), Problem> {
    let key = idempotency_key(&headers)?;
    request.validate()?;
    let order_id = domain::order_id_for(&request.customer_id, key.as_deref());
    let found = match store::order(api.store.pool(), &order_id).await? {
        Some(existing) => resume(&api, &request, existing)?,
        None => match record_pending(&api, &request, &order_id).await? {
            Ok(pending) => Resumed::Pending(pending),
            // A concurrent request with the same key recorded it first.
            Err(existing) => resume(&api, &request, existing)?,
        },
    };
    let pending = match found {
        Resumed::Pending(pending) => pending,
        Resumed::Done(order) => return Ok((StatusCode::CREATED, axum::Json(order))),
    };
    let qty = pending.lines.iter().map(|line| line.qty).sum();
    let payment_id =
        match authorize(&api, &order_id, &pending.customer_id, pending.amount, qty).await {
            Ok(payment_id) => payment_id,
            Err(problem) if refuses_for_good(&problem) => {
                // Payment said no (declined, a conflicting payment, invalid): nothing is held, so the pending order
                // goes, and the answer's "no order" is true. A retry asks again from scratch.
                store::forget_pending(api.store.pool(), &order_id).await?;
                return Err(problem);
            }
            Err(problem) => return Err(explain_pending(problem, &api)),
        };
    let now = now_millis();
    let order = Order {
        payment_id,
        status: OrderStatus::Placed,
        updated_at: now,
        ..pending
    };
    let placed = OrderPlaced {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        items: order.lines.clone(),
        amount: order.amount,
        payment_id: order.payment_id.clone(),
    };
    let mut transaction = api.store.begin().await?;
    if !store::place_pending(&mut transaction, &order).await? {
        transaction.rollback().await?;
        // Settled meanwhile: placed by a concurrent retry (its answer is ours), or given up or cancelled (the hold
        // is voided by the event that settled it).
        let settled = store::order(api.store.pool(), &order_id)
            .await?
            .ok_or_else(Problem::internal)?;
        return match resume(&api, &request, settled)? {
            Resumed::Done(order) => Ok((StatusCode::CREATED, axum::Json(order))),
            Resumed::Pending(_) => Err(Problem::internal()),
        };
    }
    api.outbox
        .record(&mut transaction, ORDER_PLACED, &order_id, &placed)
        .await?;
    api.outbox.commit(transaction).await?;
    Ok((StatusCode::CREATED, axum::Json(order)))
}

/// Prices the request and records it as waiting for its payment (committed before payment is asked); `Err` with
/// the existing order when one with this id is there already.
async fn record_pending(
    api: &OrderApi,
    request: &PlaceOrder,
    order_id: &str,
) -> Result<Result<Order, Order>, Problem> {
    let menu = store::menu(api.store.pool()).await?;
    let (lines, amount) =
        domain::price(&menu, &request.requested()).map_err(|error| match error {
            PricingError::UnknownDishes(unknown) => Problem::validation(
                unknown
                    .into_iter()
                    .map(|index| {
                        FieldViolation::new(
                            format!("items[{index}].menuId"),
                            format!("unknown menu item '{}'", request.items[index].menu_id),
                        )
                    })
                    .collect(),
            ),
            PricingError::AmountTooLarge => Problem::validation(vec![FieldViolation::new(
                "items",
                format!(
                    "the order would cost more than {} (minor units)",
                    limits::MAX_AMOUNT
                ),
            )]),
        })?;
    let now = now_millis();
    let pending = Order {
        order_id: order_id.to_owned(),
        customer_id: request.customer_id.clone(),
        lines,
        amount,
        payment_id: String::new(),
        status: OrderStatus::PaymentPending,
        reason: None,
        placed_at: now,
        updated_at: now,
    };
    let mut transaction = api.store.begin().await?;
    if store::insert_order(&mut transaction, &pending).await? {
        transaction.commit().await?;
        return Ok(Ok(pending));
    }
    transaction.rollback().await?;
    let existing = store::order(api.store.pool(), order_id)
        .await?
        .ok_or_else(Problem::internal)?;
    Ok(Err(existing))
}

/// What a request with an existing order id (a retry with the same key) carries on with.
enum Resumed {
    /// Still waiting for its payment: ask payment again (it answers with the same hold).
    Pending(Order),
    /// Placed already: the first outcome is the answer.
    Done(Order),
}

/// What a request finds when its order id exists already: a pending order is resumed, a placed one is the first
/// outcome, one given up before its payment completed is a conflict that says so.
fn resume(api: &OrderApi, request: &PlaceOrder, existing: Order) -> Result<Resumed, Problem> {
    if !request.matches(&existing) {
        return Err(Problem::conflict(
            "this Idempotency-Key was already used for a different order",
        ));
    }
    match existing.status {
        OrderStatus::PaymentPending => Ok(Resumed::Pending(existing)),
        _ if existing.payment_id.is_empty() => Err(Problem::conflict(format!(
            "the order placed with this Idempotency-Key was given up before its payment completed ({}); \
             nothing was charged; place it again with a new Idempotency-Key",
            existing
                .reason
                .as_deref()
                .unwrap_or(&domain::abandoned_reason(api.payment_deadline.as_secs()))
        ))),
        _ => Ok(Resumed::Done(existing)),
    }
}

/// Whether payment's answer is a definite refusal (a 4xx), as opposed to no answer or a broken one, after which a
/// hold may exist.
fn refuses_for_good(problem: &Problem) -> bool {
    problem.status_code().is_client_error()
}

/// The customer's answer when payment did not authorize in time: what happens to the money, truthfully.
fn explain_pending(problem: Problem, api: &OrderApi) -> Problem {
    if problem.status_code() != StatusCode::SERVICE_UNAVAILABLE {
        return problem;
    }
    let detail = problem.detail.clone().unwrap_or_default();
    problem.with_detail(format!(
        "{detail}. Nothing is charged: retry with the same Idempotency-Key to complete the order; otherwise any \
         authorization made meanwhile is voided within {} s",
        api.payment_deadline.as_secs() + 5
    ))
}

/// One order.
#[utoipa::path(
    get,
    path = "/orders/{order_id}",
    params(("order_id" = String, Path, description = "The order")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn order_by_id(
    State(api): State<OrderApi>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Order>, Problem> {
    store::order(api.store.pool(), &order_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no order {order_id}")))
}

/// `GET /orders?customerId=` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ByCustomer {
    /// Whose orders.
    customer_id: String,
}

/// A customer's orders, newest first.
#[utoipa::path(
    get,
    path = "/orders",
    params(ByCustomer),
    responses(
        (status = 200, description = "The orders", body = Vec<Order>),
        (status = 400, description = "customerId is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn orders_of_customer(
    State(api): State<OrderApi>,
    Query(query): Query<ByCustomer>,
) -> Result<axum::Json<Vec<Order>>, Problem> {
    store::orders_of(api.store.pool(), &query.customer_id)
        .await
        .map(axum::Json)
        .map_err(Problem::from)
}

/// Cancels an order until delivery starts. Accepted whatever else is down: it only writes the order and its
/// event; payment refunds, the kitchen gives the stock back, the delivery stops, each when it hears of it.
#[utoipa::path(
    post,
    path = "/orders/{order_id}/cancel",
    params(("order_id" = String, Path, description = "The order")),
    responses(
        (status = 200, description = "Cancelled (also for a repeated cancel)", body = Order),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The kitchen was cleared to cook it, delivery started, or the order was delivered or rejected", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel_order(
    State(api): State<OrderApi>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Order>, Problem> {
    // A kitchen or delivery event may change the order between our read and our write; then decide again.
    for _ in 0..3 {
        let mut transaction = api.store.begin().await?;
        let mut order = store::order(&mut *transaction, &order_id)
            .await?
            .ok_or_else(|| Problem::not_found(format!("no order {order_id}")))?;
        let previous = order.status;
        if !domain::cancel(previous).map_err(|refusal| Problem::conflict(refusal.to_string()))? {
            return Ok(axum::Json(order));
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
        api.outbox
            .record(&mut transaction, ORDER_CANCELLED, &order_id, &ended)
            .await?;
        api.outbox.commit(transaction).await?;
        return Ok(axum::Json(order));
    }
    Err(Problem::unavailable(
        "the order kept changing; try again",
        std::time::Duration::from_secs(1),
    ))
}
