//! My page's tables: the events it has seen per order and per customer, and the views folded from them.
//! The views are what the API reads; the event tables are what a view is refolded from when an event arrives.

use crate::domain::{CustomerHistory, OrderTrace, RecordedEvent};
use chrono::{DateTime, Utc};
use food_delivery_kit::store::{ROWS_PER_STATEMENT, value_list, value_rows};
use food_delivery_kit::{Migration, Store, StoreTransaction};
use sqlx::Any;
use std::collections::HashMap;

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

/// Keeps `events` (each with the id of its subject); returns the subjects that got an event they did not have,
/// sorted (the order views are locked in), each once.
pub async fn record_events(
    transaction: &mut StoreTransaction,
    subject: Subject,
    events: &[(&str, RecordedEvent)],
) -> Result<Vec<String>, sqlx::Error> {
    let (table, key) = subject.events_table();
    let mut changed = Vec::new();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let statement = format!(
            "INSERT INTO {table} (event_id, {key}, at_micros, event_type, source, data) VALUES {}
             ON CONFLICT (event_id) DO NOTHING RETURNING {key}",
            value_rows(1, chunk.len(), 6)
        );
        let mut query = sqlx::query_scalar::<_, String>(&statement);
        for (subject_id, event) in chunk {
            query = query
                .bind(&event.id)
                .bind(*subject_id)
                .bind(event.time.timestamp_micros())
                .bind(&event.event_type)
                .bind(&event.source)
                .bind(event.data.to_string());
        }
        changed.extend(query.fetch_all(&mut **transaction).await?);
    }
    changed.sort();
    changed.dedup();
    Ok(changed)
}

/// Locks the view rows of `subject_ids` (creating placeholders the fold then replaces) until the transaction ends,
/// so two replicas folding events of the same order or customer from different partitions take turns: the second
/// reads the first one's event once it has committed instead of overwriting a view that lacks it. Sorted ids
/// make every batch lock in the same order, so two batches wait for each other instead of deadlocking. (`WHERE
/// true`: SQLite needs it to read ON CONFLICT after a SELECT as the upsert, not as a join's ON.)
pub async fn lock_views(
    transaction: &mut StoreTransaction,
    subject: Subject,
    subject_ids: &[String],
) -> Result<(), sqlx::Error> {
    for chunk in subject_ids.chunks(ROWS_PER_STATEMENT) {
        let rows = value_rows(1, chunk.len(), 1);
        let statement = match subject {
            Subject::Order => format!(
                "INSERT INTO mypage_orders (order_id, trace) SELECT column1, '{{}}' FROM (VALUES {rows}) AS ids WHERE true
                 ON CONFLICT (order_id) DO UPDATE SET trace = mypage_orders.trace"
            ),
            Subject::Customer => format!(
                "INSERT INTO mypage_customers (customer_id, history) SELECT column1, '[]' FROM (VALUES {rows}) AS ids WHERE true
                 ON CONFLICT (customer_id) DO UPDATE SET history = mypage_customers.history"
            ),
        };
        let mut query = sqlx::query(&statement);
        for subject_id in chunk {
            query = query.bind(subject_id);
        }
        query.execute(&mut **transaction).await?;
    }
    Ok(())
}

/// Every event kept about each of `subject_ids`.
pub async fn events_of(
    transaction: &mut StoreTransaction,
    subject: Subject,
    subject_ids: &[String],
) -> Result<HashMap<String, Vec<RecordedEvent>>, sqlx::Error> {
    let (table, key) = subject.events_table();
    let mut events: HashMap<String, Vec<RecordedEvent>> = HashMap::new();
    for chunk in subject_ids.chunks(ROWS_PER_STATEMENT) {
        let statement = format!(
            "SELECT {key}, event_id, at_micros, event_type, source, data FROM {table} WHERE {key} IN ({})",
            value_list(1, chunk.len())
        );
        let mut query =
            sqlx::query_as::<_, (String, String, i64, String, String, String)>(&statement);
        for subject_id in chunk {
            query = query.bind(subject_id);
        }
        for (subject_id, id, at_micros, event_type, source, data) in
            query.fetch_all(&mut **transaction).await?
        {
            let event = recorded((id, at_micros, event_type, source, data))?;
            events.entry(subject_id).or_default().push(event);
        }
    }
    Ok(events)
}

/// Replaces orders' views, each with when it was placed (for listing a customer's orders in order).
pub async fn save_orders(
    transaction: &mut StoreTransaction,
    traces: &[(OrderTrace, Option<i64>)],
) -> Result<(), sqlx::Error> {
    for chunk in traces.chunks(ROWS_PER_STATEMENT) {
        let statement = format!(
            "INSERT INTO mypage_orders (order_id, customer_id, placed_micros, trace) VALUES {}
             ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id,
                 placed_micros = excluded.placed_micros, trace = excluded.trace",
            value_rows(1, chunk.len(), 4)
        );
        let mut query = sqlx::query(&statement);
        for (trace, placed_micros) in chunk {
            let json =
                serde_json::to_string(trace).map_err(|error| corrupt(&trace.order_id, error))?;
            query = query
                .bind(&trace.order_id)
                .bind(&trace.customer_id)
                .bind(*placed_micros)
                .bind(json);
        }
        query.execute(&mut **transaction).await?;
    }
    Ok(())
}

/// Replaces customers' histories.
pub async fn save_customers(
    transaction: &mut StoreTransaction,
    histories: &[CustomerHistory],
) -> Result<(), sqlx::Error> {
    for chunk in histories.chunks(ROWS_PER_STATEMENT) {
        let statement = format!(
            "INSERT INTO mypage_customers (customer_id, history) VALUES {}
             ON CONFLICT (customer_id) DO UPDATE SET history = excluded.history",
            value_rows(1, chunk.len(), 2)
        );
        let mut query = sqlx::query(&statement);
        for history in chunk {
            let json = serde_json::to_string(history)
                .map_err(|error| corrupt(&history.customer_id, error))?;
            query = query.bind(&history.customer_id).bind(json);
        }
        query.execute(&mut **transaction).await?;
    }
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
