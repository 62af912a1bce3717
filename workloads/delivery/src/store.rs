//! The delivery service's queries and schema.

use crate::domain::{Delivery, DeliveryStatus};
use food_delivery_kit::{Migration, StoreTransaction};
use sqlx::Row;

/// The schema (the kit's tables come first).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 100,
    description: "deliveries",
    sqlite: SCHEMA,
    postgres: SCHEMA,
}];

const SCHEMA: &str = "CREATE TABLE deliveries (
    order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    ready_at BIGINT NOT NULL,
    picked_up_at BIGINT,
    delivered_at BIGINT,
    cancelled_at BIGINT
);
CREATE INDEX deliveries_by_status ON deliveries (status);";

const COLUMNS: &str = "order_id, status, ready_at, picked_up_at, delivered_at, cancelled_at";

fn delivery_from_row(row: &sqlx::any::AnyRow) -> Result<Delivery, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Delivery {
        order_id: row.try_get("order_id")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown delivery status '{status}'").into())
        })?,
        ready_at: row.try_get("ready_at")?,
        picked_up_at: row.try_get("picked_up_at")?,
        delivered_at: row.try_get("delivered_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
    })
}

/// The delivery of an order.
pub async fn delivery<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    order_id: &str,
) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional(executor)
    .await?
    .as_ref()
    .map(delivery_from_row)
    .transpose()
}

/// Order ids of deliveries in `status` (for those picked up: before `picked_up_before`), oldest first.
pub async fn deliveries_in(
    pool: &sqlx::AnyPool,
    status: DeliveryStatus,
    picked_up_before: Option<i64>,
) -> Result<Vec<String>, sqlx::Error> {
    match picked_up_before {
        None => sqlx::query_scalar("SELECT order_id FROM deliveries WHERE status = $1 ORDER BY ready_at LIMIT 100")
            .bind(status.as_str())
            .fetch_all(pool)
            .await,
        Some(before) => sqlx::query_scalar("SELECT order_id FROM deliveries WHERE status = $1 AND picked_up_at <= $2 ORDER BY picked_up_at LIMIT 100")
            .bind(status.as_str())
            .bind(before)
            .fetch_all(pool)
            .await,
    }
}

/// Records a new delivery unless the order already has one (or a cancellation tombstone); returns whether it
/// was recorded. On PostgreSQL a concurrent insert for the same order waits for the other to commit, so exactly one
/// of a cancellation and a cooked order's delivery wins, whatever order they arrive in.
pub async fn insert_delivery(
    transaction: &mut StoreTransaction,
    delivery: &Delivery,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO deliveries ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id) DO NOTHING"
    ))
    .bind(&delivery.order_id)
    .bind(delivery.status.as_str())
    .bind(delivery.ready_at)
    .bind(delivery.picked_up_at)
    .bind(delivery.delivered_at)
    .bind(delivery.cancelled_at)
    .execute(&mut **transaction)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Saves a changed delivery only if it is still in `read_status`, the status the change was decided on; returns
/// whether it was saved. A rider, the auto mode and a cancellation racing on one delivery: one wins, the others
/// see `false` and decide again (never a cancelled delivery picked up, never a delivered one cancelled).
pub async fn update_delivery(
    transaction: &mut StoreTransaction,
    delivery: &Delivery,
    read_status: DeliveryStatus,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE deliveries SET status = $2, picked_up_at = $3, delivered_at = $4, cancelled_at = $5
         WHERE order_id = $1 AND status = $6",
    )
    .bind(&delivery.order_id)
    .bind(delivery.status.as_str())
    .bind(delivery.picked_up_at)
    .bind(delivery.delivered_at)
    .bind(delivery.cancelled_at)
    .bind(read_status.as_str())
    .execute(&mut **transaction)
    .await?;
    Ok(updated.rows_affected() == 1)
}
