//! Work a service repeats on a timer until it stops (auto modes, deadlines, re-announcements), written once: the
//! wait that ends at shutdown, and a failed round logged and tried again at the next tick.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs `round` every `interval` (the first after one interval) until `shutdown`; a round that fails is logged as
/// `what` and the next one tries again. A round is never cut short by shutdown: it finishes, then the loop ends.
pub async fn every<Round, Work, Failure>(
    interval: Duration,
    shutdown: CancellationToken,
    what: &'static str,
    mut round: Round,
) where
    Round: FnMut() -> Work,
    Work: Future<Output = Result<(), Failure>>,
    Failure: Display,
{
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = round().await {
            tracing::warn!(%error, "{what}; trying again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn rounds_repeat_through_failures_and_stop_at_shutdown() {
        let rounds = AtomicUsize::new(0);
        let shutdown = CancellationToken::new();
        let stopping = shutdown.clone();
        let repeat = every(Duration::from_millis(5), shutdown, "test round", || async {
            let round = rounds.fetch_add(1, Ordering::SeqCst) + 1;
            if round == 3 {
                stopping.cancel();
            }
            if round % 2 == 1 {
                Err("odd rounds fail")
            } else {
                Ok(())
            }
        });
        tokio::time::timeout(Duration::from_secs(60), repeat)
            .await
            .unwrap();
        assert_eq!(rounds.load(Ordering::SeqCst), 3);
    }
}
