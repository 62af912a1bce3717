//! The circuit breaker around synchronous calls, on the `failsafe` crate's state machine. This module adds what
//! the service needs around it: settings from the environment, the state as a metric and a readiness detail.

use crate::config::{ConfigError, Environment};
use crate::health::{CheckReport, ReadinessCheck};
use failsafe::failure_policy::{ConsecutiveFailures, OrElse, SuccessRateOverTimeWindow};
use failsafe::{FailurePolicy, Instrument, StateMachine, backoff};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

/// When the breaker opens and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Opens when the failure rate over the window exceeds this percentage.
    pub failure_rate_percent: u8,
    /// Calls needed before the rate counts; this many consecutive failures also open it at once (a down
    /// dependency must not get a full window of traffic first).
    pub minimum_calls: u32,
    /// The window over which the failure rate is measured.
    pub window: Duration,
    /// How long it stays open before letting a trial call through (half-open).
    pub open_for: Duration,
}

impl BreakerSettings {
    /// Reads `{PREFIX}_BREAKER_FAILURE_RATE_PERCENT` (50), `{PREFIX}_BREAKER_MINIMUM_CALLS` (5),
    /// `{PREFIX}_BREAKER_WINDOW_SECONDS` (10) and `{PREFIX}_BREAKER_OPEN_SECONDS` (10).
    pub fn from_env(environment: &Environment, prefix: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            failure_rate_percent: environment.number_in_or(
                &format!("{prefix}_BREAKER_FAILURE_RATE_PERCENT"),
                1..=100,
                50,
            )?,
            minimum_calls: environment.number_in_or(
                &format!("{prefix}_BREAKER_MINIMUM_CALLS"),
                1..=10_000,
                5,
            )?,
            window: environment
                .number_in_or(&format!("{prefix}_BREAKER_WINDOW_SECONDS"), 1..=3600, 10)
                .map(Duration::from_secs)?,
            open_for: environment
                .number_in_or(&format!("{prefix}_BREAKER_OPEN_SECONDS"), 1..=3600, 10)
                .map(Duration::from_secs)?,
        })
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Trial calls flow; the next failure reopens, the next success closes.
    HalfOpen,
    /// Calls fail fast.
    Open,
}

impl BreakerState {
    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::HalfOpen,
            2 => Self::Open,
            _ => Self::Closed,
        }
    }

    /// The name shown in readiness details.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half-open",
            Self::Open => "open",
        }
    }
}

/// Mirrors failsafe's transitions into an atomic (for readiness), a gauge and the log.
struct StateRecorder {
    name: Arc<str>,
    state: Arc<AtomicU8>,
}

impl StateRecorder {
    fn enter(&self, state: BreakerState) {
        let code = match state {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        let previous = self.state.swap(code, Ordering::SeqCst);
        metrics::gauge!(crate::metrics::CIRCUIT_BREAKER_STATE, "breaker" => self.name.to_string())
            .set(f64::from(code));
        // failsafe reports "closed" when the breaker is built; only real changes are news.
        if previous == code {
            return;
        }
        if state == BreakerState::Open {
            tracing::warn!(breaker = %self.name, state = state.as_str(), "circuit breaker opened");
        } else {
            tracing::info!(breaker = %self.name, state = state.as_str(), "circuit breaker changed state");
        }
    }
}

impl Instrument for StateRecorder {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        self.enter(BreakerState::Open);
    }
    fn on_half_open(&self) {
        self.enter(BreakerState::HalfOpen);
    }
    fn on_closed(&self) {
        self.enter(BreakerState::Closed);
    }
}

type Policy =
    OrElse<ConsecutiveFailures<backoff::Constant>, SuccessRateOverTimeWindow<backoff::Constant>>;

