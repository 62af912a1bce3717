//! The idempotent inbox: a consumer records each event id in the same transaction as the event's effect, so a
//! redelivered event is recognised and its effect is never applied twice.

use crate::store::{ROWS_PER_STATEMENT, StoreTransaction, now_millis, value_rows};
use std::collections::HashSet;

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

/// [`record_first_delivery`] for several events in one statement per [`ROWS_PER_STATEMENT`]: for each id, whether
/// this is its first delivery. An id twice in `event_ids` (a duplicate published before the relay could mark it
/// sent) counts as first once, at its first place.
pub async fn record_first_deliveries(
    transaction: &mut StoreTransaction,
    consumer: &str,
    event_ids: &[&str],
) -> Result<Vec<bool>, sqlx::Error> {
    let mut recorded: HashSet<String> = HashSet::with_capacity(event_ids.len());
    let now = now_millis();
    for chunk in event_ids.chunks(ROWS_PER_STATEMENT) {
        let statement = format!(
            "INSERT INTO kit_inbox (consumer, event_id, processed_at) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING event_id",
            value_rows(1, chunk.len(), 3)
        );
        let mut query = sqlx::query_scalar::<_, String>(&statement);
        for event_id in chunk {
            query = query.bind(consumer).bind(*event_id).bind(now);
        }
        recorded.extend(query.fetch_all(&mut **transaction).await?);
    }
    Ok(event_ids.iter().map(|id| recorded.remove(*id)).collect())
}
