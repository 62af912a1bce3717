//! HTTP: the menu (read and change) and the cooks' buttons. Validation of input lives here.

use crate::domain::{MenuItem, Ticket};
use crate::policies::{self, CookError};
use crate::store;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post, put};
use food_delivery_contract::limits;
use food_delivery_kit::events::Outbox;
use food_delivery_kit::http::{Json, Path};
use food_delivery_kit::{FieldViolation, Problem, Store};
use serde::Deserialize;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct KitchenApi {
    /// The kitchen's store.
    pub store: Store,
    /// Where events go.
    pub outbox: Outbox,
}

/// The kitchen's routes.
pub fn routes(api: KitchenApi) -> Router {
    Router::new()
        .route("/menu", get(menu))
        .route("/menu/{menu_id}", put(update_menu_item))
        .route("/tickets/{order_id}", get(ticket))
        .route("/tickets/{order_id}/start", post(start_cooking))
        .route("/tickets/{order_id}/finish", post(finish_cooking))
        .route(
            food_delivery_kit::http::OPENAPI_PATH,
            get(food_delivery_kit::http::openapi_document::<KitchenApiDocument>),
        )
        .with_state(api)
}

/// The service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "food-delivery kitchen",
        description = "Menu and stock; tickets for placed orders; cooking."
    ),
    paths(menu, update_menu_item, ticket, start_cooking, finish_cooking),
    components(schemas(MenuItem, MenuItemChange, Ticket, Problem))
)]
pub struct KitchenApiDocument;

/// The menu with prices and stock.
#[utoipa::path(get, path = "/menu", responses((status = 200, description = "Every dish", body = Vec<MenuItem>)))]
async fn menu(State(api): State<KitchenApi>) -> Result<axum::Json<Vec<MenuItem>>, Problem> {
    Ok(axum::Json(store::menu(api.store.pool()).await?))
}

/// `PUT /menu/{menuId}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MenuItemChange {
    /// The dish's name, 1-100 characters.
    name: String,
    /// Price in minor units, 0 or more.
    price: i64,
    /// Portions available, 0 to 1,000,000.
    stock: i64,
}

/// Menu ids are short, lower-case and URL-safe: they travel in paths, events and other services' tables.
fn valid_menu_id(menu_id: &str) -> bool {
    (1..=64).contains(&menu_id.len())
        && menu_id
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// Creates or replaces a dish; the order service learns of it through the event.
#[utoipa::path(
    put,
    path = "/menu/{menu_id}",
    params(("menu_id" = String, Path, description = "Lower-case letters, digits and '-', 1-64 characters")),
    request_body = MenuItemChange,
    responses(
        (status = 200, description = "The dish as saved", body = MenuItem),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule; `errors` names it", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_menu_item(
    State(api): State<KitchenApi>,
    Path(menu_id): Path<String>,
    Json(change): Json<MenuItemChange>,
) -> Result<axum::Json<MenuItem>, Problem> {
    let mut violations = Vec::new();
    if !valid_menu_id(&menu_id) {
        violations.push(FieldViolation::new(
            "menuId",
            "must be 1-64 lower-case letters, digits or '-'",
        ));
    }
    // Characters, not bytes: a 40-character Korean name is 120 bytes.
    if change.name.trim().is_empty() || change.name.chars().count() > limits::MAX_DISH_NAME_CHARS {
        violations.push(FieldViolation::new(
            "name",
            format!("must be 1-{} characters", limits::MAX_DISH_NAME_CHARS),
        ));
    }
    if !(1..=limits::MAX_PRICE).contains(&change.price) {
        violations.push(FieldViolation::new(
            "price",
            format!("must be between 1 and {} (minor units)", limits::MAX_PRICE),
        ));
    }
    if !(0..=limits::MAX_STOCK).contains(&change.stock) {
        violations.push(FieldViolation::new(
            "stock",
            format!("must be between 0 and {}", limits::MAX_STOCK),
        ));
    }
    if !violations.is_empty() {
        return Err(Problem::validation(violations));
    }
    let item = MenuItem {
        menu_id,
        name: change.name.trim().to_owned(),
        price: change.price,
        stock: change.stock,
    };
    let mut transaction = api.store.begin().await?;
    store::save_menu_item(&mut transaction, &item).await?;
    policies::record_dish(&api.outbox, &mut transaction, &item).await?;
    api.outbox.commit(transaction).await?;
    Ok(axum::Json(item))
}

/// The ticket of an order.
#[utoipa::path(
    get,
    path = "/tickets/{order_id}",
    params(("order_id" = String, Path, description = "The order")),
    responses(
        (status = 200, description = "The ticket", body = Ticket),
        (status = 404, description = "No ticket for that order", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn ticket(
    State(api): State<KitchenApi>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Ticket>, Problem> {
    store::ticket(api.store.pool(), &order_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no ticket for order {order_id}")))
}

impl From<CookError> for Problem {
    fn from(error: CookError) -> Self {
        match error {
            CookError::NoTicket(order_id) => {
                Problem::not_found(format!("no ticket for order {order_id}"))
            }
            CookError::NotAllowed(reason) => Problem::conflict(reason),
            CookError::Store(error) => error.into(),
            CookError::Outbox(error) => error.into(),
        }
    }
}

/// A cook asks to start an accepted ticket: it starts cooking once the order service clears it (the order was not
/// cancelled first), a moment later.
#[utoipa::path(
    post,
    path = "/tickets/{order_id}/start",
    params(("order_id" = String, Path, description = "The order")),
    responses(
        (status = 202, description = "Asked: cooking starts once the order is cleared", body = Ticket),
        (status = 404, description = "No ticket for that order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not accepted (already cooking, ready or cancelled)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn start_cooking(
    State(api): State<KitchenApi>,
    Path(order_id): Path<String>,
) -> Result<(axum::http::StatusCode, axum::Json<Ticket>), Problem> {
    let ticket = policies::request_start(&api.store, &api.outbox, &order_id).await?;
    Ok((axum::http::StatusCode::ACCEPTED, axum::Json(ticket)))
}

/// A cook finishes a ticket: ready for pickup.
#[utoipa::path(
    post,
    path = "/tickets/{order_id}/finish",
    params(("order_id" = String, Path, description = "The order")),
    responses(
        (status = 200, description = "Ready", body = Ticket),
        (status = 404, description = "No ticket for that order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not cooking", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn finish_cooking(
    State(api): State<KitchenApi>,
    Path(order_id): Path<String>,
) -> Result<axum::Json<Ticket>, Problem> {
    Ok(axum::Json(
        policies::finish(&api.store, &api.outbox, &order_id).await?,
    ))
}