/// A named circuit breaker.
#[derive(Clone)]
pub struct CircuitBreaker {
    name: Arc<str>,
    machine: StateMachine<Policy, StateRecorder>,
    state: Arc<AtomicU8>,
    settings: BreakerSettings,
    /// When the half-open trial call in flight started (milliseconds since `created`, plus one; 0: none). The
    /// state machine lets every call through while half-open; one trial at a time is what half-open is for.
    trial_started: Arc<AtomicU64>,
    created: std::time::Instant,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker called `name`.
    pub fn new(name: &str, settings: BreakerSettings) -> Self {
        let name: Arc<str> = Arc::from(name);
        let state = Arc::new(AtomicU8::new(0));
        let open = backoff::constant(settings.open_for);
        let required_success_rate = 1.0 - f64::from(settings.failure_rate_percent) / 100.0;
        let policy =
            failsafe::failure_policy::consecutive_failures(settings.minimum_calls, open.clone())
                .or_else(failsafe::failure_policy::success_rate_over_time_window(
                    required_success_rate,
                    settings.minimum_calls,
                    settings.window,
                    open,
                ));
        crate::metrics::install();
        let machine = StateMachine::new(
            policy,
            StateRecorder {
                name: name.clone(),
                state: state.clone(),
            },
        );
        metrics::gauge!(crate::metrics::CIRCUIT_BREAKER_STATE, "breaker" => name.to_string())
            .set(0.0);
        Self {
            name,
            machine,
            state,
            settings,
            trial_started: Arc::new(AtomicU64::new(0)),
            created: std::time::Instant::now(),
        }
    }

    /// Asks to make a call: `false` means fail fast now. Half-open, only one trial call goes at a time; a trial
    /// whose outcome never comes (its caller went away) stops blocking others after the open time.
    pub fn permits_call(&self) -> bool {
        if !self.machine.is_call_permitted() {
            return false;
        }
        if self.state() != BreakerState::HalfOpen {
            return true;
        }
        let now = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let trial = self.trial_started.load(Ordering::SeqCst);
        let trial_lease = u64::try_from(self.settings.open_for.as_millis()).unwrap_or(u64::MAX);
        if trial != 0 && now.saturating_sub(trial) < trial_lease {
            return false;
        }
        self.trial_started
            .compare_exchange(trial, now, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Records a call that worked.
    pub fn record_success(&self) {
        self.machine.on_success();
        self.trial_started.store(0, Ordering::SeqCst);
    }

    /// Records a call that failed (timeout, connection refused, 5xx).
    pub fn record_failure(&self) {
        self.machine.on_error();
        self.trial_started.store(0, Ordering::SeqCst);
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_code(self.state.load(Ordering::SeqCst))
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long it stays open.
    pub fn open_for(&self) -> Duration {
        self.settings.open_for
    }
}

/// Breaker state as a readiness detail. It never makes the replica unready: an open breaker means the
/// dependency is down, and removing this replica from service would not help.
impl ReadinessCheck for CircuitBreaker {
    fn name(&self) -> String {
        format!("breaker:{}", self.name)
    }

    fn check(&self) -> BoxFuture<'_, CheckReport> {
        Box::pin(async move {
            CheckReport {
                ready: true,
                detail: serde_json::json!({"state": self.state().as_str()}),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_rate_percent: 50,
            minimum_calls: 3,
            window: Duration::from_secs(10),
            open_for: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn opens_after_consecutive_failures_then_half_opens_and_closes() {
        let breaker = CircuitBreaker::new("unit", settings());
        for _ in 0..3 {
            assert!(breaker.permits_call());
            breaker.record_failure();
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.permits_call());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(breaker.permits_call());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn half_open_lets_one_trial_through_at_a_time() {
        let breaker = CircuitBreaker::new("unit-one-trial", settings());
        for _ in 0..3 {
            breaker.record_failure();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(breaker.permits_call(), "the trial");
        assert!(
            !breaker.permits_call(),
            "a second call while the trial is out fails fast instead of piling onto a recovering dependency"
        );
        breaker.record_success();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.permits_call() && breaker.permits_call());
    }

    #[tokio::test]
    async fn a_failed_trial_reopens() {
        let breaker = CircuitBreaker::new("unit-reopen", settings());
        for _ in 0..3 {
            breaker.record_failure();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(breaker.permits_call());
        breaker.record_failure();
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.permits_call());
    }

    #[test]
    fn settings_are_read_with_their_prefix() {
        let environment = Environment::from_pairs([
            ("PAYMENT_BREAKER_OPEN_SECONDS", "3"),
            ("PAYMENT_BREAKER_MINIMUM_CALLS", "7"),
        ]);
        let settings = BreakerSettings::from_env(&environment, "PAYMENT").unwrap();
        assert_eq!(settings.open_for, Duration::from_secs(3));
        assert_eq!(settings.minimum_calls, 7);
        let bad = Environment::from_pairs([("PAYMENT_BREAKER_FAILURE_RATE_PERCENT", "150")]);
        assert_eq!(
            BreakerSettings::from_env(&bad, "PAYMENT")
                .unwrap_err()
                .variable,
            "PAYMENT_BREAKER_FAILURE_RATE_PERCENT"
        );
    }
}
