//! The customer service's queries and schema.

use crate::domain::Customer;
use food_delivery_kit::{Migration, StoreTransaction};
use sqlx::Row;

/// The schema (the kit's tables come first).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 100,
    description: "customers",
    sqlite: SCHEMA,
    postgres: SCHEMA,
}];

const SCHEMA: &str = "CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);";

/// A customer.
pub async fn customer<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    customer_id: &str,
) -> Result<Option<Customer>, sqlx::Error> {
    let row = sqlx::query("SELECT customer_id, name, email, registered_at, updated_at FROM customers WHERE customer_id = $1")
        .bind(customer_id)
        .fetch_optional(executor)
        .await?;
    row.map(|row| {
        Ok(Customer {
            customer_id: row.try_get("customer_id")?,
            name: row.try_get("name")?,
            email: row.try_get("email")?,
            registered_at: row.try_get("registered_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    })
    .transpose()
}

/// Records a new customer.
pub async fn insert(
    transaction: &mut StoreTransaction,
    customer: &Customer,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customers (customer_id, name, email, registered_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&customer.customer_id)
    .bind(&customer.name)
    .bind(&customer.email)
    .bind(customer.registered_at)
    .bind(customer.updated_at)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// Saves `updated` only if the stored customer is still `read`, the state the change was computed from; returns
/// whether it was saved. Concurrent changes (two PATCHes, a PATCH and a DELETE, on any replica) cannot undo each
/// other or bring a deleted customer back: the loser sees `false` and computes its change again.
pub async fn update_if_unchanged(
    transaction: &mut StoreTransaction,
    read: &Customer,
    updated: &Customer,
) -> Result<bool, sqlx::Error> {
    let saved = sqlx::query(
        "UPDATE customers SET name = $2, email = $3, updated_at = $4
         WHERE customer_id = $1 AND name = $5 AND email = $6 AND updated_at = $7",
    )
    .bind(&read.customer_id)
    .bind(&updated.name)
    .bind(&updated.email)
    .bind(updated.updated_at)
    .bind(&read.name)
    .bind(&read.email)
    .bind(read.updated_at)
    .execute(&mut **transaction)
    .await?;
    Ok(saved.rows_affected() == 1)
}

/// Deletes a customer; `false` when there was none.
pub async fn delete(
    transaction: &mut StoreTransaction,
    customer_id: &str,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM customers WHERE customer_id = $1")
        .bind(customer_id)
        .execute(&mut **transaction)
        .await?;
    Ok(deleted.rows_affected() == 1)
}
