//! What the platform costs at rest and what the gateway adds: idle resident memory of every `serve` process and
//! of `up`, time from process start to ready for each service, and request latency through the gateway against
//! the same requests sent straight to the service, interleaved in one run.
//!
//! `cargo bench -p food-delivery --bench footprint`. Uses the broker in `KAFKA_BOOTSTRAP_SERVERS` or starts an
//! in-memory tansu; `FOOTPRINT_REQUESTS` (5000) sets how many requests each latency series sends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_contract::Component;
use food_delivery_testkit::{BenchBroker, free_port, percentile, resident_kib};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_food-delivery");
/// Start order: the kitchen first (it announces the menu order prices from), the gateway last.
const SERVICES: [&str; 8] = [
    Component::Kitchen.name(),
    Component::Payment.name(),
    Component::Order.name(),
    Component::Delivery.name(),
    Component::Stamp.name(),
    Component::Customer.name(),
    Component::Mypage.name(),
    Component::Gateway.name(),
];
/// One HTTP/1.1 GET on a kept-alive connection; returns the status code. Hand-written so the client's own cost
/// is the same tiny constant on both sides of the comparison.
fn get(connection: &mut TcpStream, path: &str, buffer: &mut Vec<u8>) -> u16 {
    write!(connection, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").unwrap();
    buffer.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let read = connection.read(&mut chunk).unwrap();
        assert!(read > 0, "connection closed");
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|value| value.trim().parse().unwrap())
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let read = connection.read(&mut chunk).unwrap();
                buffer.extend_from_slice(&chunk[..read]);
            }
            return head[9..12].parse().unwrap();
        }
    }
}

fn wait_ready(port: u16) -> Duration {
    let started = Instant::now();
    let mut buffer = Vec::new();
    loop {
        if let Ok(mut connection) = TcpStream::connect(("127.0.0.1", port))
            && get(&mut connection, "/health/ready", &mut buffer) == 200
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "port {port} never became ready"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn spawn(args: &[&str], environment: &[(String, String)]) -> Child {
    Command::new(BINARY)
        .args(args)
        .envs(environment.iter().map(|(key, value)| (key, value)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

fn latency_line(label: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    let p99 = percentile(&samples, 0.99);
    println!(
        "  {label:<28} p50 {:>7.1} µs   p90 {:>7.1} µs   p99 {:>7.1} µs",
        p50.as_secs_f64() * 1e6,
        percentile(&samples, 0.9).as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    (p50, p99)
}

fn main() {
    let requests: usize = std::env::var("FOOTPRINT_REQUESTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(5000);
    let broker = BenchBroker::start();
    let directory = tempfile::tempdir().unwrap();
    let ports: BTreeMap<&str, u16> = SERVICES.iter().map(|name| (*name, free_port())).collect();
    let routes = food_delivery_gateway::domain::routes_setting(|service| {
        ports
            .get(service.name())
            .map(|port| format!("http://127.0.0.1:{port}"))
    });

    println!(
        "time from process start to ready (services started one after another), then idle RSS:"
    );
    let mut children = BTreeMap::new();
    let mut ready_times = BTreeMap::new();
    for name in SERVICES {
        let mut environment: Vec<(String, String)> = [
            ("HTTP_HOST", "127.0.0.1".to_owned()),
            ("HTTP_PORT", ports[name].to_string()),
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap.clone()),
            (
                "KAFKA_TOPIC_PREFIX",
                format!("footprint{}", std::process::id()),
            ),
            ("LOG_LEVEL", "warn".to_owned()),
            (
                "PAYMENT_URL",
                format!("http://127.0.0.1:{}", ports[Component::Payment.name()]),
            ),
            ("GATEWAY_ROUTES", routes.clone()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        if name != Component::Gateway.name() {
            let database = directory.path().join(format!("{name}.db"));
            environment.push((
                "DATABASE_URL".into(),
                format!("sqlite://{}", database.display()),
            ));
        }
        let child = spawn(&["serve", name], &environment);
        ready_times.insert(name, wait_ready(ports[name]));
        children.insert(name, child);
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut total = 0;
    for name in SERVICES {
        let rss = resident_kib(children[name].id());
        total += rss;
        println!(
            "  serve {name:<9} ready in {:>6.0} ms   idle RSS {:>6.1} MiB",
            ready_times[name].as_secs_f64() * 1e3,
            rss as f64 / 1024.0
        );
    }
    println!(
        "  all eight serve processes: {:.1} MiB",
        total as f64 / 1024.0
    );

    println!(
        "gateway overhead: GET /stamps/c-1 straight to stamp vs GET /api/stamps/c-1 through the gateway,"
    );
    println!("  one kept-alive connection each, {requests} requests each, interleaved:");
    let mut direct = TcpStream::connect(("127.0.0.1", ports[Component::Stamp.name()])).unwrap();
    let mut through = TcpStream::connect(("127.0.0.1", ports[Component::Gateway.name()])).unwrap();
    direct.set_nodelay(true).unwrap();
    through.set_nodelay(true).unwrap();
    let mut buffer = Vec::new();
    for _ in 0..500 {
        assert_eq!(get(&mut direct, "/stamps/c-1", &mut buffer), 200);
        assert_eq!(get(&mut through, "/api/stamps/c-1", &mut buffer), 200);
    }
    let mut direct_samples = Vec::with_capacity(requests);
    let mut gateway_samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        get(&mut direct, "/stamps/c-1", &mut buffer);
        direct_samples.push(started.elapsed());
        let started = Instant::now();
        get(&mut through, "/api/stamps/c-1", &mut buffer);
        gateway_samples.push(started.elapsed());
    }
    let (direct_p50, direct_p99) = latency_line("direct to stamp", direct_samples);
    let (gateway_p50, gateway_p99) = latency_line("through the gateway", gateway_samples);
    println!(
        "  overhead                     p50 {:>+7.1} µs              p99 {:>+7.1} µs",
        (gateway_p50.as_secs_f64() - direct_p50.as_secs_f64()) * 1e6,
        (gateway_p99.as_secs_f64() - direct_p99.as_secs_f64()) * 1e6
    );
    for (_, child) in children {
        stop(child);
    }

    println!("food-delivery up (in-process bus):");
    let up_port = free_port();
    let data_dir = directory.path().join("up");
    let started = Instant::now();
    let up = spawn(
        &[
            "up",
            "--port",
            &up_port.to_string(),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        &[],
    );
    wait_ready(up_port);
    let ready = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    println!(
        "  up (8 services, 1 process)  ready in {:>6.0} ms   idle RSS {:>6.1} MiB",
        ready.as_secs_f64() * 1e3,
        resident_kib(up.id()) as f64 / 1024.0
    );
    stop(up);
}
