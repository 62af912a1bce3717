//! HTTP: a delivery's state and the riders' buttons.

use crate::domain::{Delivery, RiderAction};
use crate::policies::{self, RideError};
use crate::store;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use food_delivery_kit::events::Outbox;
use food_delivery_kit::http::Path;
use food_delivery_kit::{Problem, Store};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct DeliveryApi {
    /// The deliveries store.
    pub store: Store,
    /// Where events go.
    pub outbox: Outbox,
}

/// The delivery routes.
pub fn routes(api: DeliveryApi) -> Router {
    Router::new()
        .route("/deliveries/{order_id}", get(delivery))
        .route("/deliveries/{order_id}/pickup", post(pick_up))
        .route("/deliveries/{order_id}/complete", post(complete))
        .route(
            food_delivery_kit::http::OPENAPI_PATH,
            get(food_delivery_kit::http::openapi_document::<DeliveryApiDocument>),
        )
        .with_state(api)
}

/// The service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "food-delivery delivery",
        description = "A delivery per cooked order: picked up, completed, or cancelled with its order."
    ),
    paths(delivery, pick_up, complete),
    components(schemas(Delivery, Problem))
)]
pub struct DeliveryApiDocument;

impl From<RideError> for Problem {
    fn from(error: RideError) -> Self {
        match error {
            RideError::NoDelivery(order_id) => {
                Problem::not_found(format!("no delivery for order {order_id}"))
            }
            RideError::NotAllowed(reason) => Problem::conflict(reason),
            RideError::Store(error) => error.into(),
            RideError::Outbox(error) => error.into(),
        }
    }
}

/// The delivery of an order.
#[utoipa::path(
    get,
    path = "/deliveries/{order_id}",
    params(("order_id" = String, Path, description = "The order")),
    responses(
        (status = 200, description = "The delivery", body = Delivery),
        (status = 404, description = "No delivery for that order (not cooked yet)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delivery(
    State(api): State<DeliveryApi>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Delivery>, Problem> {
    store::delivery(api.store.pool(), &order_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no delivery for order {order_id}")))
}

/// A rider picks the food up; from now on the order cannot be cancelled.
#[utoipa::path(
    post,
    path = "/deliveries/{order_id}/pickup",
    params(("order_id" = String, Path, description = "The order")),
    responses(
        (status = 200, description = "On its way", body = Delivery),
        (status = 404, description = "No delivery for that order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not waiting (already picked up, delivered or cancelled)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn pick_up(
    State(api): State<DeliveryApi>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Delivery>, Problem> {
    let delivery = policies::ride(&api.store, &api.outbox, &order_id, RiderAction::PickUp).await?;
    Ok(axum::Json(delivery))
}

/// A rider hands the food over.
#[utoipa::path(
    post,
    path = "/deliveries/{order_id}/complete",
    params(("order_id" = String, Path, description = "The order")),
    responses(
        (status = 200, description = "Delivered", body = Delivery),
        (status = 404, description = "No delivery for that order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not on its way", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn complete(
    State(api): State<DeliveryApi>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Delivery>, Problem> {
    let delivery =
        policies::ride(&api.store, &api.outbox, &order_id, RiderAction::Complete).await?;
    Ok(axum::Json(delivery))
}
