//! The end-to-end order rate `food-delivery up` keeps pace with, as a curve: an open-loop client offers orders at a
//! fixed rate (it does not slow down when the platform does, as real customers do not), walking the rate up in
//! steps. Per step: offered and achieved placements, placement p50/p99, completion (placed to DELIVERED, from the
//! order service's own timestamps) p50/p99/max, orders not finished, errors, the process's CPU and memory. Beside
//! it, the same process's `/health/live` rate at 50 connections (the ceiling of its HTTP stack). Writes the chart
//! of completion p99 against offered rate to `KNEE_CHART` (an SVG). The whole walk runs once per consumer batch
//! size (`CONSUMER_BATCH_MAX`; 1 is one transaction per event, as before batching), so the ratio comes from one run.
//!
//! `cargo bench -p food-delivery --bench knee`; `KNEE_RATES` (`50,100,200,400`), `KNEE_STEP_SECONDS` (10),
//! `KNEE_BATCHES` (`1,64`), `KNEE_CHART` (`target/knee.svg`), `KNEE_PLATFORMS` (`up`; also `serve-sqlite`: the
//! eight services as separate `serve` processes, each with its own SQLite file, over a tansu broker (the one in
//! `KAFKA_BOOTSTRAP_SERVERS`, or one of its own); `serve-postgres`: the same on one shared PostgreSQL database
//! (`TEST_POSTGRES_URL`), a schema per service, as the production example runs). Cooking and riding take no time;
//! durable commits stay on. CPU and memory are the sum over the platform's processes (the broker's not included).
//! `KNEE_BASELINE=/path/to/an/earlier/food-delivery` walks that binary too, just before each walk of this one, so
//! a change is compared with what it changed within one run (the machine's speed changes from hour to hour).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_contract::Component;
use food_delivery_testkit::{
    Backend, BenchBroker, TestDatabase, free_port, percentile, resident_kib, unique,
};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_food-delivery");
/// Orders of one customer the order service lists at most (`GET /orders?customerId=` has a limit of 100).
const ORDERS_PER_CUSTOMER: usize = 100;
/// How long a step's orders may take to finish after the step before the unfinished ones are counted.
const DRAIN: Duration = Duration::from_secs(60);

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// One step's figures.
struct Step {
    offered: f64,
    achieved: f64,
    placement_p50: Duration,
    placement_p99: Duration,
    completion_p50: Duration,
    completion_p99: Duration,
    completion_max: Duration,
    unfinished: usize,
    errors: usize,
    /// Failed placements by answer (`503`, `no answer`, ...).
    errors_by_answer: std::collections::BTreeMap<String, usize>,
    cpu_percent: f64,
    rss_mib: f64,
}

