//! The store: SQLite or PostgreSQL behind one interface (sqlx's `Any` driver), migrated at startup.
//!
//! Services write portable SQL with `$1`-style placeholders, integers, text and booleans; the few statements that
//! differ between the two (auto-increment keys, mostly) are written twice in a [`Migration`].

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration as SqlxMigration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyPool, ConnectOptions, Executor};
use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

/// A transaction on the store; state changes, outbox rows and inbox marks go in the same one.
pub type StoreTransaction = sqlx::Transaction<'static, sqlx::Any>;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file: local mode and single-replica deployments on a volume.
    Sqlite,
    /// PostgreSQL: production, several replicas.
    Postgres,
}

impl Backend {
    /// The backend a URL names, or what was wrong with it.
    pub fn from_url(url: &str) -> Result<Self, String> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            Err(format!(
                "expected a sqlite:// or postgres:// URL, got scheme '{scheme}'"
            ))
        }
    }
}

/// One schema change, written for each backend.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Ordering key. The kit's own tables use 1-99; services start at 100.
    pub version: i64,
    /// What the migration does.
    pub description: &'static str,
    /// The SQL for SQLite.
    pub sqlite: &'static str,
    /// The SQL for PostgreSQL.
    pub postgres: &'static str,
}

/// The kit's own tables: the transactional outbox, the idempotent inbox and the parked poison messages.
pub const KIT_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "kit outbox",
        sqlite: "CREATE TABLE kit_outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            topic TEXT NOT NULL,
            message_key TEXT NOT NULL,
            headers TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            sent_at BIGINT
        );
        CREATE INDEX kit_outbox_unsent ON kit_outbox (id) WHERE sent_at IS NULL;",
        postgres: "CREATE TABLE kit_outbox (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            topic TEXT NOT NULL,
            message_key TEXT NOT NULL,
            headers TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            sent_at BIGINT
        );
        CREATE INDEX kit_outbox_unsent ON kit_outbox (id) WHERE sent_at IS NULL;",
    },
    Migration {
        version: 2,
        description: "kit inbox",
        sqlite: "CREATE TABLE kit_inbox (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            processed_at BIGINT NOT NULL,
            PRIMARY KEY (consumer, event_id)
        );",
        postgres: "CREATE TABLE kit_inbox (
            consumer TEXT NOT NULL,
            event_id TEXT NOT NULL,
            processed_at BIGINT NOT NULL,
            PRIMARY KEY (consumer, event_id)
        );",
    },
    Migration {
        version: 3,
        description: "kit parked poison messages",
        sqlite: PARKED_MESSAGES_TABLE,
        postgres: PARKED_MESSAGES_TABLE,
    },
    Migration {
        version: 4,
        description: "kit inbox pruned by age",
        sqlite: INBOX_AGE_INDEX,
        postgres: INBOX_AGE_INDEX,
    },
    Migration {
        version: 5,
        description: "kit relay lease",
        sqlite: RELAY_LEASE_TABLE,
        postgres: RELAY_LEASE_TABLE,
    },
    Migration {
        version: 6,
        description: "kit consumer partition leases and positions",
        sqlite: CONSUMER_LEASE_TABLES,
        postgres: CONSUMER_LEASE_TABLES,
    },
];

/// The inbox is pruned by age every minute; without this index each prune reads the whole table.
const INBOX_AGE_INDEX: &str = "CREATE INDEX kit_inbox_by_age ON kit_inbox (processed_at);";

/// Which replica relays the outbox, and until when (database clock, milliseconds). One row per store, so services
/// sharing a database each have their own lease in their own schema.
const RELAY_LEASE_TABLE: &str = "CREATE TABLE kit_relay_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);";

/// Which member of each consumer group holds which partition until when, and where the partition resumes
/// (events/leases.rs); the live members, each with its heartbeat's expiry (database clock, milliseconds).
const CONSUMER_LEASE_TABLES: &str = "CREATE TABLE kit_consumer_leases (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_number INTEGER NOT NULL,
    holder TEXT,
    expires_at BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition_number)
);
CREATE TABLE kit_consumer_members (
    consumer_group TEXT NOT NULL,
    member TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, member)
);";

