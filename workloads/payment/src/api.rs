//! HTTP: translates requests into domain calls and results into responses; validation of input lives here.

use crate::domain::{self, Authorization, AuthorizationRequest, Payment};
use crate::{Settings, store};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use food_delivery_contract::limits;
use food_delivery_kit::events::Outbox;
use food_delivery_kit::http::{Json, Path, Query};
use food_delivery_kit::{FieldViolation, Problem, Store};
use serde::Deserialize;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct PaymentApi {
    /// The payments store.
    pub store: Store,
    /// Where events go.
    pub outbox: Outbox,
    /// Limits and simulated latency.
    pub settings: Settings,
}

/// The payment routes.
pub fn routes(api: PaymentApi) -> Router {
    // Authorizing is the order service's call, never a customer's: it needs the internal credential.
    let authorize = post(authorize_payment).route_layer(axum::middleware::from_fn_with_state(
        api.settings.credential.clone(),
        food_delivery_kit::credential::require,
    ));
    Router::new()
        .route("/payments", authorize.merge(get(payments_of_order)))
        .route("/payments/{payment_id}", get(payment_by_id))
        .route(
            food_delivery_kit::http::OPENAPI_PATH,
            get(food_delivery_kit::http::openapi_document::<PaymentApiDocument>),
        )
        .with_state(api)
}

/// The service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "food-delivery payment",
        description = "Authorizes an order's payment (idempotent per order) and refunds it when the order is cancelled or rejected."
    ),
    paths(authorize_payment, payment_by_id, payments_of_order),
    components(schemas(Payment, AuthorizePayment, Problem))
)]
pub struct PaymentApiDocument;

/// `POST /payments` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizePayment {
    /// The order being paid: at most one payment per order, 1-64 characters.
    order_id: String,
    /// Who pays, 1-64 characters.
    customer_id: String,
    /// Amount in minor units (cents), at least 1.
    amount: i64,
    /// Items in the order, 1-1000.
    qty: i64,
}

const MAX_ID_LENGTH: usize = 64;

fn validate_id(field: &str, value: &str, violations: &mut Vec<FieldViolation>) {
    if value.trim().is_empty() {
        violations.push(FieldViolation::new(field, "must not be empty"));
    } else if value.len() > MAX_ID_LENGTH {
        violations.push(FieldViolation::new(
            field,
            format!("must be at most {MAX_ID_LENGTH} characters"),
        ));
    }
}

impl AuthorizePayment {
    fn validate(self) -> Result<AuthorizationRequest, Problem> {
        let mut violations = Vec::new();
        validate_id("orderId", &self.order_id, &mut violations);
        validate_id("customerId", &self.customer_id, &mut violations);
        if !(1..=limits::MAX_AMOUNT).contains(&self.amount) {
            violations.push(FieldViolation::new(
                "amount",
                format!("must be between 1 and {} (minor units)", limits::MAX_AMOUNT),
            ));
        }
        if !(1..=limits::MAX_ORDER_QTY).contains(&self.qty) {
            violations.push(FieldViolation::new(
                "qty",
                format!("must be between 1 and {}", limits::MAX_ORDER_QTY),
            ));
        }
        if !violations.is_empty() {
            return Err(Problem::validation(violations));
        }
        Ok(AuthorizationRequest {
            order_id: self.order_id,
            customer_id: self.customer_id,
            amount: self.amount,
            qty: self.qty,
        })
    }
}

/// The answer for a retry: the first result if it asked for the same thing, a conflict otherwise.
fn existing_answer(
    existing: Payment,
    request: &AuthorizationRequest,
) -> Result<(StatusCode, axum::Json<Payment>), Problem> {
    if existing.ended_before_authorization() {
        return Err(Problem::conflict(format!(
            "order {} ended before its payment was authorized; nothing is held or charged",
            existing.order_id
        )));
    }
    if domain::is_same_request(&existing, request) {
        Ok((StatusCode::OK, axum::Json(existing)))
    } else {
        Err(Problem::conflict(format!(
            "order {} already has payment {} for a different customer, amount or qty",
            existing.order_id, existing.payment_id
        )))
    }
}

/// Authorizes the payment of an order as a hold: nothing is charged until the order is placed (OrderPlaced captures
/// it), and the hold is voided if the order never is. Retrying with the same order, customer, amount and qty
/// returns the first result; anything else for that order is a conflict, never a second hold.
#[utoipa::path(
    post,
    path = "/payments",
    request_body = AuthorizePayment,
    responses(
        (status = 201, description = "Authorized: held, captured when the order is placed", body = Payment),
        (status = 200, description = "A retry: the payment authorized the first time", body = Payment),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "Declined", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order already has a different payment, or it ended before this authorization", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule; `errors` names it", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn authorize_payment(
    State(api): State<PaymentApi>,
    Json(body): Json<AuthorizePayment>,
) -> Result<(StatusCode, axum::Json<Payment>), Problem> {
    let request = body.validate()?;
    if let Some(existing) = store::find_by_order(api.store.pool(), &request.order_id).await? {
        return existing_answer(existing, &request);
    }
    let payment_id = uuid::Uuid::now_v7().to_string();
    let payment = match domain::authorize(
        &request,
        api.settings.approval_limit,
        payment_id,
        food_delivery_kit::store::now_millis(),
    ) {
        Authorization::Approved(payment) => payment,
        Authorization::Declined(reason) => {
            return Err(Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment-declined",
                "Payment declined",
            )
            .with_detail(reason));
        }
    };
    let mut transaction = api.store.begin().await?;
    if !store::insert_if_first_for_order(&mut transaction, &payment).await? {
        // A concurrent request for the same order won the race; answer as a retry.
        transaction.rollback().await?;
        let existing = store::find_by_order(api.store.pool(), &request.order_id)
            .await?
            .ok_or_else(Problem::internal)?;
        return existing_answer(existing, &request);
    }
    // A hold announces nothing: stamps and my page follow the capture (or the void) that the order's own events
    // cause.
    transaction.commit().await?;
    // The simulated slowness comes after the hold is made: the worst case for the caller, whose answer can be
    // lost although payment acted (which the order service must survive without leaving a charge behind).
    if !api.settings.latency.is_zero() {
        tokio::time::sleep(api.settings.latency).await;
    }
    Ok((StatusCode::CREATED, axum::Json(payment)))
}

/// One payment.
#[utoipa::path(
    get,
    path = "/payments/{payment_id}",
    params(("payment_id" = String, Path, description = "The payment's id")),
    responses(
        (status = 200, description = "The payment", body = Payment),
        (status = 404, description = "No such payment", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn payment_by_id(
    State(api): State<PaymentApi>,
    Path(payment_id): Path<String>,
) -> Result<axum::Json<Payment>, Problem> {
    store::find_by_id(api.store.pool(), &payment_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no payment {payment_id}")))
}

/// `GET /payments?orderId=` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ByOrder {
    /// The order whose payment to show.
    order_id: String,
}

/// The payment of an order: a list of zero or one.
#[utoipa::path(
    get,
    path = "/payments",
    params(ByOrder),
    responses(
        (status = 200, description = "The order's payment, if any", body = Vec<Payment>),
        (status = 400, description = "orderId is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn payments_of_order(
    State(api): State<PaymentApi>,
    Query(query): Query<ByOrder>,
) -> Result<axum::Json<Vec<Payment>>, Problem> {
    let payment = store::find_by_order(api.store.pool(), &query.order_id).await?;
    Ok(axum::Json(payment.into_iter().collect()))
}
