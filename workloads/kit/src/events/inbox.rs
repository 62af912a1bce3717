//! The idempotent inbox: a consumer records each event id in the same transaction as the event's effect, so a
//! redelivered event is recognised and its effect is never applied twice.

use crate::store::{StoreTransaction, now_millis};

/// Records that `consumer` is applying `event_id`. Returns `false` when it already did (a redelivery); the
/// caller then rolls back and skips the effect.
pub async fn record_first_delivery(
    transaction: &mut StoreTransaction,
    consumer: &str,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO kit_inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .bind(now_millis())
    .execute(&mut **transaction)
    .await?;
    Ok(inserted.rows_affected() == 1)
}
