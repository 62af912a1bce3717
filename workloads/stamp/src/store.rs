//! The stamp service's queries and schema: one entry per order.

use crate::domain::StampCard;
use food_delivery_kit::{Migration, StoreTransaction};

/// The schema (the kit's tables come first).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 100,
    description: "stamp entries per order",
    sqlite: SCHEMA,
    postgres: SCHEMA,
}];

const SCHEMA: &str = "CREATE TABLE stamp_entries (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    qty BIGINT NOT NULL,
    refunded BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX stamp_entries_by_customer ON stamp_entries (customer_id);";

/// Whether the order has an entry, and if so whether it was refunded.
pub async fn entry(
    transaction: &mut StoreTransaction,
    order_id: &str,
) -> Result<Option<bool>, sqlx::Error> {
    let refunded: Option<i64> =
        sqlx::query_scalar("SELECT refunded FROM stamp_entries WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&mut **transaction)
            .await?;
    Ok(refunded.map(|refunded| refunded != 0))
}

/// Records the stamps an order earned.
pub async fn earn(
    transaction: &mut StoreTransaction,
    order_id: &str,
    customer_id: &str,
    qty: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO stamp_entries (order_id, customer_id, qty) VALUES ($1, $2, $3)")
        .bind(order_id)
        .bind(customer_id)
        .bind(qty)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// Records an order refunded before it earned anything: no stamps (qty 0), refunded, so a late approval finds an
/// entry and earns nothing.
pub async fn record_refund_first(
    transaction: &mut StoreTransaction,
    order_id: &str,
    customer_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stamp_entries (order_id, customer_id, qty, refunded) VALUES ($1, $2, 0, 1) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id)
    .bind(customer_id)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// Marks an order's stamps as given back.
pub async fn deduct(transaction: &mut StoreTransaction, order_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE stamp_entries SET refunded = 1 WHERE order_id = $1")
        .bind(order_id)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// A customer's card: stamps of paid, unrefunded orders.
pub async fn card<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    customer_id: &str,
) -> Result<StampCard, sqlx::Error> {
    let (stamps, orders): (i64, i64) = sqlx::query_as(
        // SUM over BIGINT is NUMERIC on PostgreSQL; the cast keeps one integer type on both backends.
        "SELECT CAST(COALESCE(SUM(CASE WHEN refunded = 0 THEN qty ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN qty > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) FROM stamp_entries WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_one(executor)
    .await?;
    Ok(StampCard {
        customer_id: customer_id.to_owned(),
        stamps,
        orders,
    })
}
