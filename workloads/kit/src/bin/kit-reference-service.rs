//! The smallest service built on the kit: a ledger that records entries (state change + event through the
//! outbox) and keeps balances from its own events (consumer + inbox). It shows how a service wires the kit, and
//! the kit's process-level tests (shutdown, configuration errors) and its event-pipeline benchmark run it.
//! It is not part of the food-delivery platform.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use food_delivery_kit::events::{Event, EventHandler, HandlerError, Outbox, PoisonReason};
use food_delivery_kit::http::{Json, Path, Query};
use food_delivery_kit::{
    Environment, FieldViolation, KitConfig, Migration, Problem, ServiceHost, ServiceSpec, Store,
    StoreTransaction,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const ENTRY_RECORDED: &str = "kit.ledger.entry-recorded.v1";
const LEDGER_TOPIC: &str = "ledger";

const MIGRATIONS: &[Migration] = &[Migration {
    version: 100,
    description: "ledger entries and balances",
    sqlite: "CREATE TABLE ledger_entries (id TEXT PRIMARY KEY, account TEXT NOT NULL, amount BIGINT NOT NULL, created_at BIGINT NOT NULL);
             CREATE TABLE ledger_balances (account TEXT PRIMARY KEY, balance BIGINT NOT NULL, entries BIGINT NOT NULL);",
    postgres: "CREATE TABLE ledger_entries (id TEXT PRIMARY KEY, account TEXT NOT NULL, amount BIGINT NOT NULL, created_at BIGINT NOT NULL);
               CREATE TABLE ledger_balances (account TEXT PRIMARY KEY, balance BIGINT NOT NULL, entries BIGINT NOT NULL);",
}];

const SPEC: ServiceSpec = ServiceSpec {
    name: "kit-reference",
    migrations: MIGRATIONS,
    publishes: Some(LEDGER_TOPIC),
    consumes: &[LEDGER_TOPIC],
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecordEntry {
    account: String,
    amount: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryRecorded {
    entry_id: String,
    account: String,
    amount: i64,
}

#[derive(Clone)]
struct Ledger {
    store: Store,
    outbox: Outbox,
}

async fn record_entry(
    axum::extract::State(ledger): axum::extract::State<Ledger>,
    Json(request): Json<RecordEntry>,
) -> Result<(StatusCode, axum::Json<EntryRecorded>), Problem> {
    let mut violations = Vec::new();
    if request.account.trim().is_empty() {
        violations.push(FieldViolation::new("account", "must not be empty"));
    }
    if request.amount == 0 {
        violations.push(FieldViolation::new("amount", "must not be zero"));
    }
    if !violations.is_empty() {
        return Err(Problem::validation(violations));
    }
    let recorded = EntryRecorded {
        entry_id: uuid::Uuid::now_v7().to_string(),
        account: request.account,
        amount: request.amount,
    };
    let event = Event::new(ENTRY_RECORDED, SPEC.name, &recorded.account, &recorded)?;
    let mut transaction = ledger.store.begin().await?;
    sqlx::query(
        "INSERT INTO ledger_entries (id, account, amount, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&recorded.entry_id)
    .bind(&recorded.account)
    .bind(recorded.amount)
    .bind(food_delivery_kit::store::now_millis())
    .execute(&mut *transaction)
    .await?;
    ledger
        .outbox
        .append(&mut transaction, LEDGER_TOPIC, &event)
        .await?;
    transaction.commit().await?;
    ledger.outbox.wake_relay();
    Ok((StatusCode::CREATED, axum::Json(recorded)))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Balance {
    account: String,
    balance: i64,
    entries: i64,
}

async fn balance(
    axum::extract::State(ledger): axum::extract::State<Ledger>,
    Path(account): Path<String>,
) -> Result<axum::Json<Balance>, Problem> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT balance, entries FROM ledger_balances WHERE account = $1")
            .bind(&account)
            .fetch_optional(ledger.store.pool())
            .await?;
    let (balance, entries) =
        row.ok_or_else(|| Problem::not_found(format!("no balance for account '{account}'")))?;
    Ok(axum::Json(Balance {
        account,
        balance,
        entries,
    }))
}

#[derive(Debug, Deserialize)]
struct SlowQuery {
    ms: u64,
}

/// A deliberately slow request, so tests can have one in flight during shutdown.
async fn slow(Query(query): Query<SlowQuery>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(query.ms.min(30_000))).await;
    "done"
}

/// Applies the ledger's own events to the balances.
struct BalancePolicy;

impl EventHandler for BalancePolicy {
    async fn handle(
        &self,
        transaction: &mut StoreTransaction,
        event: &Event,
    ) -> Result<(), HandlerError> {
        if event.event_type != ENTRY_RECORDED {
            return Err(PoisonReason::UnknownType(event.event_type.clone()).into());
        }
        let entry: EntryRecorded = event.decode_data()?;
        sqlx::query(
            "INSERT INTO ledger_balances (account, balance, entries) VALUES ($1, $2, 1)
             ON CONFLICT (account) DO UPDATE SET balance = ledger_balances.balance + excluded.balance,
                                                 entries = ledger_balances.entries + 1",
        )
        .bind(&entry.account)
        .bind(entry.amount)
        .execute(&mut **transaction)
        .await?;
        tracing::info!(
            account = entry.account,
            amount = entry.amount,
            "balance updated"
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match KitConfig::from_env(&Environment::from_process()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return std::process::ExitCode::from(2);
        }
    };
    let _log_guard = match food_delivery_kit::telemetry::init_logging(&config.log) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{error}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "service failed");
            eprintln!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: KitConfig) -> Result<(), food_delivery_kit::host::HostError> {
    let mut host = ServiceHost::start(SPEC, config, None).await?;
    let ledger = Ledger {
        store: host.store()?,
        outbox: host.outbox(),
    };
    host.spawn_consumer("kit-reference-balances", BalancePolicy)?;
    let api = Router::new()
        .route("/entries", post(record_entry))
        .route("/balances/{account}", get(balance))
        .route("/slow", get(slow))
        .with_state(ledger);
    host.bind_and_serve(api, food_delivery_kit::shutdown_signal())
        .await
}
