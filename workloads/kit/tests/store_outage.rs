//! A store that refuses writes for a while (a full or read-only disk, a failover, a trigger gone wrong): the
//! consumer keeps the event until the store works again, applies it once, and never acknowledges it unapplied.
//! Also: services sharing one PostgreSQL database, each in its own schema with its own migrations and relay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_testkit as support;

use food_delivery_kit::events::{EventBus, InProcessBus, Topics, run_consumer, stuck_deliveries};
use food_delivery_kit::{Environment, KitConfig, Migration, ServiceHost, ServiceSpec, Store};
use std::time::{Duration, Instant};
use support::{Backend, RecordEffects, TestDatabase, eventually, unique, widget_event};
use tokio_util::sync::CancellationToken;

/// Longer than the old code's eight attempts (about 16 s) before it called the event poison and skipped it.
const OUTAGE: Duration = Duration::from_secs(20);

async fn refuse_writes(store: &Store, backend: Backend) {
    let statements: &[&str] = match backend {
        Backend::Sqlite => &[
            "CREATE TRIGGER refuse_effects BEFORE INSERT ON effects BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION refuse_effects() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_effects BEFORE INSERT ON effects FOR EACH ROW EXECUTE FUNCTION refuse_effects()",
        ],
    };
    for statement in statements {
        sqlx::query(statement).execute(store.pool()).await.unwrap();
    }
}

async fn accept_writes(store: &Store, backend: Backend) {
    let statement = match backend {
        Backend::Sqlite => "DROP TRIGGER refuse_effects",
        Backend::Postgres => "DROP TRIGGER refuse_effects ON effects",
    };
    sqlx::query(statement).execute(store.pool()).await.unwrap();
}

async fn an_event_waits_for_a_failing_store_and_is_applied_once(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = Store::connect(&database.url, 5).await.unwrap();
    store.migrate(support::EFFECT_MIGRATIONS).await.unwrap();
    let bus = InProcessBus::new();
    let topic = Topics::new(unique("t")).name("widgets");
    let bus = EventBus::InProcess(bus);
    bus.ensure_topics(std::slice::from_ref(&topic))
        .await
        .unwrap();
    let group = unique("g");
    let stop = CancellationToken::new();
    refuse_writes(&store, backend).await;
    let consumer = tokio::spawn(run_consumer(
        store.clone(),
        bus.clone(),
        None,
        group.clone(),
        vec![topic.clone()],
        RecordEffects,
        stop.clone(),
    ));
    let published = bus
        .publish_all(vec![
            widget_event("order-1", 1).to_message(&topic),
            widget_event("order-1", 2).to_message(&topic),
        ])
        .await;
    assert!(published.iter().all(Result::is_ok));

    let outage_started = Instant::now();
    let stuck = eventually(
        Duration::from_secs(20),
        "the held-up partition to be reported",
        || async {
            let stuck = stuck_deliveries(std::slice::from_ref(&group));
            (!stuck.is_empty()).then_some(stuck)
        },
    )
    .await;
    assert_eq!(stuck[0].offset, 0, "{stuck:?}");
    assert!(stuck[0].error.contains("disk full"), "{stuck:?}");
    tokio::time::sleep(OUTAGE.saturating_sub(outage_started.elapsed())).await;
    let effects = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM effects")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    assert_eq!(
        effects().await,
        0,
        "nothing can be applied during the outage"
    );
    accept_writes(&store, backend).await;

    eventually(
        Duration::from_secs(20),
        "both events applied after the store came back",
        || async { (effects().await == 2).then_some(()) },
    )
    .await;
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM effects ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(seqs, vec![1, 2], "each applied once, in order");
    let parked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kit_parked_messages")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(parked, 0, "a store failure is not poison");
    assert!(stuck_deliveries(std::slice::from_ref(&group)).is_empty());
    stop.cancel();
    consumer.await.unwrap();
    database.remove().await;
}

/// A rollback (`kubectl rollout undo`, the operator keeps the previous settings for it) starts the previous
/// version on a store the new one migrated further. Migrations only add (nullable columns, tables, indexes), so
/// the previous version runs on it; it must not refuse to start over versions it does not know.
async fn the_previous_version_starts_on_a_store_a_newer_one_migrated(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let newer = Store::connect(&database.url, 1).await.unwrap();
    let mut both = FIRST_SERVICE.to_vec();
    both.push(Migration {
        version: 101,
        description: "a column the newer version added",
        sqlite: "ALTER TABLE things ADD COLUMN colour TEXT",
        postgres: "ALTER TABLE things ADD COLUMN colour TEXT",
    });
    newer.migrate(&both).await.unwrap();
    newer.close().await;
    let previous = Store::connect(&database.url, 1).await.unwrap();
    previous
        .migrate(FIRST_SERVICE)
        .await
        .expect("the previous version starts");
    sqlx::query("INSERT INTO things (id) VALUES ('written by the previous version')")
        .execute(previous.pool())
        .await
        .unwrap();
    previous.close().await;
    database.remove().await;
}

