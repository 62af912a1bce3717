use food_delivery_kit::events::{Event, EventHandler, HandlerError, PoisonReason};
use food_delivery_kit::{Migration, StoreTransaction};

/// The effects table tests apply events to: deliberately without a unique key, so a double application shows.
pub const EFFECT_MIGRATIONS: &[Migration] = &[Migration {
    version: 100,
    description: "test widgets and effects",
    sqlite: "CREATE TABLE widgets (id TEXT PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE effects (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, subject TEXT NOT NULL, seq BIGINT NOT NULL);",
    postgres: "CREATE TABLE widgets (id TEXT PRIMARY KEY, name TEXT NOT NULL);
               CREATE TABLE effects (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id TEXT NOT NULL, subject TEXT NOT NULL, seq BIGINT NOT NULL);",
}];

/// The only event type tests publish.
pub const WIDGET_CHANGED: &str = "test.widget.changed.v1";

/// A widget event with a per-subject sequence number.
pub fn widget_event(subject: &str, seq: i64) -> Event {
    Event::new(
        WIDGET_CHANGED,
        "kit-test",
        subject,
        &serde_json::json!({"seq": seq}),
    )
    .unwrap()
}

/// A service's write: a widget row and its event on the `widgets` topic, in one transaction, then the relay is
/// woken.
pub async fn write_widget(
    store: &food_delivery_kit::Store,
    outbox: &food_delivery_kit::events::Outbox,
    subject: &str,
    seq: i64,
) {
    let mut transaction = store.begin().await.unwrap();
    sqlx::query("INSERT INTO widgets (id, name) VALUES ($1, $2)")
        .bind(format!("{subject}-{seq}"))
        .bind(subject)
        .execute(&mut *transaction)
        .await
        .unwrap();
    outbox
        .append(&mut transaction, "widgets", &widget_event(subject, seq))
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    outbox.wake_relay();
}

/// The effects `RecordEffects` applied, in the order they were applied: (subject, seq).
pub async fn applied_effects(store: &food_delivery_kit::Store) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT subject, seq FROM effects ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap()
}

/// Records each applied event in `effects`; unknown types are poison.
pub struct RecordEffects;

impl EventHandler for RecordEffects {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        if event.event_type != WIDGET_CHANGED {
            return Err(PoisonReason::UnknownType(event.event_type.clone()).into());
        }
        let seq = event.data["seq"]
            .as_i64()
            .ok_or_else(|| PoisonReason::BadData {
                event_type: event.event_type.clone(),
                problem: "seq must be an integer".to_owned(),
            })?;
        sqlx::query("INSERT INTO effects (event_id, subject, seq) VALUES ($1, $2, $3)")
            .bind(&event.id)
            .bind(&event.subject)
            .bind(seq)
            .execute(&mut **transaction)
            .await?;
        Ok(())
    }
}