/// The CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields.get(11..13).map_or(0, |times| {
        times
            .iter()
            .filter_map(|time| time.parse::<u64>().ok())
            .sum()
    });
    // The kernel's clock ticks per second (USER_HZ) are 100 on Linux.
    Duration::from_millis(ticks * 10)
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{base}/health/ready")).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "up did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `/health/live` answered per second with `connections` closed-loop clients for `length`.
async fn hello_rate(base: &str, connections: usize, length: Duration) -> f64 {
    let client = reqwest::Client::new();
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Instant::now() + length;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, done, url) = (client.clone(), done.clone(), format!("{base}/health/live"));
            tokio::spawn(async move {
                while Instant::now() < stop {
                    if client.get(&url).send().await.is_ok() {
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(std::sync::atomic::Ordering::Relaxed) as f64 / length.as_secs_f64()
}

async fn run_step(
    client: &reqwest::Client,
    base: &str,
    pids: &[u32],
    step: usize,
    rate: u32,
    length: Duration,
) -> Step {
    let placements: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let errors: Arc<Mutex<std::collections::BTreeMap<String, usize>>> = Arc::default();
    let cpu_before: Duration = pids.iter().map(|pid| cpu_time(*pid)).sum();
    let started = Instant::now();
    // Ticks of 10 ms, each sending its share of the rate: open loop, whatever the answers take.
    let ticks = u32::try_from(length.as_millis() / 10).unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0usize;
    let mut requests = Vec::new();
    for index in 0..ticks {
        tick.tick().await;
        let due = usize::try_from(u64::from(rate) * u64::from(index + 1) / 100).unwrap();
        while sent < due {
            let customer = format!("knee-{step}-{}", sent / ORDERS_PER_CUSTOMER);
            let (client, placements, errors) = (client.clone(), placements.clone(), errors.clone());
            let url = format!("{base}/api/orders");
            let key = format!("knee-{step}-{sent}");
            requests.push(tokio::spawn(async move {
                let asked = Instant::now();
                let answer = client
                    .post(url)
                    .header("idempotency-key", key)
                    .json(&serde_json::json!({"customerId": customer, "items": [{"menuId": "knee", "qty": 1}]}))
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status().as_u16() == 201 => {
                        placements.lock().unwrap().push(asked.elapsed());
                    }
                    failed => {
                        let answer = match failed {
                            Ok(response) => response.status().as_u16().to_string(),
                            Err(_) => "no answer".to_owned(),
                        };
                        *errors.lock().unwrap().entry(answer).or_default() += 1;
                    }
                }
            }));
            sent += 1;
        }
    }
    for request in requests {
        request.await.unwrap();
    }
    let placing = started.elapsed();
    let cpu_after: Duration = pids.iter().map(|pid| cpu_time(*pid)).sum();
    let cpu_percent = (cpu_after - cpu_before).as_secs_f64() / placing.as_secs_f64() * 100.0;
    let rss_mib = pids.iter().map(|pid| resident_kib(*pid)).sum::<u64>() as f64 / 1024.0;
    // Completion from the order service's own clock: placed (recorded pending) to DELIVERED.
    let customers = sent.div_ceil(ORDERS_PER_CUSTOMER);
    let drain_until = Instant::now() + DRAIN;
    let (completions, unfinished) = loop {
        let mut completions = Vec::new();
        let mut unfinished = 0;
        for customer in 0..customers {
            let listed = client
                .get(format!(
                    "{base}/api/orders?customerId=knee-{step}-{customer}"
                ))
                .send()
                .await;
            let orders: Option<serde_json::Value> = match listed {
                Ok(response) if response.status().is_success() => response.json().await.ok(),
                _ => None,
            };
            // A platform still swamped may not answer the listing in time: its orders count as unfinished until
            // it does.
            let Some(orders) = orders.as_ref().and_then(serde_json::Value::as_array) else {
                unfinished += ORDERS_PER_CUSTOMER.min(sent - customer * ORDERS_PER_CUSTOMER);
                continue;
            };
            for order in orders {
                match order["status"].as_str().unwrap() {
                    "DELIVERED" => completions.push(Duration::from_millis(
                        u64::try_from(
                            order["updatedAt"].as_i64().unwrap()
                                - order["placedAt"].as_i64().unwrap(),
                        )
                        .unwrap_or(0),
                    )),
                    "CANCELLED" | "REJECTED" => {}
                    _ => unfinished += 1,
                }
            }
        }
        if unfinished == 0 || Instant::now() > drain_until {
            break (completions, unfinished);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // One lock, outside the struct below: a guard in a struct literal lives to the end of the statement.
    let errors_by_answer = errors.lock().unwrap().clone();
    let mut placements = placements.lock().unwrap().clone();
    placements.sort_unstable();
    let mut completions = completions;
    completions.sort_unstable();
    Step {
        offered: f64::from(rate),
        achieved: placements.len() as f64 / placing.as_secs_f64(),
        placement_p50: percentile(&placements, 0.50),
        placement_p99: percentile(&placements, 0.99),
        completion_p50: percentile(&completions, 0.50),
        completion_p99: percentile(&completions, 0.99),
        completion_max: completions.last().copied().unwrap_or_default(),
        unfinished,
        errors: errors_by_answer.values().sum(),
        errors_by_answer,
        cpu_percent,
        rss_mib,
    }
}

/// Completion p99 (seconds) against offered rate, as an SVG line chart, one line per series.
fn chart(series: &[(String, Vec<Step>)], title: &str) -> String {
    let (width, height, margin) = (640.0, 400.0, 60.0);
    let steps: Vec<&Step> = series.iter().flat_map(|(_, steps)| steps).collect();
    let max_rate = steps.iter().map(|step| step.offered).fold(1.0, f64::max);
    let max_p99 = steps
        .iter()
        .map(|step| step.completion_p99.as_secs_f64())
        .fold(0.1, f64::max)
        * 1.15;
    let x = |rate: f64| margin + rate / max_rate * (width - 2.0 * margin);
    let y = |seconds: f64| height - margin - seconds / max_p99 * (height - 2.0 * margin);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">{title}</text>\n\
         <line x1=\"{margin}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{margin}\" y1=\"{margin}\" x2=\"{margin}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">offered orders/s</text>\n\
         <text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">completion p99 (s)</text>\n",
        width / 2.0,
        height - margin,
        width - margin,
        height - margin,
        height - margin,
        width / 2.0,
        height - 16.0,
        height / 2.0,
        height / 2.0,
    );
    let colours = ["#c0392b", "#2471a3", "#229954", "#7d3c98"];
    for (index, (name, steps)) in series.iter().enumerate() {
        let colour = colours[index % colours.len()];
        let points: Vec<String> = steps
            .iter()
            .map(|step| {
                format!(
                    "{:.1},{:.1}",
                    x(step.offered),
                    y(step.completion_p99.as_secs_f64())
                )
            })
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>\n",
            points.join(" "),
            margin + 10.0,
            margin + 16.0 * (index as f64 + 1.0),
        ));
        for step in steps {
            let (px, py) = (x(step.offered), y(step.completion_p99.as_secs_f64()));
            svg.push_str(&format!(
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\" fill=\"{colour}\"/>\n\
                 <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{colour}\">{:.2}</text>\n",
                py - 8.0,
                step.completion_p99.as_secs_f64()
            ));
        }
    }
    let mut rates: Vec<f64> = steps.iter().map(|step| step.offered).collect();
    rates.dedup();
    for rate in rates {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{rate:.0}</text>\n",
            x(rate),
            height - margin + 16.0
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// Where the orders go: the whole platform in one process, or a process per service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    /// `food-delivery up`: one process, SQLite files, the in-process bus.
    Up,
    /// `food-delivery serve <service>` for each service over a Kafka broker, on `Backend`'s stores.
    Serve(Backend),
}

impl Platform {
    fn parse(name: &str) -> Self {
        match name {
            "up" => Self::Up,
            "serve-sqlite" => Self::Serve(Backend::Sqlite),
            "serve-postgres" => Self::Serve(Backend::Postgres),
            other => panic!(
                "KNEE_PLATFORMS: unknown platform {other} (up, serve-sqlite, serve-postgres)"
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Serve(Backend::Sqlite) => "serve-sqlite",
            Self::Serve(Backend::Postgres) => "serve-postgres",
        }
    }
}

/// Settings every walk gives the services: no waiting in the saga, one dish with endless stock.
fn saga_settings(batch: &str) -> Vec<(String, String)> {
    [
        ("LOG_LEVEL", "error"),
        ("CONSUMER_BATCH_MAX", batch),
        // `up` cooks and rides unattended by default; a `serve`d kitchen and delivery wait for people unless told.
        ("KITCHEN_AUTO_COOK", "true"),
        ("DELIVERY_AUTO_RIDE", "true"),
        ("KITCHEN_AUTO_START_AFTER_MS", "0"),
        ("KITCHEN_COOK_TIME_MS", "0"),
        ("DELIVERY_RIDE_TIME_MS", "0"),
        (
            "KITCHEN_MENU",
            r#"[{"menuId":"knee","name":"Knee soup","price":500,"stock":1000000}]"#,
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect()
}

/// A started platform: its processes and what they need to live (data directory, broker, database).
struct Running {
    children: Vec<Child>,
    port: u16,
    _directory: tempfile::TempDir,
    _broker: Option<BenchBroker>,
    _database: Option<TestDatabase>,
}

fn spawn(binary: &str, args: &[&str], settings: &[(String, String)]) -> Child {
    Command::new(binary)
        .args(args)
        .envs(settings.iter().map(|(key, value)| (key, value)))
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Starts `platform` with consumer batches of `batch` events at most.
async fn start(binary: &str, platform: Platform, batch: &str) -> Running {
    let directory = tempfile::tempdir().unwrap();
    let settings = saga_settings(batch);
    let Platform::Serve(backend) = platform else {
        let port = free_port();
        let up = spawn(
            binary,
            &[
                "up",
                "--port",
                &port.to_string(),
                "--data-dir",
                directory.path().to_str().unwrap(),
            ],
            &settings,
        );
        return Running {
            children: vec![up],
            port,
            _directory: directory,
            _broker: None,
            _database: None,
        };
    };
    let broker = BenchBroker::start();
    // One database for all services on PostgreSQL (each in its own schema, the default), as in production.
    let database = match backend {
        Backend::Postgres => Some(TestDatabase::create(backend).await),
        Backend::Sqlite => None,
    };
    let ports: Vec<(Component, u16)> = Component::ALL
        .iter()
        .map(|component| (*component, free_port()))
        .collect();
    let port_of = |wanted: Component| {
        ports
            .iter()
            .find(|(component, _)| *component == wanted)
            .map(|(_, port)| *port)
            .unwrap()
    };
    let routes = food_delivery_gateway::domain::routes_setting(|component| {
        Some(format!("http://127.0.0.1:{}", port_of(component)))
    });
    let prefix = unique("knee");
    // The kitchen first: it announces the menu the order service prices from.
    let mut order: Vec<Component> = Component::ALL.to_vec();
    order.sort_by_key(|component| *component != Component::Kitchen);
    let mut children = Vec::new();
    for component in order {
        let mut environment = settings.clone();
        environment.extend(
            [
                ("HTTP_HOST", "127.0.0.1".to_owned()),
                ("HTTP_PORT", port_of(component).to_string()),
                ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap.clone()),
                ("KAFKA_TOPIC_PREFIX", prefix.clone()),
                (
                    "PAYMENT_URL",
                    format!("http://127.0.0.1:{}", port_of(Component::Payment)),
                ),
                (
                    "INTERNAL_TOKEN",
                    "knee-internal-token-of-at-least-32-characters".to_owned(),
                ),
                ("GATEWAY_ROUTES", routes.clone()),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value)),
        );
        if component.stateful() {
            let url = match &database {
                Some(database) => database.url.clone(),
                None => format!(
                    "sqlite://{}",
                    directory.path().join(format!("{component}.db")).display()
                ),
            };
            environment.push(("DATABASE_URL".to_owned(), url));
        }
        children.push(spawn(binary, &["serve", component.name()], &environment));
        wait_ready(
            &reqwest::Client::new(),
            &format!("http://127.0.0.1:{}", port_of(component)),
        )
        .await;
    }
    Running {
        children,
        port: port_of(Component::Gateway),
        _directory: directory,
        _broker: Some(broker),
        _database: database,
    }
}

/// Starts `platform` with consumer batches of `batch` events at most and walks the rates up; the steps' figures.
fn walk(
    binary: &str,
    rates: &[u32],
    length: Duration,
    batch: &str,
    platform: Platform,
) -> Vec<Step> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut running = runtime.block_on(start(binary, platform, batch));
    let pids: Vec<u32> = running.children.iter().map(Child::id).collect();
    let port = running.port;
    let base = format!("http://127.0.0.1:{port}");
    let steps = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        wait_ready(&client, &base).await;
        // Let the order service learn the menu before the first order.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let hello = hello_rate(&base, 50, Duration::from_secs(3)).await;
        println!("same process (the gateway's), GET /health/live at 50 connections: {hello:.0} requests/s");
        println!(
            "{:>8} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} {:>6} {:>8}",
            "offered", "achieved", "place p50", "place p99", "done p50", "done p99", "done max", "unfinished", "errors", "cpu %", "rss MiB"
        );
        let mut steps = Vec::new();
        for (index, rate) in rates.iter().enumerate() {
            let step = run_step(&client, &base, &pids, index, *rate, length).await;
            println!(
                "{:>8.0} {:>9.1} {:>10.1?} {:>10.1?} {:>10.1?} {:>10.1?} {:>10.1?} {:>10} {:>7} {:>6.0} {:>8.1}",
                step.offered,
                step.achieved,
                step.placement_p50,
                step.placement_p99,
                step.completion_p50,
                step.completion_p99,
                step.completion_max,
                step.unfinished,
                step.errors,
                step.cpu_percent,
                step.rss_mib,
            );
            if !step.errors_by_answer.is_empty() {
                println!("         errors by answer: {:?}", step.errors_by_answer);
            }
            steps.push(step);
        }
        steps
    });
    for child in &mut running.children {
        let _ = child.kill();
        let _ = child.wait();
    }
    steps
}

fn main() {
    let rates: Vec<u32> = setting("KNEE_RATES", "50,100,200,400")
        .split(',')
        .map(|rate| rate.trim().parse().unwrap())
        .collect();
    let length = Duration::from_secs(setting("KNEE_STEP_SECONDS", "10").parse().unwrap());
    let chart_path = setting("KNEE_CHART", "target/knee.svg");
    let platforms: Vec<Platform> = setting("KNEE_PLATFORMS", "up")
        .split(',')
        .map(|name| Platform::parse(name.trim()))
        .collect();
    // An earlier build to compare with in the same run (the machine's speed changes from hour to hour).
    let baseline = std::env::var("KNEE_BASELINE").ok();
    let binaries: Vec<(&str, &str)> = baseline
        .as_deref()
        .map(|path| ("baseline", path))
        .into_iter()
        .chain([("", BINARY)])
        .collect();
    let mut series = Vec::new();
    for platform in &platforms {
        for batch in setting("KNEE_BATCHES", "1,64").split(',') {
            for (label, binary) in &binaries {
                println!(
                    "\n== {}, CONSUMER_BATCH_MAX={batch} {label} ==",
                    platform.name()
                );
                let mut name = format!("batch {batch}");
                if platforms.len() > 1 {
                    name = format!("{}, {name}", platform.name());
                }
                if !label.is_empty() {
                    name = format!("{name}, {label}");
                }
                series.push((name, walk(binary, &rates, length, batch.trim(), *platform)));
            }
        }
    }
    let names: Vec<&str> = platforms.iter().map(|platform| platform.name()).collect();
    std::fs::write(
        &chart_path,
        chart(
            &series,
            &format!(
                "food-delivery {}: completion p99 against offered rate",
                names.join(" / ")
            ),
        ),
    )
    .unwrap();
    println!("chart: {chart_path}");
}
