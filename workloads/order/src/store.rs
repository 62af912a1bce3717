//! The order service's queries and schema: orders and the menu replica.

use crate::domain::{MenuEntry, Order, OrderLine, OrderStatus};
use food_delivery_kit::{Migration, StoreTransaction};
use sqlx::Row;
use std::collections::BTreeMap;

/// The schema (the kit's tables come first).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 100,
        description: "orders and the menu replica",
        sqlite: SCHEMA,
        postgres: SCHEMA,
    },
    Migration {
        version: 101,
        description: "orders waiting for their payment, found by the settling worker",
        sqlite: PENDING_INDEX,
        postgres: PENDING_INDEX,
    },
    Migration {
        version: 102,
        description: "when a READY order was handed to delivery, so orders an earlier version left READY are handed over",
        sqlite: DISPATCHED_AT,
        postgres: DISPATCHED_AT,
    },
];

/// Earlier versions moved an order to READY without OrderDispatched (delivery then followed the kitchen's
/// CookingFinished): those orders have no time here, and `undispatched_ready` finds them. Old pods that still run
/// during a rollout name their columns, so the new one does not disturb them.
const DISPATCHED_AT: &str = "ALTER TABLE orders ADD COLUMN dispatched_at BIGINT;";

const PENDING_INDEX: &str = "CREATE INDEX orders_by_status ON orders (status, placed_at);";

const SCHEMA: &str = "CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    lines TEXT NOT NULL,
    amount BIGINT NOT NULL,
    payment_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    placed_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, placed_at);
CREATE TABLE menu_replica (
    menu_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price BIGINT NOT NULL
);";

const COLUMNS: &str =
    "order_id, customer_id, lines, amount, payment_id, status, reason, placed_at, updated_at";

fn order_from_row(row: &sqlx::any::AnyRow) -> Result<Order, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let lines: String = row.try_get("lines")?;
    Ok(Order {
        order_id: row.try_get("order_id")?,
        customer_id: row.try_get("customer_id")?,
        lines: serde_json::from_str::<Vec<OrderLine>>(&lines)
            .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
        amount: row.try_get("amount")?,
        payment_id: row.try_get("payment_id")?,
        status: OrderStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown order status '{status}'").into())
        })?,
        reason: row.try_get("reason")?,
        placed_at: row.try_get("placed_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// An order.
pub async fn order<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    order_id: &str,
) -> Result<Option<Order>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM orders WHERE order_id = $1"))
        .bind(order_id)
        .fetch_optional(executor)
        .await?
        .as_ref()
        .map(order_from_row)
        .transpose()
}

/// A customer's orders, newest first.
pub async fn orders_of(pool: &sqlx::AnyPool, customer_id: &str) -> Result<Vec<Order>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM orders WHERE customer_id = $1 ORDER BY placed_at DESC LIMIT 100"
    ))
    .bind(customer_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(order_from_row)
    .collect()
}

/// Registers a new order; `false` when one with that id exists (a concurrent retry got there first).
pub async fn insert_order(
    transaction: &mut StoreTransaction,
    order: &Order,
) -> Result<bool, sqlx::Error> {
    let lines = serde_json::to_string(&order.lines)
        .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO orders ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (order_id) DO NOTHING"
    ))
    .bind(&order.order_id)
    .bind(&order.customer_id)
    .bind(lines)
    .bind(order.amount)
    .bind(&order.payment_id)
    .bind(order.status.as_str())
    .bind(&order.reason)
    .bind(order.placed_at)
    .bind(order.updated_at)
    .execute(&mut **transaction)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Saves an order's new status if it still has `previous`; `false` when something changed it meanwhile (the
/// caller re-reads and decides again, so a kitchen event never overwrites a concurrent cancellation).
pub async fn save_status(
    transaction: &mut StoreTransaction,
    order: &Order,
    previous: OrderStatus,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query("UPDATE orders SET status = $1, reason = $2, updated_at = $3 WHERE order_id = $4 AND status = $5")
        .bind(order.status.as_str())
        .bind(&order.reason)
        .bind(order.updated_at)
        .bind(&order.order_id)
        .bind(previous.as_str())
        .execute(&mut **transaction)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records that the READY order `order_id` was handed to delivery at `at`; `false` when it already was, or is not
/// READY any more (so two replicas handing over the same order write one OrderDispatched).
pub async fn mark_dispatched(
    transaction: &mut StoreTransaction,
    order_id: &str,
    at: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE orders SET dispatched_at = $1 WHERE order_id = $2 AND status = $3 AND dispatched_at IS NULL",
    )
    .bind(at)
    .bind(order_id)
    .bind(OrderStatus::Ready.as_str())
    .execute(&mut **transaction)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// READY orders never handed to delivery (left by an earlier version), oldest first.
pub async fn undispatched_ready(pool: &sqlx::AnyPool) -> Result<Vec<Order>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM orders WHERE status = $1 AND dispatched_at IS NULL ORDER BY placed_at LIMIT 100"
    ))
    .bind(OrderStatus::Ready.as_str())
    .fetch_all(pool)
    .await?
    .iter()
    .map(order_from_row)
    .collect()
}

/// Places an order that is still waiting for its payment: records the payment and the new status only if it is
/// still pending; `false` when its deadline or a cancellation settled it first.
pub async fn place_pending(
    transaction: &mut StoreTransaction,
    order: &Order,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE orders SET status = $1, payment_id = $2, updated_at = $3 WHERE order_id = $4 AND status = $5",
    )
    .bind(order.status.as_str())
    .bind(&order.payment_id)
    .bind(order.updated_at)
    .bind(&order.order_id)
    .bind(OrderStatus::PaymentPending.as_str())
    .execute(&mut **transaction)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Removes an order that is still waiting for its payment, after payment refused it for good (nothing is held).
pub async fn forget_pending(pool: &sqlx::AnyPool, order_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM orders WHERE order_id = $1 AND status = $2")
        .bind(order_id)
        .bind(OrderStatus::PaymentPending.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

/// Orders still waiting for their payment that were recorded before `before` (ms), oldest first.
pub async fn pending_since(pool: &sqlx::AnyPool, before: i64) -> Result<Vec<Order>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM orders WHERE status = $1 AND placed_at < $2 ORDER BY placed_at LIMIT 100"
    ))
    .bind(OrderStatus::PaymentPending.as_str())
    .bind(before)
    .fetch_all(pool)
    .await?
    .iter()
    .map(order_from_row)
    .collect()
}

/// The menu as the kitchen last announced it.
pub async fn menu(pool: &sqlx::AnyPool) -> Result<BTreeMap<String, MenuEntry>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT menu_id, name, price FROM menu_replica")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(menu_id, name, price)| {
            (
                menu_id.clone(),
                MenuEntry {
                    menu_id,
                    name,
                    price,
                },
            )
        })
        .collect())
}

/// Records a dish the kitchen announced.
pub async fn save_menu_entry(
    transaction: &mut StoreTransaction,
    entry: &MenuEntry,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO menu_replica (menu_id, name, price) VALUES ($1, $2, $3)
         ON CONFLICT (menu_id) DO UPDATE SET name = excluded.name, price = excluded.price",
    )
    .bind(&entry.menu_id)
    .bind(&entry.name)
    .bind(entry.price)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}
