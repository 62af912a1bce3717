use crate::isolation::unique;
use sqlx::Connection;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory of the test's own.
    Sqlite,
    /// A database of the test's own on the PostgreSQL server of [`postgres_admin_url`].
    Postgres,
}

/// A fresh, empty database.
pub struct TestDatabase {
    /// What a service's `DATABASE_URL` is set to.
    pub url: String,
    _directory: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

/// The PostgreSQL server tests use (trust auth on these machines).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl TestDatabase {
    /// Creates an empty database on `backend`.
    pub async fn create(backend: Backend) -> Self {
        // Tests open their own connections to look inside a service's store.
        sqlx::any::install_default_drivers();
        match backend {
            Backend::Sqlite => {
                let directory = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/service.db", directory.path().display());
                Self {
                    url,
                    _directory: Some(directory),
                    postgres: None,
                }
            }
            Backend::Postgres => {
                sqlx::any::install_default_drivers();
                let admin_url = postgres_admin_url();
                let name = unique("kit_test_");
                let mut admin = sqlx::AnyConnection::connect(&admin_url)
                    .await
                    .expect("PostgreSQL must run at 127.0.0.1:5432 (or set TEST_POSTGRES_URL)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.ok();
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base.to_owned())
                    .unwrap();
                Self {
                    url: format!("{base}/{name}"),
                    _directory: None,
                    postgres: Some((admin_url, name)),
                }
            }
        }
    }

    /// Turns a PostgreSQL database read-only (or back), as a failover to a standby or a full disk does: every
    /// session is ended, and the sessions that reconnect can read but every write fails (SQLSTATE 25006).
    pub async fn set_read_only(&self, read_only: bool) {
        let (admin_url, name) = self
            .postgres
            .as_ref()
            .expect("only a PostgreSQL database can be turned read-only");
        let mut admin = sqlx::AnyConnection::connect(admin_url).await.unwrap();
        let setting = if read_only { "on" } else { "off" };
        sqlx::query(&format!(
            "ALTER DATABASE {name} SET default_transaction_read_only = {setting}"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        sqlx::query(&format!(
            "SELECT pg_terminate_backend(pid)::TEXT FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.ok();
    }

    /// Drops a PostgreSQL database (best effort; `scripts/test.sh` also removes leftovers).
    pub async fn remove(self) {
        if let Some((admin_url, name)) = &self.postgres
            && let Ok(mut admin) = sqlx::AnyConnection::connect(admin_url).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }
}

/// Runs each named `async fn(Backend)` test once per store, as `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::stores::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::stores::Backend::Postgres).await
                }
            )*
        }
    };
}
