//! The payment service's queries and schema.

use crate::domain::{Payment, PaymentStatus};
use food_delivery_kit::{Migration, StoreTransaction};
use sqlx::Row;

/// The schema (the kit's tables come first).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 100,
        description: "payments",
        sqlite: PAYMENTS_TABLE,
        postgres: PAYMENTS_TABLE,
    },
    Migration {
        version: 101,
        description: "payments are holds, captured or voided",
        sqlite: HOLD_COLUMNS,
        postgres: HOLD_COLUMNS,
    },
    Migration {
        version: 102,
        description: "holds no order claimed expire",
        sqlite: EXPIRY,
        postgres: EXPIRY,
    },
];

/// When a hold expired, and the index the expiry worker finds open holds by.
const EXPIRY: &str = "ALTER TABLE payments ADD COLUMN expired_at BIGINT;
CREATE INDEX payments_by_status ON payments (status, authorized_at);";

const HOLD_COLUMNS: &str = "ALTER TABLE payments ADD COLUMN captured_at BIGINT;
ALTER TABLE payments ADD COLUMN voided_at BIGINT;";

const PAYMENTS_TABLE: &str = "CREATE TABLE payments (
    payment_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    qty BIGINT NOT NULL,
    status TEXT NOT NULL,
    authorized_at BIGINT NOT NULL,
    refunded_at BIGINT,
    refund_reason TEXT
);";

const COLUMNS: &str = "payment_id, order_id, customer_id, amount, qty, status, authorized_at, captured_at, refunded_at, voided_at, refund_reason, expired_at";

fn payment_from_row(row: &sqlx::any::AnyRow) -> Result<Payment, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(Payment {
        payment_id: row.try_get("payment_id")?,
        order_id: row.try_get("order_id")?,
        customer_id: row.try_get("customer_id")?,
        amount: row.try_get("amount")?,
        qty: row.try_get("qty")?,
        status: PaymentStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown payment status '{status}'").into())
        })?,
        authorized_at: row.try_get("authorized_at")?,
        captured_at: row.try_get("captured_at")?,
        refunded_at: row.try_get("refunded_at")?,
        voided_at: row.try_get("voided_at")?,
        refund_reason: row.try_get("refund_reason")?,
        expired_at: row.try_get("expired_at")?,
    })
}

/// Inserts `payment` unless its order already has one; `false` when it did.
pub async fn insert_if_first_for_order(
    transaction: &mut StoreTransaction,
    payment: &Payment,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO payments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (order_id) DO NOTHING"
    ))
    .bind(&payment.payment_id)
    .bind(&payment.order_id)
    .bind(&payment.customer_id)
    .bind(payment.amount)
    .bind(payment.qty)
    .bind(payment.status.as_str())
    .bind(payment.authorized_at)
    .bind(payment.captured_at)
    .bind(payment.refunded_at)
    .bind(payment.voided_at)
    .bind(&payment.refund_reason)
    .bind(payment.expired_at)
    .execute(&mut **transaction)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Saves a payment's move (capture, refund, void) only if it is still in `read_status`, the status the move was
/// decided on; returns whether it was saved. An authorization request and the order's end racing on one payment:
/// one wins, the other decides again.
pub async fn save_move(
    transaction: &mut StoreTransaction,
    payment: &Payment,
    read_status: PaymentStatus,
) -> Result<bool, sqlx::Error> {
    let saved = sqlx::query(
        "UPDATE payments SET status = $1, captured_at = $2, refunded_at = $3, voided_at = $4, refund_reason = $5, \
         expired_at = $6 WHERE payment_id = $7 AND status = $8",
    )
    .bind(payment.status.as_str())
    .bind(payment.captured_at)
    .bind(payment.refunded_at)
    .bind(payment.voided_at)
    .bind(&payment.refund_reason)
    .bind(payment.expired_at)
    .bind(&payment.payment_id)
    .bind(read_status.as_str())
    .execute(&mut **transaction)
    .await?;
    Ok(saved.rows_affected() == 1)
}

/// Holds still open that were authorized before `before` (ms since the epoch), oldest first.
pub async fn holds_authorized_before(
    pool: &sqlx::AnyPool,
    before: i64,
) -> Result<Vec<Payment>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payments WHERE status = $1 AND authorized_at < $2 ORDER BY authorized_at LIMIT 100"
    ))
    .bind(PaymentStatus::Authorized.as_str())
    .bind(before)
    .fetch_all(pool)
    .await?
    .iter()
    .map(payment_from_row)
    .collect()
}

/// The payment with this id.
pub async fn find_by_id<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    payment_id: &str,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payments WHERE payment_id = $1"
    ))
    .bind(payment_id)
    .fetch_optional(executor)
    .await?
    .as_ref()
    .map(payment_from_row)
    .transpose()
}

/// The payment of this order.
pub async fn find_by_order<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    order_id: &str,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payments WHERE order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional(executor)
    .await?
    .as_ref()
    .map(payment_from_row)
    .transpose()
}