/// Poison messages a consumer skipped, kept for inspection and replay (same SQL on both backends).
const PARKED_MESSAGES_TABLE: &str = "CREATE TABLE kit_parked_messages (
    consumer TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_number INTEGER NOT NULL,
    message_offset BIGINT NOT NULL,
    message_key TEXT NOT NULL,
    headers TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    parked_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, topic, partition_number, message_offset)
);";

/// Session limits on PostgreSQL, so one stuck statement, lock or forgotten transaction cannot hold a connection (and
/// the rows it locked) for hours: the request or consumer sees an error and retries instead.
const POSTGRES_SESSION_SETTINGS: [&str; 3] = [
    "SET statement_timeout = '30s'",
    "SET lock_timeout = '10s'",
    "SET idle_in_transaction_session_timeout = '60s'",
];

/// Checks a PostgreSQL schema name: lower-case letters, digits and underscores, not starting with a digit, at most
/// 63 bytes (PostgreSQL's identifier limit), so it can be quoted without escaping.
pub fn validate_schema_name(name: &str) -> Result<(), String> {
    let valid_start = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_');
    let valid_rest = name.chars().all(|character| {
        character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_'
    });
    if valid_start && valid_rest && name.len() <= 63 {
        Ok(())
    } else {
        Err(format!(
            "expected lower-case letters, digits and underscores (at most 63, not starting with a digit), got '{name}'"
        ))
    }
}

/// The default schema of a service: its name, with anything PostgreSQL would need quoting for replaced by `_`.
pub fn schema_name_for(service: &str) -> String {
    let name: String = service
        .chars()
        .map(|character| match character.to_ascii_lowercase() {
            lower @ ('a'..='z' | '0'..='9' | '_') => lower,
            _ => '_',
        })
        .take(63)
        .collect();
    if name.starts_with(|first: char| first.is_ascii_digit()) || name.is_empty() {
        format!("_{name}").chars().take(63).collect()
    } else {
        name
    }
}

/// Why the store could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not one the store understands.
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(String),
    /// Could not connect.
    #[error("cannot connect to the {backend:?} database: {source}")]
    Connect {
        /// The backend tried.
        backend: Backend,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] sqlx::Error),
    /// This service's tables are in the database's `public` schema, where versions before schemas kept them.
    #[error(
        "this service's tables (migration '{description}') are in schema public, where earlier versions kept them, \
         and schema {schema} is empty: set DATABASE_SCHEMA=public to keep using them, or move them first \
         (ALTER TABLE public.<table> SET SCHEMA \"{schema}\" for each, _sqlx_migrations included)"
    )]
    EarlierLayout {
        /// The schema the service would use.
        schema: String,
        /// The service's first migration, found in `public`.
        description: String,
    },
}

/// A service's own database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    schema: Option<String>,
}

