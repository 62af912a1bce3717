//! My page's tables: the events it has seen per order and per customer, and the views folded from them.
//! The views are what the API reads; the event tables are what a view is refolded from when an event arrives.

use crate::domain::{CustomerHistory, OrderTrace, RecordedEvent};
use chrono::{DateTime, Utc};
use food_delivery_kit::{Migration, Store, StoreTransaction};
use sqlx::Any;

/// The schema (the kit's tables come first).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 100,
    description: "order traces and customer histories",
    sqlite: SCHEMA,
    postgres: SCHEMA,
}];

const SCHEMA: &str = "CREATE TABLE mypage_order_events (
    event_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    at_micros BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    source TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX mypage_order_events_by_order ON mypage_order_events (order_id);
CREATE TABLE mypage_orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT,
    placed_micros BIGINT,
    trace TEXT NOT NULL
);
CREATE INDEX mypage_orders_by_customer ON mypage_orders (customer_id);
CREATE TABLE mypage_customer_events (
    event_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    at_micros BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    source TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX mypage_customer_events_by_customer ON mypage_customer_events (customer_id);
CREATE TABLE mypage_customers (
    customer_id TEXT PRIMARY KEY,
    history TEXT NOT NULL
);
CREATE TABLE mypage_replay (
    singleton BIGINT PRIMARY KEY CHECK (singleton = 1),
    generation TEXT NOT NULL
);";

/// Why a stored row could not be read back.
fn corrupt(what: &str, error: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what}: {error}").into())
}

type EventRow = (String, i64, String, String, String);

fn recorded(row: EventRow) -> Result<RecordedEvent, sqlx::Error> {
    let (id, at_micros, event_type, source, data) = row;
    Ok(RecordedEvent {
        time: DateTime::<Utc>::from_timestamp_micros(at_micros)
            .ok_or_else(|| corrupt(&id, "time out of range"))?,
        data: serde_json::from_str(&data).map_err(|error| corrupt(&id, error))?,
        id,
        event_type,
        source,
    })
}

/// Which table keeps the events of a kind of subject.
#[derive(Debug, Clone, Copy)]
pub enum Subject {
    /// Events keyed by order id.
    Order,
    /// Events keyed by customer id.
    Customer,
}

impl Subject {
    fn events_table(self) -> (&'static str, &'static str) {
        match self {
            Self::Order => ("mypage_order_events", "order_id"),
            Self::Customer => ("mypage_customer_events", "customer_id"),
        }
    }
}

