//! HTTP: place (after the guarded payment call), read and cancel orders. Validation of input lives here.

use crate::domain::{self, Order, OrderStatus};
use crate::events::{ORDER_CANCELLED, ORDER_PLACED, ORDERS_TOPIC, OrderEnded, OrderPlaced};
use crate::store;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use food_delivery_kit::client::ServiceClient;
use food_delivery_kit::events::{Event, Outbox};
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
        description = "Places an order once its payment is authorized; follows it through kitchen and delivery; cancels it until delivery starts."
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
        if !(1..=20).contains(&self.items.len()) {
            violations.push(FieldViolation::new("items", "must have 1 to 20 lines"));
        }
        for (index, item) in self.items.iter().enumerate() {
            if item.menu_id.trim().is_empty() {
                violations.push(FieldViolation::new(
                    format!("items[{index}].menuId"),
                    "must not be empty",
                ));
            }
            if !(1..=100).contains(&item.qty) {
                violations.push(FieldViolation::new(
                    format!("items[{index}].qty"),
                    "must be between 1 and 100",
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

fn retry_answer(
    request: &PlaceOrder,
    existing: Order,
) -> Result<(StatusCode, axum::Json<Order>), Problem> {
    if request.matches(&existing) {
        Ok((StatusCode::CREATED, axum::Json(existing)))
    } else {
        Err(Problem::conflict(
            "this Idempotency-Key was already used for a different order",
        ))
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
}

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
        StatusCode::OK | StatusCode::CREATED => Ok(answer
            .json::<PaymentAnswer>()
            .map_err(|error| error.to_problem())?
            .payment_id),
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
        other => Err(Problem::new(
            StatusCode::BAD_GATEWAY,
            "bad-gateway",
            "A dependency failed",
        )
        .with_detail(format!("payment answered {other} to a valid authorization"))),
    }
}

/// Places an order: prices it from the kitchen's menu, has payment authorize it (with a deadline, a concurrency
/// limit and a circuit breaker), then registers it and announces it, in one transaction. An unpaid order is never
/// registered. With an `Idempotency-Key`, a retry gets the first outcome and is never charged twice.
#[utoipa::path(
    post,
    path = "/orders",
    request_body = PlaceOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key and request give the same order")),
    responses(
        (status = 201, description = "Paid and placed (or the first outcome of a retry)", body = Order),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "Payment declined; no order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The Idempotency-Key was used for a different order", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule (unknown dish, qty out of range); `errors` names it", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Payment is slow, down or its circuit is open; retry after Retry-After. No order, no charge", body = Problem, content_type = "application/problem+json"),
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
    if let Some(existing) = store::order(api.store.pool(), &order_id)
        .await
        .map_err(Problem::unexpected)?
    {
        return retry_answer(&request, existing);
    }
    let menu = store::menu(api.store.pool())
        .await
        .map_err(Problem::unexpected)?;
    let (lines, amount) = domain::price(&menu, &request.requested()).map_err(|unknown| {
        Problem::validation(
            unknown
                .into_iter()
                .map(|index| {
                    FieldViolation::new(
                        format!("items[{index}].menuId"),
                        format!("unknown menu item '{}'", request.items[index].menu_id),
                    )
                })
                .collect(),
        )
    })?;
    let qty = lines.iter().map(|line| line.qty).sum();
    let payment_id = authorize(&api, &order_id, &request.customer_id, amount, qty).await?;
    let now = now_millis();
    let order = Order {
        order_id: order_id.clone(),
        customer_id: request.customer_id.clone(),
        lines,
        amount,
        payment_id,
        status: OrderStatus::Placed,
        reason: None,
        placed_at: now,
        updated_at: now,
    };
    let placed = OrderPlaced {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        items: order.lines.clone(),
        amount,
        payment_id: order.payment_id.clone(),
    };
    let event = Event::new(ORDER_PLACED, crate::SPEC.name, &order_id, &placed)
        .map_err(Problem::unexpected)?;
    let mut transaction = api.store.begin().await.map_err(Problem::unexpected)?;
    if !store::insert_order(&mut transaction, &order)
        .await
        .map_err(Problem::unexpected)?
    {
        transaction.rollback().await.map_err(Problem::unexpected)?;
        let existing = store::order(api.store.pool(), &order_id)
            .await
            .map_err(Problem::unexpected)?
            .ok_or_else(Problem::internal)?;
        return retry_answer(&request, existing);
    }
    api.outbox
        .append(&mut transaction, ORDERS_TOPIC, &event)
        .await
        .map_err(Problem::unexpected)?;
    transaction.commit().await.map_err(Problem::unexpected)?;
    api.outbox.wake_relay();
    Ok((StatusCode::CREATED, axum::Json(order)))
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
        .await
        .map_err(Problem::unexpected)?
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
        .map_err(Problem::unexpected)
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
        (status = 409, description = "Delivery started, or the order was delivered or rejected", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel_order(
    State(api): State<OrderApi>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Order>, Problem> {
    // A kitchen or delivery event may change the order between our read and our write; then decide again.
    for _ in 0..3 {
        let mut transaction = api.store.begin().await.map_err(Problem::unexpected)?;
        let mut order = store::order(&mut *transaction, &order_id)
            .await
            .map_err(Problem::unexpected)?
            .ok_or_else(|| Problem::not_found(format!("no order {order_id}")))?;
        let previous = order.status;
        if !domain::cancel(previous).map_err(|refusal| Problem::conflict(refusal.to_string()))? {
            return Ok(axum::Json(order));
        }
        order.status = OrderStatus::Cancelled;
        order.reason = Some("cancelled by the customer".to_owned());
        order.updated_at = now_millis();
        if !store::save_status(&mut transaction, &order, previous)
            .await
            .map_err(Problem::unexpected)?
        {
            continue;
        }
        let ended = OrderEnded {
            order_id: order.order_id.clone(),
            customer_id: order.customer_id.clone(),
            reason: "cancelled by the customer".to_owned(),
            missing_items: None,
        };
        let event = Event::new(ORDER_CANCELLED, crate::SPEC.name, &order_id, &ended)
            .map_err(Problem::unexpected)?;
        api.outbox
            .append(&mut transaction, ORDERS_TOPIC, &event)
            .await
            .map_err(Problem::unexpected)?;
        transaction.commit().await.map_err(Problem::unexpected)?;
        api.outbox.wake_relay();
        return Ok(axum::Json(order));
    }
    Err(Problem::unavailable(
        "the order kept changing; try again",
        std::time::Duration::from_secs(1),
    ))
}