impl Store {
    /// Connects to `url`. SQLite files (and their directories) are created when missing. On PostgreSQL the
    /// tables live in the connection's default schema; services use [`Store::connect_in_schema`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_in_schema(url, max_connections, None).await
    }

    /// Connects to `url`; on PostgreSQL every table, migration record, outbox, inbox and relay lease lives in
    /// `schema` (created when missing), so several services can share one database without seeing each other's
    /// tables. SQLite has a file per service and ignores it.
    pub async fn connect_in_schema(
        url: &str,
        max_connections: u32,
        schema: Option<&str>,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if let Some(schema) = schema {
            validate_schema_name(schema).map_err(StoreError::InvalidUrl)?;
        }
        let backend = Backend::from_url(url).map_err(StoreError::InvalidUrl)?;
        let options = match backend {
            Backend::Sqlite => {
                let url = sqlite_url_creating_file(url).map_err(StoreError::InvalidUrl)?;
                AnyConnectOptions::from_str(&url)
            }
            Backend::Postgres => AnyConnectOptions::from_str(url),
        }
        .map_err(|error| StoreError::InvalidUrl(error.to_string()))?
        .log_statements(tracing::log::LevelFilter::Trace)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool_options = match backend {
            // One connection: SQLite has one writer anyway, and a second connection upgrading a read lock to a
            // write lock fails with SQLITE_BUSY instead of waiting. It also keeps `sqlite::memory:` one database.
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|connection, _| {
                    Box::pin(async move {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            // FULL: a commit is on disk before it returns, so a machine crash cannot roll back
                            // a commit whose events were already published or whose offsets were committed.
                            "PRAGMA synchronous = FULL",
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            connection.execute(pragma).await?;
                        }
                        Ok(())
                    })
                }),
            Backend::Postgres => {
                if let Some(schema) = schema {
                    create_schema(options.clone(), schema).await?;
                }
                let search_path = schema.map(|schema| format!("SET search_path TO \"{schema}\""));
                AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .after_connect(move |connection, _| {
                        let search_path = search_path.clone();
                        Box::pin(async move {
                            for setting in search_path
                                .iter()
                                .map(String::as_str)
                                .chain(POSTGRES_SESSION_SETTINGS)
                            {
                                connection.execute(setting).await?;
                            }
                            Ok(())
                        })
                    })
            }
        }
        .acquire_timeout(Duration::from_secs(5));
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect { backend, source })?;
        Ok(Self {
            pool,
            backend,
            schema: schema.map(str::to_owned),
        })
    }

    /// Applies the kit's migrations and the service's, in version order, each once. Safe to run from several
    /// replicas at once: sqlx takes a database lock on PostgreSQL. Versions this binary does not know were applied
    /// by a newer one; it starts anyway, because a rollback must work and migrations only ever add (nullable
    /// columns, tables, indexes), so the previous version's queries, which name their columns, still hold. The
    /// versions it does know must match what was applied (sqlx checks their checksums).
    pub async fn migrate(&self, service_migrations: &[Migration]) -> Result<(), StoreError> {
        self.refuse_earlier_layout(service_migrations).await?;
        let source = MigrationSet {
            backend: self.backend,
            migrations: KIT_MIGRATIONS
                .iter()
                .chain(service_migrations)
                .copied()
                .collect(),
        };
        let mut migrator = Migrator::new(source).await?;
        migrator.set_ignore_missing(true);
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Before schemas, a service's tables lived in `public`. Migrating into a new, empty schema would hide them (an
    /// order's captured payment, unsent outbox rows) without a word, so that case stops startup with what to do.
    async fn refuse_earlier_layout(
        &self,
        service_migrations: &[Migration],
    ) -> Result<(), StoreError> {
        let (Backend::Postgres, Some(schema)) = (self.backend, &self.schema) else {
            return Ok(());
        };
        let Some(first) = service_migrations.first() else {
            return Ok(());
        };
        if schema == "public" {
            return Ok(());
        }
        let (in_public, in_schema): (bool, bool) = sqlx::query_as(
            "SELECT to_regclass('public._sqlx_migrations') IS NOT NULL, to_regclass($1) IS NOT NULL",
        )
        .bind(format!("\"{schema}\"._sqlx_migrations"))
        .fetch_one(&self.pool)
        .await?;
        if !in_public || in_schema {
            return Ok(());
        }
        let description: Option<String> = sqlx::query_scalar(
            "SELECT description FROM public._sqlx_migrations WHERE version = $1",
        )
        .bind(first.version)
        .fetch_optional(&self.pool)
        .await?;
        match description {
            Some(description) if description == first.description => {
                Err(StoreError::EarlierLayout {
                    schema: schema.clone(),
                    description,
                })
            }
            _ => Ok(()),
        }
    }

    /// Starts a transaction. Cancelling the returned future (a request whose client went away) cannot leave the
    /// connection inside a transaction: sqlx 0.8 counts a PostgreSQL transaction as open only once BEGIN has been
    /// answered, so a `begin` dropped while BEGIN was on the wire left the session in a transaction nothing would
    /// roll back, and the pool handed it on; the next failure there turned every statement on that connection into
    /// "current transaction is aborted" (launchbadge/sqlx#4393; seen as 500s in the fault-injection rollout). The
    /// BEGIN runs in a task of its own, which finishes whatever happens to the caller; a transaction nobody takes
    /// is then dropped there, which rolls it back.
    pub async fn begin(&self) -> Result<StoreTransaction, sqlx::Error> {
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.begin().await })
            .await
            .unwrap_or(Err(sqlx::Error::WorkerCrashed))
    }

    /// The connection pool, for queries outside a transaction.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Closes every connection (the last step of shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates `schema` if it does not exist. Replicas starting together may race on it; the loser's error is harmless
