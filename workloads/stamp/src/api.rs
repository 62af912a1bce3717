//! HTTP: a customer's stamp card.

use crate::domain::StampCard;
use crate::store;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use food_delivery_kit::http::Path;
use food_delivery_kit::{Problem, Store};

/// The stamp routes.
pub fn routes(store: Store) -> Router {
    Router::new()
        .route("/stamps/{customer_id}", get(stamp_card))
        .route(
            food_delivery_kit::http::OPENAPI_PATH,
            get(food_delivery_kit::http::openapi_document::<StampApiDocument>),
        )
        .with_state(store)
}

/// The service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "food-delivery stamp",
        description = "Loyalty stamps: one per item of a paid order, taken back when it is refunded."
    ),
    paths(stamp_card),
    components(schemas(StampCard, Problem))
)]
pub struct StampApiDocument;

/// A customer's stamps (zero for a customer who has not ordered yet).
#[utoipa::path(
    get,
    path = "/stamps/{customer_id}",
    params(("customer_id" = String, Path, description = "The customer")),
    responses((status = 200, description = "The stamp card", body = StampCard))
)]
async fn stamp_card(
    State(store): State<Store>,
    Path(customer_id): Path<String>,
) -> Result<axum::Json<StampCard>, Problem> {
    store::card(store.pool(), &customer_id)
        .await
        .map(axum::Json)
        .map_err(Problem::from)
}