food_delivery_testkit::on_both_backends!(
    an_event_waits_for_a_failing_store_and_is_applied_once,
    the_previous_version_starts_on_a_store_a_newer_one_migrated,
);

/// Two services with the same migration versions, as every service of this project has (they all start at 100).
const FIRST_SERVICE: &[Migration] = &[Migration {
    version: 100,
    description: "first service's table",
    sqlite: "CREATE TABLE things (id TEXT PRIMARY KEY)",
    postgres: "CREATE TABLE things (id TEXT PRIMARY KEY)",
}];
const SECOND_SERVICE: &[Migration] = &[Migration {
    version: 100,
    description: "second service's table",
    sqlite: "CREATE TABLE other_things (id TEXT PRIMARY KEY, size BIGINT NOT NULL)",
    postgres: "CREATE TABLE other_things (id TEXT PRIMARY KEY, size BIGINT NOT NULL)",
}];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_share_one_postgres_database_each_in_its_own_schema() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let bus = InProcessBus::new();
    let prefix = unique("t");
    let environment = Environment::from_pairs([
        ("DATABASE_URL", database.url.clone()),
        ("KAFKA_TOPIC_PREFIX", prefix.clone()),
        ("OUTBOX_POLL_INTERVAL_MS", "50".to_owned()),
    ]);
    let mut hosts = Vec::new();
    for (name, migrations) in [
        ("first-service", FIRST_SERVICE),
        ("second-service", SECOND_SERVICE),
        // A second replica of the first: same schema, its migrations already applied.
        ("first-service", FIRST_SERVICE),
    ] {
        let spec = ServiceSpec {
            name,
            migrations,
            publishes: Some("widgets"),
            consumes: &["widgets"],
        };
        let host = ServiceHost::start(
            spec,
            KitConfig::from_env(&environment).unwrap(),
            Some(EventBus::InProcess(bus.clone())),
        )
        .await
        .unwrap_or_else(|error| panic!("{name} could not start on the shared database: {error}"));
        hosts.push(host);
    }
    for (index, host) in hosts.iter().enumerate().take(2) {
        let store = host.store().unwrap();
        let mut transaction = store.begin().await.unwrap();
        host.outbox()
            .append(
                &mut transaction,
                "widgets",
                &widget_event(&format!("from-{index}"), 1),
            )
            .await
            .unwrap();
        transaction.commit().await.unwrap();
        host.outbox().wake_relay();
    }
    // Each service relays its own outbox: one shared relay lock would leave the second one's events unpublished.
    let topic = Topics::new(prefix).name("widgets");
    eventually(
        Duration::from_secs(30),
        "both services' events published",
        || async { (bus.messages(&topic).len() == 2).then_some(()) },
    )
    .await;
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables \
         WHERE table_name IN ('things', 'other_things', 'kit_outbox') ORDER BY 1",
    )
    .fetch_all(hosts[0].store().unwrap().pool())
    .await
    .unwrap();
    assert_eq!(
        schemas,
        vec![
            "first_service.kit_outbox",
            "first_service.things",
            "second_service.kit_outbox",
            "second_service.other_things",
        ]
    );
    for host in hosts {
        host.stop().await;
    }
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_are_on_disk_before_they_return() {
    let database = TestDatabase::create(Backend::Sqlite).await;
    let store = Store::connect(&database.url, 1).await.unwrap();
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap();
    // 2 = FULL: WAL commits are synced; NORMAL (1) may lose the last commits in a machine crash.
    assert_eq!(synchronous, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_cannot_wait_or_idle_forever() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let store = Store::connect(&database.url, 2).await.unwrap();
    for (setting, expected) in [
        ("statement_timeout", "30s"),
        ("lock_timeout", "10s"),
        ("idle_in_transaction_session_timeout", "1min"),
    ] {
        let value: String = sqlx::query_scalar(&format!("SHOW {setting}"))
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(value, expected, "{setting}");
    }
    store.close().await;
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_left_in_public_by_an_earlier_version_stop_startup_with_what_to_do() {
    let database = TestDatabase::create(Backend::Postgres).await;
    // An earlier version kept the service's tables in public.
    let earlier = Store::connect(&database.url, 1).await.unwrap();
    earlier.migrate(FIRST_SERVICE).await.unwrap();
    earlier.close().await;
    let spec = ServiceSpec {
        name: "first-service",
        migrations: FIRST_SERVICE,
        publishes: None,
        consumes: &[],
    };
    let start = |schema: Option<&str>| {
        let mut pairs = vec![("DATABASE_URL", database.url.clone())];
        pairs.extend(schema.map(|schema| ("DATABASE_SCHEMA", schema.to_owned())));
        let config = KitConfig::from_env(&Environment::from_pairs(pairs)).unwrap();
        ServiceHost::start(spec, config, None)
    };
    let refused = start(None).await.unwrap_err().to_string();
    assert!(
        refused.contains("schema public") && refused.contains("DATABASE_SCHEMA=public"),
        "{refused}"
    );
    let host = start(Some("public")).await.unwrap();
    let things: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM things")
        .fetch_one(host.store().unwrap().pool())
        .await
        .unwrap();
    assert_eq!(things, 0, "the earlier tables, found where they are");
    host.stop().await;
    database.remove().await;
}

/// Data the store refuses for good (PostgreSQL text cannot hold NUL) is poison, not an outage: it is parked (NUL
/// and all, escaped) and the partition moves on, instead of retrying for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_the_store_refuses_for_good_is_parked_and_the_partition_moves_on() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let store = Store::connect(&database.url, 5).await.unwrap();
    store.migrate(support::EFFECT_MIGRATIONS).await.unwrap();
    let bus = EventBus::InProcess(InProcessBus::new());
    let topic = Topics::new(unique("t")).name("widgets");
    bus.ensure_topics(std::slice::from_ref(&topic))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(run_consumer(
        store.clone(),
        bus.clone(),
        None,
        unique("g"),
        vec![topic.clone()],
        RecordEffects,
        stop.clone(),
    ));
    let published = bus
        .publish_all(vec![
            widget_event("order\u{0}1", 1).to_message(&topic),
            widget_event("order-2", 2).to_message(&topic),
        ])
        .await;
    assert!(published.iter().all(Result::is_ok));
    eventually(
        Duration::from_secs(20),
        "the next event applied",
        || async {
            let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM effects")
                .fetch_all(store.pool())
                .await
                .unwrap();
            (seqs == [2]).then_some(())
        },
    )
    .await;
    let parked: Vec<String> = sqlx::query_scalar("SELECT message_key FROM kit_parked_messages")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(parked, vec!["order\\u00001".to_owned()]);
    stop.cancel();
    consumer.await.unwrap();
    database.remove().await;
}

/// The inbox is pruned by age every minute; a week of entries under load is millions of rows, so the prune must
/// find old entries through an index, not by reading the whole table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_prune_finds_old_entries_through_an_index() {
    let database = TestDatabase::create(Backend::Sqlite).await;
    let store = Store::connect(&database.url, 1).await.unwrap();
    store.migrate(&[]).await.unwrap();
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT consumer, event_id FROM kit_inbox WHERE processed_at < 1 LIMIT 5000",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let plan: Vec<&str> = plan
        .iter()
        .map(|(_, _, _, detail)| detail.as_str())
        .collect();
    assert!(
        plan.iter()
            .any(|detail| detail.contains("kit_inbox_by_age")),
        "{plan:?}"
    );
}

