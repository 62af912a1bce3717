//! The platform's invariants (DOMAIN.md) under seeded clients and injected faults, in the configurations users
//! run: every service twice on one shared PostgreSQL database behind Kubernetes-like Services; one instance each
//! on SQLite; and `food-delivery up`. After the faults stop and the platform settles, every invariant is checked
//! and the counts are printed.
//!
//! CI runs each at a small size. By hand, longer and with another seed:
//! `FAULTS_SEED=7 FAULTS_SECONDS=300 FAULTS_CLIENTS=8 cargo test -p food-delivery --test fault_injection -- --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use food_delivery_testkit::{Backend, BrokerBehindProxy, TestDatabase, free_port, unique};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::balancer::Balancer;
use support::chaos::{
    Clients, Random, RunSize, settle_and_check, spawn_clients, stock_the_kitchen, stop_after,
    stored_payments, summary, wait_ready,
};
use support::{INTERNAL_TOKEN, PLATFORM, ServiceProcess};

/// How long an order may wait for its payment before it is given up (short, so the run settles quickly).
const PAYMENT_DEADLINE_MS: &str = "5000";
/// What the kubelet's preStop sleep does: the endpoint is gone from the Service before SIGTERM.
const PRE_STOP: Duration = Duration::from_secs(1);
/// How long the platform gets to settle after the last fault.
const SETTLE: Duration = Duration::from_secs(90);

/// One service's pods behind its Service.
struct Deployment {
    balancer: Balancer,
    pods: Vec<Pod>,
    environment: Vec<(String, String)>,
}

struct Pod {
    id: u64,
    process: ServiceProcess,
}

/// Every service as separate processes over a broker of the test's own.
struct Fleet {
    broker: BrokerBehindProxy,
    databases: BTreeMap<&'static str, TestDatabase>,
    deployments: BTreeMap<&'static str, Deployment>,
    next_pod: u64,
    directory: tempfile::TempDir,
}

