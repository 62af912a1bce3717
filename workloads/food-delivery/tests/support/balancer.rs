//! A Kubernetes Service as kube-proxy makes one: a stable port in front of a service's instances that spreads
//! TCP connections (not requests) round robin over the endpoints that are ready and not terminating. Readiness is
//! probed as the kubelet does it, so an instance that turns unready or dies keeps receiving connections until the
//! next probe notices: callers see refused and reset connections exactly where a real cluster shows them.

use food_delivery_testkit::free_port;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often each endpoint's readiness is probed (the operator's readinessProbe period is longer; shorter here
/// only makes the test faster, not kinder: a dead endpoint is still routed to until a probe fails).
const PROBE_PERIOD: Duration = Duration::from_millis(500);
/// As the operator's readinessProbe (operator/src/build/deployment.rs): a probe may take 3 s, and an endpoint turns
/// unready after 3 failures in a row, not after one slow answer on a loaded machine (one failure was enough here,
/// and the gateway's port went away 4 s into a CI run while the other fault-injection run loaded the machine).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
const FAILURE_THRESHOLD: u32 = 3;

#[derive(Debug, Clone)]
struct Endpoint {
    instance: u64,
    port: u16,
    ready: bool,
    terminating: bool,
    /// Probes failed in a row.
    failures: u32,
}

/// One service's stable address.
pub struct Balancer {
    pub port: u16,
    endpoints: Arc<Mutex<Vec<Endpoint>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Balancer {
    /// Listens on a free port; routes to nothing until endpoints are added. The port comes from
    /// [`free_port`], outside the kernel's ephemeral range: the balancer lets go of it whenever no endpoint is
    /// ready (to refuse connections, as kube-proxy does) and binds it again later, and an ephemeral port let go
    /// of can become the local port of any outgoing connection meanwhile (then the Service never came back).
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port()))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoints: Arc<Mutex<Vec<Endpoint>>> = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(accept(listener, endpoints.clone(), stop.clone()));
        tokio::spawn(probe(endpoints.clone(), stop.clone()));
        Self {
            port,
            endpoints,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new pod's endpoint: routed to once a readiness probe passes.
    pub fn add(&self, instance: u64, port: u16) {
        self.endpoints.lock().unwrap().push(Endpoint {
            instance,
            port,
            ready: false,
            terminating: false,
            failures: 0,
        });
    }

    /// The pod is being deleted: its endpoint stops receiving new connections (EndpointSlice `terminating`).
    pub fn terminate(&self, instance: u64) {
        let mut endpoints = self.endpoints.lock().unwrap();
        for endpoint in endpoints.iter_mut().filter(|e| e.instance == instance) {
            endpoint.terminating = true;
        }
    }

    /// The pod is gone.
    pub fn remove(&self, instance: u64) {
        self.endpoints
            .lock()
            .unwrap()
            .retain(|endpoint| endpoint.instance != instance);
    }

    /// Whether the instance's endpoint receives connections.
    pub fn routes_to(&self, instance: u64) -> bool {
        self.endpoints
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.instance == instance && e.ready && !e.terminating)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn routable(endpoints: &Mutex<Vec<Endpoint>>) -> Vec<u16> {
    endpoints
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.ready && !e.terminating)
        .map(|e| e.port)
        .collect()
}

async fn accept(
    listener: tokio::net::TcpListener,
    endpoints: Arc<Mutex<Vec<Endpoint>>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let port = listener.local_addr().unwrap().port();
    let mut listener = Some(listener);
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        // A Service without ready endpoints refuses connections (kube-proxy rejects them), so nothing listens
        // then; the port is bound again as soon as an endpoint is ready.
        if routable(&endpoints).is_empty() {
            listener = None;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(20)) => continue,
            }
        }
        let bound = match listener.take() {
            Some(bound) => bound,
            None => match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(bound) => bound,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = bound.accept() => accepted,
            // Look again at the endpoints now and then, so a Service that lost them all stops accepting.
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                listener = Some(bound);
                continue;
            }
        };
        listener = Some(bound);
        let Ok((mut client, _)) = accepted else {
            continue;
        };
        let endpoints = endpoints.clone();
        let first = next.fetch_add(1, Ordering::Relaxed);
        let stop = stop.clone();
        tokio::spawn(async move {
            // kube-proxy sends the connection to one endpoint; if that pod is gone the client's connection is
            // refused and its retry lands on another. The balancer accepted already, so it takes the next
            // endpoint itself, which is what the client's retry would get.
            let ports = routable(&endpoints);
            for offset in 0..ports.len() {
                let port = ports[(first + offset) % ports.len()];
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = stop.cancelled() => {}
                    }
                    return;
                }
            }
        });
    }
}

async fn probe(endpoints: Arc<Mutex<Vec<Endpoint>>>, stop: tokio_util::sync::CancellationToken) {
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .unwrap();
    loop {
        let ports: Vec<u16> = endpoints.lock().unwrap().iter().map(|e| e.port).collect();
        for port in ports {
            let passed = client
                .get(format!("http://127.0.0.1:{port}/health/ready"))
                .send()
                .await
                .is_ok_and(|response| response.status() == 200);
            for endpoint in endpoints
                .lock()
                .unwrap()
                .iter_mut()
                .filter(|e| e.port == port)
            {
                if passed {
                    endpoint.failures = 0;
                    endpoint.ready = true;
                } else {
                    endpoint.failures += 1;
                    if endpoint.failures >= FAILURE_THRESHOLD {
                        endpoint.ready = false;
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PROBE_PERIOD) => {}
        }
    }
}
