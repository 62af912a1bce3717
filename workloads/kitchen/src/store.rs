//! The kitchen's queries and schema.

use crate::domain::{MenuItem, Ticket, TicketLine, TicketStatus};
use food_delivery_kit::{Migration, StoreTransaction};
use sqlx::Row;
use std::collections::BTreeMap;

/// The schema (the kit's tables come first).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 100,
        description: "menu and tickets",
        sqlite: SCHEMA,
        postgres: SCHEMA,
    },
    Migration {
        version: 101,
        description: "cooking starts once the order service clears it",
        sqlite: START_REQUESTED,
        postgres: START_REQUESTED,
    },
];

/// When a cook last asked to start a ticket (see `policies::request_start`).
const START_REQUESTED: &str = "ALTER TABLE tickets ADD COLUMN start_requested_at BIGINT;
CREATE INDEX tickets_by_status_accepted ON tickets (status, accepted_at);";

const SCHEMA: &str = "CREATE TABLE menu_items (
    menu_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    price BIGINT NOT NULL,
    stock BIGINT NOT NULL CHECK (stock >= 0)
);
CREATE TABLE tickets (
    order_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    lines TEXT NOT NULL,
    accepted_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    cancelled_at BIGINT
);
CREATE INDEX tickets_by_status ON tickets (status);";

type Executor<'e> = &'e mut sqlx::AnyConnection;

fn menu_item_from_row(row: &sqlx::any::AnyRow) -> Result<MenuItem, sqlx::Error> {
    Ok(MenuItem {
        menu_id: row.try_get("menu_id")?,
        name: row.try_get("name")?,
        price: row.try_get("price")?,
        stock: row.try_get("stock")?,
    })
}

/// The whole menu, by id.
pub async fn menu(pool: &sqlx::AnyPool) -> Result<Vec<MenuItem>, sqlx::Error> {
    sqlx::query("SELECT menu_id, name, price, stock FROM menu_items ORDER BY menu_id")
        .fetch_all(pool)
        .await?
        .iter()
        .map(menu_item_from_row)
        .collect()
}

/// Creates or replaces a menu item.
pub async fn save_menu_item(connection: Executor<'_>, item: &MenuItem) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO menu_items (menu_id, name, price, stock) VALUES ($1, $2, $3, $4)
         ON CONFLICT (menu_id) DO UPDATE SET name = excluded.name, price = excluded.price, stock = excluded.stock",
    )
    .bind(&item.menu_id)
    .bind(&item.name)
    .bind(item.price)
    .bind(item.stock)
    .execute(connection)
    .await?;
    Ok(())
}

/// Adds a menu item unless it exists; `true` when it was added.
pub async fn add_menu_item_if_missing(
    connection: Executor<'_>,
    item: &MenuItem,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query("INSERT INTO menu_items (menu_id, name, price, stock) VALUES ($1, $2, $3, $4) ON CONFLICT (menu_id) DO NOTHING")
        .bind(&item.menu_id)
        .bind(&item.name)
        .bind(item.price)
        .bind(item.stock)
        .execute(connection)
        .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The menu item `menu_id`, locked until `transaction` ends (a no-op write: a row lock on PostgreSQL, the write
/// lock on SQLite), so an event announcing it is appended in the same order as a concurrent change's.
pub async fn lock_menu_item(
    transaction: Executor<'_>,
    menu_id: &str,
) -> Result<Option<MenuItem>, sqlx::Error> {
    sqlx::query(
        "UPDATE menu_items SET menu_id = menu_id WHERE menu_id = $1 RETURNING menu_id, name, price, stock",
    )
    .bind(menu_id)
    .fetch_optional(transaction)
    .await?
    .as_ref()
    .map(menu_item_from_row)
    .transpose()
}

/// Stock of every menu item.
pub async fn stock(connection: Executor<'_>) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT menu_id, stock FROM menu_items")
        .fetch_all(connection)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Takes `qty` portions if that many are left; `false` when not (another order took them meanwhile).
pub async fn take_portions(
    connection: Executor<'_>,
    menu_id: &str,
    qty: i64,
) -> Result<bool, sqlx::Error> {
    let updated =
        sqlx::query("UPDATE menu_items SET stock = stock - $1 WHERE menu_id = $2 AND stock >= $1")
            .bind(qty)
            .bind(menu_id)
            .execute(connection)
            .await?;
    Ok(updated.rows_affected() == 1)
}

/// Gives `qty` portions back.
pub async fn give_back_portions(
    connection: Executor<'_>,
    menu_id: &str,
    qty: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE menu_items SET stock = stock + $1 WHERE menu_id = $2")
        .bind(qty)
        .bind(menu_id)
        .execute(connection)
        .await?;
    Ok(())
}

fn ticket_from_row(row: &sqlx::any::AnyRow) -> Result<Ticket, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let lines: String = row.try_get("lines")?;
    Ok(Ticket {
        order_id: row.try_get("order_id")?,
        status: TicketStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown ticket status '{status}'").into())
        })?,
        lines: serde_json::from_str::<Vec<TicketLine>>(&lines)
            .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
        accepted_at: row.try_get("accepted_at")?,
        start_requested_at: row.try_get("start_requested_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
    })
}

const TICKET_COLUMNS: &str = "order_id, status, lines, accepted_at, started_at, finished_at, cancelled_at, start_requested_at";

/// The ticket of an order.
pub async fn ticket<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    order_id: &str,
) -> Result<Option<Ticket>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional(executor)
    .await?
    .as_ref()
    .map(ticket_from_row)
    .transpose()
}