impl Fleet {
    /// `replicas` processes of every service; on PostgreSQL all of them share one database (each its own schema).
    async fn start(backend: Backend, replicas: usize) -> Self {
        let broker = BrokerBehindProxy::start().await;
        let mut databases = BTreeMap::new();
        let shared = match backend {
            Backend::Postgres => Some(TestDatabase::create(Backend::Postgres).await),
            Backend::Sqlite => None,
        };
        let prefix = unique("f");
        let mut balancers = BTreeMap::new();
        for name in PLATFORM {
            balancers.insert(name, Balancer::start().await);
        }
        let routes = food_delivery_gateway::domain::routes_setting(|service| {
            balancers.get(service.name()).map(Balancer::url)
        });
        let payment_url = balancers["payment"].url();
        let mut deployments = BTreeMap::new();
        for name in PLATFORM {
            let mut environment: Vec<(String, String)> = [
                ("HTTP_HOST", "127.0.0.1".to_owned()),
                ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
                ("KAFKA_TOPIC_PREFIX", prefix.clone()),
                // The kubelet's preStop sleep is the test's; the service's own drain comes after SIGTERM.
                ("SHUTDOWN_DRAIN_DELAY_MS", "500".to_owned()),
                // Sixteen processes share one PostgreSQL server (100 connections by default), as a production
                // deployment of one database for every service does.
                ("DATABASE_MAX_CONNECTIONS", "4".to_owned()),
                ("LOG_LEVEL", "info".to_owned()),
                ("KITCHEN_AUTO_COOK", "true".to_owned()),
                ("KITCHEN_AUTO_START_AFTER_MS", "300".to_owned()),
                ("KITCHEN_COOK_TIME_MS", "300".to_owned()),
                ("DELIVERY_AUTO_RIDE", "true".to_owned()),
                ("DELIVERY_RIDE_TIME_MS", "300".to_owned()),
                ("PAYMENT_URL", payment_url.clone()),
                ("PAYMENT_TIMEOUT_MS", "1500".to_owned()),
                // As the operator gives it: payment authorizes only for callers that send it.
                ("INTERNAL_TOKEN", INTERNAL_TOKEN.to_owned()),
                (
                    "PAYMENT_PENDING_DEADLINE_MS",
                    PAYMENT_DEADLINE_MS.to_owned(),
                ),
                ("GATEWAY_ROUTES", routes.clone()),
                ("GATEWAY_TIMEOUT_MS", "5000".to_owned()),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
            if name != "gateway" {
                let url = match &shared {
                    Some(database) => database.url.clone(),
                    None => {
                        let database = TestDatabase::create(Backend::Sqlite).await;
                        let url = database.url.clone();
                        databases.insert(name, database);
                        url
                    }
                };
                environment.push(("DATABASE_URL".to_owned(), url));
            }
            deployments.insert(
                name,
                Deployment {
                    balancer: balancers.remove(name).unwrap(),
                    pods: Vec::new(),
                    environment,
                },
            );
        }
        if let Some(database) = shared {
            databases.insert("shared", database);
        }
        let mut fleet = Self {
            broker,
            databases,
            deployments,
            next_pod: 0,
            directory: tempfile::tempdir().unwrap(),
        };
        for name in PLATFORM {
            for _ in 0..replicas {
                let id = fleet.start_pod(name);
                fleet.wait_routed(name, id).await;
            }
        }
        fleet
    }

    fn database_url(&self, service: &str) -> &str {
        &self
            .databases
            .get("shared")
            .or_else(|| self.databases.get(service))
            .unwrap()
            .url
    }

    fn gateway(&self) -> String {
        self.deployments["gateway"].balancer.url()
    }

    /// A new pod of `name`: its own port and name, the Deployment's settings.
    fn start_pod(&mut self, name: &'static str) -> u64 {
        self.next_pod += 1;
        let id = self.next_pod;
        let port = free_port();
        let deployment = self.deployments.get_mut(name).unwrap();
        let mut environment = deployment.environment.clone();
        environment.push(("HTTP_PORT".to_owned(), port.to_string()));
        environment.push(("POD_NAME".to_owned(), format!("{name}-{id}")));
        let mut process = ServiceProcess {
            name,
            port,
            environment,
            log: self.directory.path().join(format!("{name}-{id}.log")),
            child: None,
        };
        process.start();
        deployment.balancer.add(id, port);
        deployment.pods.push(Pod { id, process });
        id
    }

    async fn wait_routed(&self, name: &str, id: u64) {
        let balancer = &self.deployments[name].balancer;
        food_delivery_testkit::eventually(
            Duration::from_secs(60),
            &format!("{name}-{id} to be routed"),
            || async { balancer.routes_to(id).then_some(()) },
        )
        .await;
    }

    /// One step of a rolling update (maxSurge 1, maxUnavailable 0): a new pod becomes ready, then the oldest is
    /// deleted as the kubelet does it (endpoint removed, preStop sleep, SIGTERM, wait for the exit).
    async fn replace_oldest(&mut self, name: &'static str) -> String {
        let new = self.start_pod(name);
        self.wait_routed(name, new).await;
        let deployment = self.deployments.get_mut(name).unwrap();
        let mut old = deployment.pods.remove(0);
        deployment.balancer.terminate(old.id);
        tokio::time::sleep(PRE_STOP).await;
        let sigterm = Instant::now();
        old.process.stop("TERM");
        let exited = sigterm.elapsed();
        deployment.balancer.remove(old.id);
        format!(
            "{name}-{} replaced by {name}-{new} (exit {} ms after SIGTERM)",
            old.id,
            exited.as_millis()
        )
    }

    /// A crash: one pod is killed; its container restarts on the same port after `down`.
    async fn crash(&mut self, name: &'static str, index: usize, down: Duration) -> String {
        let deployment = self.deployments.get_mut(name).unwrap();
        let index = index % deployment.pods.len();
        let pod = &mut deployment.pods[index];
        pod.process.stop("KILL");
        tokio::time::sleep(down).await;
        pod.process.start();
        let id = pod.id;
        self.wait_routed(name, id).await;
        format!("{name}-{id} killed, back after {} ms", down.as_millis())
    }

    async fn stop(mut self) {
        for deployment in self.deployments.values_mut() {
            for pod in &mut deployment.pods {
                pod.process.stop("TERM");
            }
        }
        for database in std::mem::take(&mut self.databases).into_values() {
            database.remove().await;
        }
    }
}

/// Faults until `until`: crashes, broker cuts and pauses, a read-only database; returns what was done.
async fn inject_faults(
    fleet: &mut Fleet,
    random: &mut Random,
    until: Instant,
    backend: Backend,
) -> Vec<String> {
    let mut faults = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500 + random.below(1500))).await;
        let outage = Duration::from_millis(1000 + random.below(5000));
        let fault = match random.below(if backend == Backend::Postgres { 4 } else { 3 }) {
            0 => {
                let name = *random.pick(&PLATFORM);
                let index = random.below(4) as usize;
                fleet
                    .crash(name, index, Duration::from_millis(random.below(2000)))
                    .await
            }
            1 => {
                fleet.broker.cut();
                tokio::time::sleep(outage).await;
                fleet.broker.restore();
                format!("broker unreachable for {} ms", outage.as_millis())
            }
            2 => {
                fleet.broker.pause();
                tokio::time::sleep(outage).await;
                fleet.broker.resume();
                format!("broker paused for {} ms", outage.as_millis())
            }
            _ => {
                let database = &fleet.databases["shared"];
                database.set_read_only(true).await;
                tokio::time::sleep(outage).await;
                database.set_read_only(false).await;
                format!("database read-only for {} ms", outage.as_millis())
            }
        };
        eprintln!("fault: {fault}");
        faults.push(fault);
    }
    faults
}

