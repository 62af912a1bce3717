//! HTTP: register, read, update and delete customers. Validation of input lives here.

use crate::domain::{self, Customer};
use crate::events::{
    CUSTOMER_DELETED, CUSTOMER_REGISTERED, CUSTOMER_UPDATED, CustomerDeleted, CustomerRegistered,
    CustomerUpdated,
};
use crate::store;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use food_delivery_kit::events::Outbox;
use food_delivery_kit::http::{Json, Path};
use food_delivery_kit::store::now_millis;
use food_delivery_kit::{FieldViolation, Problem, Store};
use serde::Deserialize;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct CustomerApi {
    /// The customers store.
    pub store: Store,
    /// Where events go.
    pub outbox: Outbox,
}

/// The customer routes.
pub fn routes(api: CustomerApi) -> Router {
    Router::new()
        .route("/customers", post(register))
        .route(
            "/customers/{customer_id}",
            get(customer_by_id).patch(update).delete(delete),
        )
        .route(
            food_delivery_kit::http::OPENAPI_PATH,
            get(food_delivery_kit::http::openapi_document::<CustomerApiDocument>),
        )
        .with_state(api)
}

/// The service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "food-delivery customer",
        description = "Customers: register, read, update, delete; each change is an event."
    ),
    paths(register, customer_by_id, update, delete),
    components(schemas(Customer, Registration, Update, Problem))
)]
pub struct CustomerApiDocument;

/// `POST /customers` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Registration {
    /// 1-100 characters.
    name: String,
    /// An e-mail address.
    email: String,
}

/// `PATCH /customers/{id}` body: the fields to change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Update {
    /// A new name, 1-100 characters.
    name: Option<String>,
    /// A new e-mail address.
    email: Option<String>,
}

fn check(name: Option<&str>, email: Option<&str>) -> Result<(), Problem> {
    let mut violations = Vec::new();
    if let Some(problem) = name.and_then(domain::name_problem) {
        violations.push(FieldViolation::new("name", problem));
    }
    if let Some(problem) = email.and_then(domain::email_problem) {
        violations.push(FieldViolation::new("email", problem));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Problem::validation(violations))
    }
}

/// Announces a change made in `transaction` and commits both together.
async fn commit_announcing(
    api: &CustomerApi,
    mut transaction: food_delivery_kit::StoreTransaction,
    customer_id: &str,
    event_type: &str,
    data: &impl serde::Serialize,
) -> Result<(), Problem> {
    api.outbox
        .record(&mut transaction, event_type, customer_id, data)
        .await?;
    api.outbox.commit(transaction).await?;
    Ok(())
}

/// Registers a customer.
#[utoipa::path(
    post,
    path = "/customers",
    request_body = Registration,
    responses(
        (status = 201, description = "Registered", body = Customer),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule; `errors` names it", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn register(
    State(api): State<CustomerApi>,
    Json(registration): Json<Registration>,
) -> Result<(StatusCode, axum::Json<Customer>), Problem> {
    check(Some(&registration.name), Some(&registration.email))?;
    let now = now_millis();
    let customer = Customer {
        customer_id: uuid::Uuid::now_v7().to_string(),
        name: registration.name.trim().to_owned(),
        email: registration.email,
        registered_at: now,
        updated_at: now,
    };
    let data = CustomerRegistered {
        customer_id: customer.customer_id.clone(),
        name: customer.name.clone(),
        email: customer.email.clone(),
    };
    let mut transaction = api.store.begin().await?;
    store::insert(&mut transaction, &customer).await?;
    commit_announcing(
        &api,
        transaction,
        &customer.customer_id,
        CUSTOMER_REGISTERED,
        &data,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(customer)))
}

/// One customer.
#[utoipa::path(
    get,
    path = "/customers/{customer_id}",
    params(("customer_id" = String, Path, description = "The customer")),
    responses(
        (status = 200, description = "The customer", body = Customer),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn customer_by_id(
    State(api): State<CustomerApi>,
    Path(customer_id): Path<String>,
) -> Result<axum::Json<Customer>, Problem> {
    store::customer(api.store.pool(), &customer_id)
        .await?
        .map(axum::Json)
        .ok_or_else(|| Problem::not_found(format!("no customer {customer_id}")))
}

/// Changes a customer's name or e-mail; only real changes are announced.
#[utoipa::path(
    patch,
    path = "/customers/{customer_id}",
    params(("customer_id" = String, Path, description = "The customer")),
    request_body = Update,
    responses(
        (status = 200, description = "The customer as it is now", body = Customer),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field breaks a rule, or nothing to change", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update(
    State(api): State<CustomerApi>,
    Path(customer_id): Path<String>,
    Json(update): Json<Update>,
) -> Result<axum::Json<Customer>, Problem> {
    if update.name.is_none() && update.email.is_none() {
        return Err(Problem::validation(vec![FieldViolation::new(
            "body",
            "name or email is required",
        )]));
    }
    check(update.name.as_deref(), update.email.as_deref())?;
    // Compare-and-set: a concurrent change between the read and the write makes the write miss, and the change is
    // computed again from what is stored now. A few rounds always suffice unless the row is hammered.
    for _ in 0..MAX_UPDATE_ROUNDS {
        let mut transaction = api.store.begin().await?;
        let customer = store::customer(&mut *transaction, &customer_id)
            .await?
            .ok_or_else(|| Problem::not_found(format!("no customer {customer_id}")))?;
        let (updated, changes) = domain::apply_update(
            &customer,
            update.name.as_deref(),
            update.email.as_deref(),
            now_millis(),
        );
        if changes.is_empty() {
            return Ok(axum::Json(customer));
        }
        if !store::update_if_unchanged(&mut transaction, &customer, &updated).await? {
            continue;
        }
        let data = CustomerUpdated {
            customer_id: customer_id.clone(),
            changes,
        };
        commit_announcing(&api, transaction, &customer_id, CUSTOMER_UPDATED, &data).await?;
        return Ok(axum::Json(updated));
    }
    Err(Problem::conflict(format!(
        "customer {customer_id} is being changed concurrently; try again"
    )))
}

/// Attempts of a PATCH that keeps losing to concurrent changes before it answers 409.
const MAX_UPDATE_ROUNDS: usize = 5;

/// Deletes a customer.
#[utoipa::path(
    delete,
    path = "/customers/{customer_id}",
    params(("customer_id" = String, Path, description = "The customer")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete(
    State(api): State<CustomerApi>,
    Path(customer_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let mut transaction = api.store.begin().await?;
    if !store::delete(&mut transaction, &customer_id).await? {
        return Err(Problem::not_found(format!("no customer {customer_id}")));
    }
    let data = CustomerDeleted {
        customer_id: customer_id.clone(),
    };
    commit_announcing(&api, transaction, &customer_id, CUSTOMER_DELETED, &data).await?;
    Ok(StatusCode::NO_CONTENT)
}
