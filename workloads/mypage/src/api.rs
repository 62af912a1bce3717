//! HTTP: the views, read-only. A 404 from my page means "not seen yet" as much as "does not exist": the read
//! side is eventually consistent, and says so in the problem's detail.

use crate::domain::{CustomerHistory, HistoryEntry, HistoryKind, OrderStatus, OrderTrace};
use crate::domain::{PaymentSummary, StampSummary, TimelineEntry};
use crate::events::OrderLine;
use crate::store;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use food_delivery_kit::http::{Path, Query};
use food_delivery_kit::{Problem, Store};
use serde::Deserialize;

/// The my-page routes.
pub fn routes(store: Store) -> Router {
    Router::new()
        .route("/mypage/orders/{order_id}", get(order_trace))
        .route("/mypage/orders", get(orders_of_customer))
        .route(
            "/mypage/customers/{customer_id}/history",
            get(customer_history),
        )
        .route(
            food_delivery_kit::http::OPENAPI_PATH,
            get(food_delivery_kit::http::openapi_document::<MyPageApiDocument>),
        )
        .with_state(store)
}

/// The service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "food-delivery mypage",
        description = "The read side: every order's status and timeline, every customer's history, built from events."
    ),
    paths(order_trace, orders_of_customer, customer_history),
    components(schemas(
        OrderTrace,
        OrderStatus,
        OrderLine,
        PaymentSummary,
        StampSummary,
        TimelineEntry,
        CustomerHistory,
        HistoryEntry,
        HistoryKind,
        Problem
    ))
)]
pub struct MyPageApiDocument;

const NOT_SEEN: &str = "(my page is eventually consistent: a new one appears within moments)";

/// An order's status, items, payment, stamps and full timeline.
#[utoipa::path(
    get,
    path = "/mypage/orders/{order_id}",
    params(("order_id" = String, Path, description = "The order")),
    responses(
        (status = 200, description = "The order's trace", body = OrderTrace),
        (status = 404, description = "No event about this order seen", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn order_trace(
    State(store): State<Store>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<OrderTrace>, Problem> {
    store::order(store.pool(), &order_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no order {order_id} seen yet {NOT_SEEN}")))
}

/// `GET /mypage/orders?customerId=` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ByCustomer {
    /// Whose orders.
    customer_id: String,
}

/// A customer's orders with their traces, oldest first.
#[utoipa::path(
    get,
    path = "/mypage/orders",
    params(ByCustomer),
    responses(
        (status = 200, description = "The customer's orders", body = Vec<OrderTrace>),
        (status = 400, description = "customerId is missing", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn orders_of_customer(
    State(store): State<Store>,
    Query(query): Query<ByCustomer>,
) -> Result<axum::Json<Vec<OrderTrace>>, Problem> {
    store::orders_of(store.pool(), &query.customer_id)
        .await
        .map(axum::Json)
        .map_err(Problem::from)
}

/// A customer's details and every change to them (NEW, MOD with what changed, DEL).
#[utoipa::path(
    get,
    path = "/mypage/customers/{customer_id}/history",
    params(("customer_id" = String, Path, description = "The customer")),
    responses(
        (status = 200, description = "The customer's history", body = CustomerHistory),
        (status = 404, description = "No event about this customer seen", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn customer_history(
    State(store): State<Store>,
    Path(customer_id): Path<String>,
) -> Result<axum::Json<CustomerHistory>, Problem> {
    store::customer(store.pool(), &customer_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no customer {customer_id} seen yet {NOT_SEEN}")))
}