/// A TCP proxy to PostgreSQL that delays every answer by `delay`: a slow database, which widens the moment a
/// cancelled `begin` can hit (on loopback it is a fraction of a millisecond). Returns its port.
async fn slow_postgres(server: String, delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = tokio::net::TcpStream::connect(server.as_str())
                .await
                .unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(read) = server_read.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    tokio::time::sleep(delay).await;
                    if client_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// A request whose client goes away while its transaction is being opened drops the `begin` future mid-flight. On
/// PostgreSQL sqlx then leaves the session inside a transaction it does not know about (launchbadge/sqlx#4393) and
/// hands the connection to the next borrower: its statements run in that stale transaction and keep their locks,
/// and once anything fails there every statement on the connection answers "current transaction is aborted"
/// (25P02), which the API turned into 500s (seen in the fault-injection rollout on one shared database). A
/// cancelled begin must leave the pool usable and nothing held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_abandoned_while_it_opens_leaves_the_connection_clean() {
    let database = TestDatabase::create(Backend::Postgres).await;
    // postgres://user@host:port/database: the proxy stands in for host:port.
    let (prefix, rest) = database.url.split_once('@').unwrap();
    let (server, path) = rest.split_once('/').unwrap();
    let port = slow_postgres(server.to_owned(), Duration::from_millis(40)).await;
    let url = format!("{prefix}@127.0.0.1:{port}/{path}");
    let store = Store::connect(&url, 1).await.unwrap();
    for attempt in 0..12u64 {
        // Given up at moments spread over the acquire's ping and BEGIN's round trip, as a cancelled request is.
        let _ = tokio::time::timeout(Duration::from_millis(10 * attempt), store.begin()).await;
        // Something fails on the connection (a constraint, a timeout), then the next user comes.
        let _ = sqlx::query("SELECT 1 / 0").execute(store.pool()).await;
        let fine = sqlx::query("SELECT 1").execute(store.pool()).await;
        assert!(
            fine.is_ok(),
            "attempt {attempt}: the connection was handed on inside a stale transaction: {fine:?}"
        );
        let open: i64 = sqlx::query_scalar("SELECT txid_current_if_assigned() IS NOT NULL AND now() <> statement_timestamp() AS open")
            .fetch_one(store.pool())
            .await
            .map(|open: bool| i64::from(open))
            .unwrap();
        assert_eq!(
            open, 0,
            "attempt {attempt}: a statement ran inside a transaction nobody opened"
        );
    }
    store.close().await;
    database.remove().await;
}
