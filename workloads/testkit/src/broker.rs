use crate::isolation::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared broker started by `scripts/test.sh`.
pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS").expect(
        "KAFKA_BOOTSTRAP_SERVERS is not set: these tests need the real broker; run them with scripts/test.sh",
    )
}

/// Kafka settings for tests, with topics of `topic_partitions` partitions.
#[cfg(feature = "kit")]
pub fn kafka_config(
    bootstrap_servers: String,
    topic_partitions: i32,
) -> food_delivery_kit::config::KafkaConfig {
    food_delivery_kit::config::KafkaConfig {
        bootstrap_servers,
        topic_partitions,
        replication_factor: 1,
        fetch_wait_max: Duration::from_millis(20),
        member_name: None,
    }
}

/// The broker binary: `TANSU_BIN`, or `tansu` on the PATH.
pub fn tansu_binary() -> PathBuf {
    std::env::var_os("TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("tansu"))
}

/// A broker of the test's own behind a proxy the test can cut. Clients only know the proxy's address, so
/// cutting it is what a broker outage looks like to them: every connection drops and new ones are refused.
///
/// The broker itself keeps running: tansu 0.6's durable (libsql) storage panics when a consumer group from
/// before a restart heartbeats again ("more or less than one row"), so a kill-and-restart cannot be tested on it.
pub struct BrokerBehindProxy {
    proxy_port: u16,
    reachable: tokio::sync::watch::Sender<bool>,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl BrokerBehindProxy {
    /// Starts the broker (in memory) and the proxy in front of it; returns once both listen.
    pub async fn start() -> Self {
        let broker_port = free_port();
        let proxy_port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(tansu_binary())
            .arg("broker")
            .args(["--listener-url", &format!("tcp://127.0.0.1:{broker_port}")])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{proxy_port}"),
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("the tansu broker must be installed (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", broker_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private broker did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (reachable, watcher) = tokio::sync::watch::channel(true);
        tokio::spawn(run_proxy(proxy_port, broker_port, watcher));
        let proxy = Self {
            proxy_port,
            reachable,
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", proxy.proxy_port)).is_err() {
            assert!(Instant::now() < deadline, "proxy did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    /// The bootstrap servers clients are given: the proxy's address.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.proxy_port)
    }

    /// The broker becomes unreachable: open connections drop, new ones are refused.
    pub fn cut(&self) {
        self.reachable.send_replace(false);
    }

    /// The broker is reachable again.
    pub fn restore(&self) {
        self.reachable.send_replace(true);
    }

    /// The broker process stops (SIGSTOP): connections stay open but nothing answers, as with a broker stuck in a
    /// long pause or behind a partition that drops packets.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// The paused broker runs again (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for BrokerBehindProxy {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
            eprintln!("--- private broker log: errors and panics ---");
            for line in log
                .lines()
                .filter(|line| line.contains("ERROR") || line.contains("panicked"))
                .take(40)
            {
                eprintln!("{line}");
            }
        }
    }
}

async fn run_proxy(
    proxy_port: u16,
    broker_port: u16,
    mut reachable: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        // While cut, nothing listens on the port, so connecting is refused as with a stopped broker.
        while !*reachable.borrow_and_update() {
            if reachable.changed().await.is_err() {
                return;
            }
        }
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", proxy_port)).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        loop {
            tokio::select! {
                changed = reachable.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !*reachable.borrow() {
                        break;
                    }
                }
                accepted = listener.accept() => {
                    let Ok((mut client, _)) = accepted else { continue };
                    let mut cut = reachable.clone();
                    tokio::spawn(async move {
                        let Ok(mut broker) = tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => {}
                            _ = cut.wait_for(|reachable| !*reachable) => {}
                        }
                    });
                }
            }
        }
    }
}

/// A broker for benchmarks: the one `KAFKA_BOOTSTRAP_SERVERS` names, or a tansu of its own (in memory) that is
/// stopped when this is dropped.
pub struct BenchBroker {
    /// The bootstrap servers of the broker.
    pub bootstrap: String,
    child: Option<Child>,
}

impl BenchBroker {
    /// Uses the shared broker when there is one, or starts one; returns once it listens.
    pub fn start() -> Self {
        if let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            return Self {
                bootstrap,
                child: None,
            };
        }
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu must be installed (scripts/test.sh installs it)");
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            bootstrap: format!("127.0.0.1:{port}"),
            child: Some(child),
        }
    }
}

impl Drop for BenchBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}