async fn processes(backend: Backend, replicas: usize, size: RunSize) {
    let mut fleet = Fleet::start(backend, replicas).await;
    let clients = Clients::new(fleet.gateway());
    stock_the_kitchen(&clients).await;
    let mut random = Random::new(size.seed);
    let mut faults = Vec::new();

    if replicas > 1 {
        // A rolling restart of every service under load, which must not cost a single request.
        let stop = tokio_util::sync::CancellationToken::new();
        let load = spawn_clients(&clients, &mut random, size.clients, stop.clone());
        for name in PLATFORM {
            for _ in 0..replicas {
                let step = fleet.replace_oldest(name).await;
                eprintln!("rollout: {step}");
                faults.push(step);
            }
        }
        stop.cancel();
        load.await.unwrap();
        let ledger = clients.ledger.lock().unwrap();
        let failed: u64 = ledger
            .outcomes
            .iter()
            .filter(|(outcome, _)| outcome.starts_with('5') || *outcome == "connection")
            .map(|(_, count)| count)
            .sum();
        let answered: u64 = ledger.outcomes.values().sum();
        eprintln!(
            "rolling restart: {answered} requests, {failed} answered 5xx or not at all: {:?}; {:?}",
            ledger.outcomes,
            ledger.connection_errors.iter().take(5).collect::<Vec<_>>()
        );
        assert_eq!(
            failed, 0,
            "a rolling restart costs no request: {:?}",
            ledger.outcomes
        );
    }

    let until = Instant::now() + Duration::from_secs(size.seconds);
    let client_task = spawn_clients(
        &clients,
        &mut random,
        size.clients,
        stop_after(Duration::from_secs(size.seconds)),
    );
    faults.extend(inject_faults(&mut fleet, &mut random, until, backend).await);
    client_task.await.unwrap();

    let payment_store = fleet.database_url("payment").to_owned();
    let schema = (backend == Backend::Postgres).then_some("payment");
    let report =
        settle_and_check(&clients, SETTLE, || stored_payments(&payment_store, schema)).await;
    let name = format!("{backend:?}, {replicas} per service");
    eprintln!("{}", summary(&name, &size, &clients, &faults, &report));
    if !report.holds() {
        let kept = std::env::temp_dir().join(format!("fault-injection-logs-{}", unique("")));
        std::fs::create_dir_all(&kept).unwrap();
        for entry in std::fs::read_dir(fleet.directory.path()).unwrap().flatten() {
            std::fs::copy(entry.path(), kept.join(entry.file_name())).ok();
        }
        eprintln!("service logs kept in {}", kept.display());
    }
    assert!(report.holds(), "{}", report.render());
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_shared_postgres_database_with_two_of_every_service_the_invariants_hold_through_a_rollout_and_faults()
 {
    processes(Backend::Postgres, 2, RunSize::from_environment(25, 4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_with_one_of_every_service_the_invariants_hold_through_faults() {
    processes(Backend::Sqlite, 1, RunSize::from_environment(20, 3)).await;
}

/// `food-delivery up` on its data directory.
struct Up {
    child: Option<Child>,
    port: u16,
    data_dir: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Up {
    fn start(&mut self) {
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(support::BINARY)
            .args(["up", "--port", &self.port.to_string(), "--data-dir"])
            .arg(&self.data_dir)
            .envs([
                ("KITCHEN_AUTO_START_AFTER_MS", "300"),
                ("KITCHEN_COOK_TIME_MS", "300"),
                ("DELIVERY_RIDE_TIME_MS", "300"),
                ("PAYMENT_PENDING_DEADLINE_MS", PAYMENT_DEADLINE_MS),
                ("LOG_LEVEL", "warn"),
            ])
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_up_the_invariants_hold_through_crashes_and_impatient_clients() {
    let size = RunSize::from_environment(20, 3);
    let directory = tempfile::tempdir().unwrap();
    let mut up = Up {
        child: None,
        port: free_port(),
        data_dir: directory.path().join("data"),
        log: directory.path().join("up.log"),
    };
    let base = format!("http://127.0.0.1:{}", up.port);
    up.start();
    wait_ready(&format!("{base}/health/ready"), "up to become ready").await;
    let clients = Clients::new(base.clone());
    stock_the_kitchen(&clients).await;
    let mut random = Random::new(size.seed);
    let until = Instant::now() + Duration::from_secs(size.seconds);
    let client_task = spawn_clients(
        &clients,
        &mut random,
        size.clients,
        stop_after(Duration::from_secs(size.seconds)),
    );
    let mut faults = Vec::new();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(2000 + random.below(4000))).await;
        up.kill();
        let down = Duration::from_millis(random.below(1000));
        tokio::time::sleep(down).await;
        up.start();
        wait_ready(&format!("{base}/health/ready"), "up to come back").await;
        faults.push(format!(
            "up killed, restarted after {} ms",
            down.as_millis()
        ));
    }
    client_task.await.unwrap();
    let payment_store = format!("sqlite://{}/payment.db", up.data_dir.display());
    let report = settle_and_check(&clients, SETTLE, || stored_payments(&payment_store, None)).await;
    eprintln!("{}", summary("up", &size, &clients, &faults, &report));
    if !report.holds() {
        let log = std::fs::read_to_string(&up.log).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("ERROR")).take(20) {
            eprintln!("{line}");
        }
    }
    assert!(report.holds(), "{}", report.render());
}
