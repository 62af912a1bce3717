//! HTTP: place (after the guarded payment call), read and cancel orders. Validation of input lives here.

use crate::domain::{self, Order};
use crate::policies::ordering::{
    self, CancelError, Ordering, PaymentFailure, PlaceError, Refusal, Requested,
};
use crate::store;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use food_delivery_contract::limits;
use food_delivery_kit::http::{Json, Path, Query};
use food_delivery_kit::{FieldViolation, Problem};
use serde::Deserialize;

/// What the handlers share: what placing and cancelling need (its store is the one reads use too).
#[derive(Debug, Clone)]
pub struct OrderApi {
    /// The use cases' dependencies.
    pub ordering: Ordering,
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
    let requested = Requested {
        customer_id: request.customer_id.clone(),
        lines: request.requested(),
    };
    let order = ordering::place(&api.ordering, &order_id, &requested).await?;
    Ok((StatusCode::CREATED, axum::Json(order)))
}

impl From<PlaceError> for Problem {
    fn from(error: PlaceError) -> Self {
        match error {
            PlaceError::UnknownDishes(unknown) => Problem::validation(
                unknown
                    .into_iter()
                    .map(|(index, menu_id)| {
                        FieldViolation::new(
                            format!("items[{index}].menuId"),
                            format!("unknown menu item '{menu_id}'"),
                        )
                    })
                    .collect(),
            ),
            PlaceError::AmountTooLarge => Problem::validation(vec![FieldViolation::new(
                "items",
                format!(
                    "the order would cost more than {} (minor units)",
                    limits::MAX_AMOUNT
                ),
            )]),
            PlaceError::KeyReused => Problem::conflict(error.to_string()),
            PlaceError::GivenUp { reason } => Problem::conflict(format!(
                "the order placed with this Idempotency-Key was given up before its payment completed ({reason}); \
                 nothing was charged; place it again with a new Idempotency-Key"
            )),
            PlaceError::Refused(Refusal::Declined(detail)) => Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment-declined",
                "Payment declined",
            )
            .with_detail(detail.unwrap_or_else(|| "the payment was declined".to_owned())),
            PlaceError::Refused(Refusal::Conflict) => {
                Problem::conflict(Refusal::Conflict.to_string())
            }
            PlaceError::PaymentFailed {
                failure,
                void_within,
            } => explain_pending(payment_problem(&failure), void_within),
            PlaceError::Inconsistent(order_id) => {
                tracing::error!(order_id, "an order changed in a way that cannot happen");
                Problem::internal()
            }
            PlaceError::Store(error) => error.into(),
            PlaceError::Outbox(error) => error.into(),
        }
    }
}

/// The answer for payment's failure to authorize: 503 when trying again shortly may work, 502 when it answered
/// nonsense.
fn payment_problem(failure: &PaymentFailure) -> Problem {
    match failure {
        PaymentFailure::Call(error) => error.to_problem(),
        PaymentFailure::CredentialRefused => Problem::unavailable(
            "payment did not accept this service's credential (a rollout is changing it); nothing was \
             charged: try again shortly",
            std::time::Duration::from_secs(2),
        ),
        PaymentFailure::NotAnAuthorization(_) | PaymentFailure::UnexpectedStatus(_) => {
            Problem::new(
                StatusCode::BAD_GATEWAY,
                "bad-gateway",
                "A dependency failed",
            )
            .with_detail(failure.to_string())
        }
    }
}

/// The customer's answer when payment did not authorize in time: what happens to the money, truthfully.
fn explain_pending(problem: Problem, void_within: std::time::Duration) -> Problem {
    if problem.status_code() != StatusCode::SERVICE_UNAVAILABLE {
        return problem;
    }
    let detail = problem.detail.clone().unwrap_or_default();
    problem.with_detail(format!(
        "{detail}. Nothing is charged: retry with the same Idempotency-Key to complete the order; otherwise any \
         authorization made meanwhile is voided within {} s",
        void_within.as_secs()
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
    store::order(api.ordering.store.pool(), &order_id)
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
    store::orders_of(api.ordering.store.pool(), &query.customer_id)
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
    Ok(axum::Json(
        ordering::cancel(&api.ordering.store, &api.ordering.outbox, &order_id).await?,
    ))
}

impl From<CancelError> for Problem {
    fn from(error: CancelError) -> Self {
        match error {
            CancelError::NoOrder(_) => Problem::not_found(error.to_string()),
            CancelError::TooLate(reason) => Problem::conflict(reason),
            CancelError::KeptChanging => {
                Problem::unavailable(error.to_string(), std::time::Duration::from_secs(1))
            }
            CancelError::Store(error) => error.into(),
            CancelError::Outbox(error) => error.into(),
        }
    }
}