/// when the schema exists afterwards.
async fn create_schema(options: AnyConnectOptions, schema: &str) -> Result<(), StoreError> {
    let connect_error = |source| StoreError::Connect {
        backend: Backend::Postgres,
        source,
    };
    let mut connection = options.connect().await.map_err(connect_error)?;
    let created = connection
        .execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
        .await;
    if let Err(error) = created {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)",
        )
        .bind(schema)
        .fetch_one(&mut connection)
        .await?;
        if !exists {
            return Err(StoreError::Query(error));
        }
    }
    sqlx::Connection::close(connection).await.ok();
    Ok(())
}

/// Adds `mode=rwc` (create if missing) to a SQLite URL and creates the file's directory.
fn sqlite_url_creating_file(url: &str) -> Result<String, String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err("a sqlite URL needs a file path, e.g. sqlite://data/order.db".to_owned());
    }
    let directory = std::path::Path::new(path)
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty());
    if let Some(directory) = directory.filter(|_| path != ":memory:") {
        std::fs::create_dir_all(directory).map_err(|error| {
            format!("cannot create directory '{}': {error}", directory.display())
        })?;
    }
    Ok(if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}

/// Feeds sqlx's migrator the SQL for this backend.
#[derive(Debug)]
struct MigrationSet {
    backend: Backend,
    migrations: Vec<Migration>,
}

impl<'s> MigrationSource<'s> for MigrationSet {
    fn resolve(
        self,
    ) -> futures::future::BoxFuture<'s, Result<Vec<SqlxMigration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .migrations
                .into_iter()
                .map(|migration| {
                    let sql = match self.backend {
                        Backend::Sqlite => migration.sqlite,
                        Backend::Postgres => migration.postgres,
                    };
                    SqlxMigration::new(
                        migration.version,
                        Cow::Borrowed(migration.description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The most rows one multi-row statement carries: each is a round trip saved, and a few hundred parameters stay far
/// below both backends' limits (SQLite 32,766, PostgreSQL 65,535) and keep the statement cache small.
pub const ROWS_PER_STATEMENT: usize = 64;

/// `rows` groups of `columns` numbered placeholders, `($first, $first+1), (...)`, for one statement that writes or
/// looks up many rows: every statement is a round trip to the store (on SQLite a hand-over to its thread), which is
/// what an event costs, not the rows it touches.
pub fn value_rows(first: usize, rows: usize, columns: usize) -> String {
    let mut placeholders = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        placeholders.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                placeholders.push_str(", ");
            }
            placeholders.push('$');
            placeholders.push_str(&(first + row * columns + column).to_string());
        }
        placeholders.push(')');
    }
    placeholders
}

/// `count` numbered placeholders from `$first`, comma-separated, for `IN (...)`.
pub fn value_list(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|index| format!("${index}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Milliseconds since the Unix epoch: how the kit stores instants (portable across both backends).
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_and_columns_from_the_first() {
        assert_eq!(value_rows(2, 2, 3), "($2, $3, $4), ($5, $6, $7)");
        assert_eq!(value_rows(1, 1, 1), "($1)");
        assert_eq!(value_list(3, 3), "$3, $4, $5");
    }

    #[test]
    fn backends_are_recognised_by_scheme() {
        assert_eq!(Backend::from_url("sqlite://data/a.db"), Ok(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgres://u@h/db"),
            Ok(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://u@h/db"),
            Ok(Backend::Postgres)
        );
        assert!(
            Backend::from_url("mysql://h/db")
                .unwrap_err()
                .contains("'mysql'")
        );
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let directory = std::env::temp_dir().join(format!("kit-store-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}/order.db", directory.display());
        assert_eq!(
            sqlite_url_creating_file(&url).unwrap(),
            format!("{url}?mode=rwc")
        );
        assert!(directory.is_dir());
        assert_eq!(
            sqlite_url_creating_file("sqlite::memory:").unwrap(),
            "sqlite::memory:?mode=rwc"
        );
        assert!(sqlite_url_creating_file("sqlite://").is_err());
    }
}