/// Order ids of tickets in `status`, oldest first (for auto mode).
pub async fn tickets_in(
    pool: &sqlx::AnyPool,
    status: TicketStatus,
    started_before: Option<i64>,
) -> Result<Vec<String>, sqlx::Error> {
    match started_before {
        None => sqlx::query_scalar("SELECT order_id FROM tickets WHERE status = $1 ORDER BY accepted_at LIMIT 100")
            .bind(status.as_str())
            .fetch_all(pool)
            .await,
        Some(before) => sqlx::query_scalar("SELECT order_id FROM tickets WHERE status = $1 AND started_at <= $2 ORDER BY started_at LIMIT 100")
            .bind(status.as_str())
            .bind(before)
            .fetch_all(pool)
            .await,
    }
}

/// Order ids of tickets accepted before `accepted_before` that nobody asked to start since `requested_before`
/// (never, or a request that may not have reached the order service: an earlier version ignored it), oldest first
/// (for auto mode).
pub async fn tickets_to_request(
    pool: &sqlx::AnyPool,
    accepted_before: i64,
    requested_before: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT order_id FROM tickets WHERE status = $1 AND accepted_at <= $2
         AND (start_requested_at IS NULL OR start_requested_at < $3)
         ORDER BY accepted_at LIMIT 100",
    )
    .bind(TicketStatus::Accepted.as_str())
    .bind(accepted_before)
    .bind(requested_before)
    .fetch_all(pool)
    .await
}

/// Records a new ticket unless the order already has one (a tombstone included); returns whether it was recorded.
/// On PostgreSQL a concurrent insert for the same order waits for the other to commit, then finds it.
pub async fn insert_ticket(
    transaction: &mut StoreTransaction,
    ticket: &Ticket,
) -> Result<bool, sqlx::Error> {
    let lines = serde_json::to_string(&ticket.lines)
        .map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO tickets ({TICKET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (order_id) DO NOTHING"
    ))
    .bind(&ticket.order_id)
    .bind(ticket.status.as_str())
    .bind(lines)
    .bind(ticket.accepted_at)
    .bind(ticket.started_at)
    .bind(ticket.finished_at)
    .bind(ticket.cancelled_at)
    .bind(ticket.start_requested_at)
    .execute(&mut **transaction)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Saves a changed ticket only if it is still in `read_status`, the status the change was decided on; returns
/// whether it was saved. Cooks, the auto mode of every replica and a cancellation racing on one ticket: one wins,
/// the others see `false` (never a cancelled ticket cooked, never one cooked twice).
pub async fn update_ticket(
    transaction: &mut StoreTransaction,
    ticket: &Ticket,
    read_status: TicketStatus,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE tickets SET status = $2, started_at = $3, finished_at = $4, cancelled_at = $5, start_requested_at = $6
         WHERE order_id = $1 AND status = $7",
    )
    .bind(&ticket.order_id)
    .bind(ticket.status.as_str())
    .bind(ticket.started_at)
    .bind(ticket.finished_at)
    .bind(ticket.cancelled_at)
    .bind(ticket.start_requested_at)
    .bind(read_status.as_str())
    .execute(&mut **transaction)
    .await?;
    Ok(updated.rows_affected() == 1)
}