/// Keeps `event` about `subject_id`; false when it was already kept.
pub async fn record_event(
    transaction: &mut StoreTransaction,
    subject: Subject,
    subject_id: &str,
    event: &RecordedEvent,
) -> Result<bool, sqlx::Error> {
    let (table, key) = subject.events_table();
    let inserted = sqlx::query(&format!(
        "INSERT INTO {table} (event_id, {key}, at_micros, event_type, source, data)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING"
    ))
    .bind(&event.id)
    .bind(subject_id)
    .bind(event.time.timestamp_micros())
    .bind(&event.event_type)
    .bind(&event.source)
    .bind(event.data.to_string())
    .execute(&mut **transaction)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Locks `subject_id`'s view row (creating a placeholder the fold then replaces) until the transaction ends, so
/// two replicas folding events of the same order or customer from different partitions take turns: the second
/// reads the first one's event once it has committed instead of overwriting a view that lacks it.
pub async fn lock_view(
    transaction: &mut StoreTransaction,
    subject: Subject,
    subject_id: &str,
) -> Result<(), sqlx::Error> {
    let statement = match subject {
        Subject::Order => {
            "INSERT INTO mypage_orders (order_id, trace) VALUES ($1, '{}')
             ON CONFLICT (order_id) DO UPDATE SET trace = mypage_orders.trace"
        }
        Subject::Customer => {
            "INSERT INTO mypage_customers (customer_id, history) VALUES ($1, '[]')
             ON CONFLICT (customer_id) DO UPDATE SET history = mypage_customers.history"
        }
    };
    sqlx::query(statement)
        .bind(subject_id)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// Every event kept about `subject_id`.
pub async fn events_of(
    transaction: &mut StoreTransaction,
    subject: Subject,
    subject_id: &str,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let (table, key) = subject.events_table();
    let rows: Vec<EventRow> = sqlx::query_as(&format!(
        "SELECT event_id, at_micros, event_type, source, data FROM {table} WHERE {key} = $1"
    ))
    .bind(subject_id)
    .fetch_all(&mut **transaction)
    .await?;
    rows.into_iter().map(recorded).collect()
}

/// Replaces an order's view.
pub async fn save_order(
    transaction: &mut StoreTransaction,
    trace: &OrderTrace,
    placed_micros: Option<i64>,
) -> Result<(), sqlx::Error> {
    let json = serde_json::to_string(trace).map_err(|error| corrupt(&trace.order_id, error))?;
    sqlx::query(
        "INSERT INTO mypage_orders (order_id, customer_id, placed_micros, trace) VALUES ($1, $2, $3, $4)
         ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id,
             placed_micros = excluded.placed_micros, trace = excluded.trace",
    )
    .bind(&trace.order_id)
    .bind(&trace.customer_id)
    .bind(placed_micros)
    .bind(json)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// Replaces a customer's history.
pub async fn save_customer(
    transaction: &mut StoreTransaction,
    history: &CustomerHistory,
) -> Result<(), sqlx::Error> {
    let json =
        serde_json::to_string(history).map_err(|error| corrupt(&history.customer_id, error))?;
    sqlx::query(
        "INSERT INTO mypage_customers (customer_id, history) VALUES ($1, $2)
         ON CONFLICT (customer_id) DO UPDATE SET history = excluded.history",
    )
    .bind(&history.customer_id)
    .bind(json)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// One order's view.
pub async fn order<'e, E: sqlx::Executor<'e, Database = Any>>(
    executor: E,
    order_id: &str,
) -> Result<Option<OrderTrace>, sqlx::Error> {
    let json: Option<String> =
        sqlx::query_scalar("SELECT trace FROM mypage_orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(executor)
            .await?;
    json.map(|json| serde_json::from_str(&json).map_err(|error| corrupt(order_id, error)))
        .transpose()
}

/// A customer's orders, oldest first.
pub async fn orders_of<'e, E: sqlx::Executor<'e, Database = Any>>(
    executor: E,
    customer_id: &str,
) -> Result<Vec<OrderTrace>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT order_id, trace FROM mypage_orders WHERE customer_id = $1
         ORDER BY placed_micros, order_id",
    )
    .bind(customer_id)
    .fetch_all(executor)
    .await?;
    rows.into_iter()
        .map(|(id, json)| serde_json::from_str(&json).map_err(|error| corrupt(&id, error)))
        .collect()
}

/// One customer's history.
pub async fn customer<'e, E: sqlx::Executor<'e, Database = Any>>(
    executor: E,
    customer_id: &str,
) -> Result<Option<CustomerHistory>, sqlx::Error> {
    let json: Option<String> =
        sqlx::query_scalar("SELECT history FROM mypage_customers WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(executor)
            .await?;
    json.map(|json| serde_json::from_str(&json).map_err(|error| corrupt(customer_id, error)))
        .transpose()
}

/// The replay generation of this store: made up when the store is new, so a new (empty) store reads every topic
/// from the beginning under a consumer group of its own, and an existing one resumes where it left off.
pub async fn replay_generation(store: &Store) -> Result<String, sqlx::Error> {
    let candidate = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        // One row: replicas starting together on a new shared store agree on the first one written.
        "INSERT INTO mypage_replay (singleton, generation) VALUES (1, $1) ON CONFLICT (singleton) DO NOTHING",
    )
    .bind(&candidate)
    .execute(store.pool())
    .await?;
    sqlx::query_scalar("SELECT generation FROM mypage_replay")
        .fetch_one(store.pool())
        .await
}
