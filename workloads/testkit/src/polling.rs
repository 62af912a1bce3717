use std::time::{Duration, Instant};

/// How often [`eventually`] probes: often enough that a test waits little past the moment its outcome holds.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `probe` every 50 ms until it returns `Some`, failing the test with `what` after `timeout`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    eventually_every(POLL_INTERVAL, timeout, what, probe).await
}

/// Like [`eventually`], probing every `interval`: for probes that are costly or load a shared system (a real
/// cluster's API server).
pub async fn eventually_every<T>(
    interval: Duration,
    timeout: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(interval).await;
    }
}
