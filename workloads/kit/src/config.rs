//! Configuration from environment variables.
//!
//! The operator feeds every service through ConfigMaps turned into environment variables, so a bad value must
//! stop the process at startup with an error that names the variable and says what was expected.

use food_delivery_contract::env;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A configuration value that is missing or malformed, named by its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: String,
    /// What was wrong, with the expected form.
    pub problem: String,
}

impl ConfigError {
    /// An error about one variable.
    pub fn new(variable: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            problem: problem.into(),
        }
    }
}

/// A snapshot of the environment. Tests build one from pairs instead of mutating the process environment.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    variables: BTreeMap<String, String>,
}

impl Environment {
    /// The environment of this process.
    pub fn from_process() -> Self {
        Self {
            variables: std::env::vars().collect(),
        }
    }

    /// An environment made of the given pairs only.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            variables: pairs
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        }
    }

    /// Every variable, for a caller that passes the environment on (the all-in-one mode).
    pub fn variables(&self) -> impl Iterator<Item = (&String, &String)> {
        self.variables.iter()
    }

    /// The value of a variable; an empty value counts as unset (a ConfigMap key left blank).
    pub fn optional(&self, name: &str) -> Option<String> {
        self.variables
            .get(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// The value of a variable that must be set.
    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    /// A parsed value, or `default` when unset.
    pub fn parsed_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => parse_value(name, &raw),
        }
    }

    /// A parsed value, or `None` when unset.
    pub fn parsed<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.optional(name)
            .map(|raw| parse_value(name, &raw))
            .transpose()
    }

    /// A whole number within `range`, or `default` when unset.
    pub fn number_in_or<T>(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<T>,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display + Copy,
        T::Err: Display,
    {
        let value = self.parsed_or(name, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                name,
                format!(
                    "must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    /// A duration given in milliseconds, or `default` when unset.
    pub fn millis_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let millis: u64 =
            self.parsed_or(name, u64::try_from(default.as_millis()).unwrap_or(u64::MAX))?;
        Ok(Duration::from_millis(millis))
    }

    /// A duration given in whole seconds, or `default` when unset.
    pub fn seconds_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        let seconds: u64 = self.parsed_or(name, default.as_secs())?;
        Ok(Duration::from_secs(seconds))
    }

    /// A boolean (`true`/`false`, `1`/`0`, `yes`/`no`), or `default` when unset.
    pub fn flag_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|raw| raw.to_ascii_lowercase()) {
            None => Ok(default),
            Some(raw) => match raw.as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::new(
                    name,
                    format!("expected true or false, got '{raw}'"),
                )),
            },
        }
    }
}

fn parse_value<T>(name: &str, raw: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    raw.parse().map_err(|error| {
        ConfigError::new(
            name,
            format!(
                "cannot parse '{raw}' as {}: {error}",
                std::any::type_name::<T>()
            ),
        )
    })
}

/// How the service writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (the default; what log collectors expect).
    Json,
    /// Human-readable lines, for the local all-in-one mode.
    Text,
}

/// Log settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `LOG_LEVEL`: a tracing filter such as `info` or `info,sqlx=warn`.
    pub level: String,
    /// `LOG_FORMAT`: `json` (default) or `text`.
    pub format: LogFormat,
    /// `LOG_FILE`: an extra JSON log file, e.g. on the shared log volume the operator mounts.
    pub file: Option<PathBuf>,
}

/// The event backbone's settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `KAFKA_BOOTSTRAP_SERVERS`: `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// `KAFKA_TOPIC_PARTITIONS`: partitions of topics this service creates (default 3).
    pub topic_partitions: i32,
    /// `KAFKA_REPLICATION_FACTOR`: replication of topics this service creates (default 1).
    pub replication_factor: i32,
    /// `KAFKA_FETCH_WAIT_MAX_MS`: the longest a consumer's fetch waits for data (default 20). Kafka answers as
    /// soon as data arrives, so this only sets how often an idle consumer asks; brokers that hold every fetch
    /// for the full wait (tansu 0.6) add up to this much latency per hop.
    pub fetch_wait_max: std::time::Duration,
    /// `POD_NAME`: names this process's consumer group members (with a suffix unique to each start), so the lease
    /// table says which pod holds which partition. Unset: the service's name.
    pub member_name: Option<String>,
}

/// Settings every service reads, whatever its domain.
#[derive(Debug, Clone)]
pub struct KitConfig {
    /// `HTTP_HOST` (default `0.0.0.0`) and `HTTP_PORT` (default 8080).
    pub http_address: std::net::SocketAddr,
    /// `HTTP_BODY_LIMIT_BYTES`: the largest request body accepted (default 64 KiB); larger gets 413.
    pub http_body_limit: usize,
    /// `HTTP_REQUEST_TIMEOUT_MS`: the longest a request may take (default 30 s); longer gets 503 problem+json.
    pub http_request_timeout: Duration,
    /// `DATABASE_URL`: `sqlite://PATH` or `postgres://...`; unset for stateless services.
    pub database_url: Option<String>,
    /// `DATABASE_SCHEMA`: the PostgreSQL schema holding the service's tables (default: the service's name), so
    /// services sharing one database each keep their own tables, migration history, outbox, inbox and relay lease.
    pub database_schema: Option<String>,
    /// `DATABASE_MAX_CONNECTIONS`: pool size for PostgreSQL (default 10); SQLite always uses one writer.
    pub database_max_connections: u32,
    /// Kafka settings; `None` when `KAFKA_BOOTSTRAP_SERVERS` is unset (in-process bus or no events).
    pub kafka: Option<KafkaConfig>,
    /// `KAFKA_TOPIC_PREFIX`: prepended to every topic name with a dot (default `food`).
    pub topic_prefix: String,
    /// `SHUTDOWN_DRAIN_DELAY_MS`: how long readiness reports 503 before the listener closes (default 5000),
    /// so load balancers stop sending new requests first.
    pub drain_delay: Duration,
    /// `SHUTDOWN_TIMEOUT_MS`: the bound on each shutdown step: in-flight requests, consumers, outbox flush
    /// (default 10000).
    pub shutdown_timeout: Duration,
    /// `OUTBOX_POLL_INTERVAL_MS`: how often the relay looks for rows it was not woken for (default 250).
    pub outbox_poll_interval: Duration,
    /// `CONSUMER_BATCH_MAX`: the most waiting events a consumer applies in one transaction (default 64, 1 to 1000;
    /// 1 applies each alone, one commit per event).
    pub consumer_batch_max: usize,
    /// `READINESS_REQUIRES_BROKER`: whether an unreachable broker makes the service unready (default false: the
    /// outbox rides out a broker outage, so the API, cancellations included, keeps serving; the broker's state is a
    /// readiness detail either way).
    pub readiness_requires_broker: bool,
    /// Log settings.
    pub log: LogConfig,
}

impl KitConfig {
    /// Reads the settings, failing on the first malformed one.
    pub fn from_env(environment: &Environment) -> Result<Self, ConfigError> {
        let host: std::net::IpAddr =
            environment.parsed_or("HTTP_HOST", std::net::IpAddr::from([0, 0, 0, 0]))?;
        let port: u16 = environment.parsed_or(env::HTTP_PORT, food_delivery_contract::HTTP_PORT)?;
        let database_url = environment.optional(env::DATABASE_URL);
        if let Some(url) = &database_url {
            crate::store::Backend::from_url(url)
                .map_err(|problem| ConfigError::new(env::DATABASE_URL, problem))?;
        }
        let topic_prefix = environment
            .optional(env::KAFKA_TOPIC_PREFIX)
            .unwrap_or_else(|| "food".to_owned());
        validate_topic_prefix(&topic_prefix)
            .map_err(|problem| ConfigError::new(env::KAFKA_TOPIC_PREFIX, problem))?;
        let kafka = match environment.optional(env::KAFKA_BOOTSTRAP_SERVERS) {
            None => None,
            Some(bootstrap_servers) => {
                validate_bootstrap_servers(&bootstrap_servers)
                    .map_err(|problem| ConfigError::new(env::KAFKA_BOOTSTRAP_SERVERS, problem))?;
                Some(KafkaConfig {
                    bootstrap_servers,
                    topic_partitions: environment.number_in_or(
                        env::KAFKA_TOPIC_PARTITIONS,
                        1..=1000,
                        3,
                    )?,
                    replication_factor: environment.number_in_or(
                        env::KAFKA_REPLICATION_FACTOR,
                        1..=10,
                        1,
                    )?,
                    member_name: environment.optional(env::POD_NAME),
                    fetch_wait_max: environment
                        .number_in_or("KAFKA_FETCH_WAIT_MAX_MS", 1..=10_000, 20)
                        .map(Duration::from_millis)?,
                })
            }
        };
        let format = match environment.optional("LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("expected json or text, got '{other}'"),
                ));
            }
        };
        Ok(Self {
            http_address: std::net::SocketAddr::new(host, port),
            http_body_limit: environment.number_in_or(
                "HTTP_BODY_LIMIT_BYTES",
                1024..=64 * 1024 * 1024,
                64 * 1024,
            )?,
            http_request_timeout: environment
                .number_in_or(
                    food_delivery_contract::env::HTTP_REQUEST_TIMEOUT_MS,
                    100..=900_000,
                    food_delivery_contract::deadlines::REQUEST_TIMEOUT_MS,
                )
                .map(Duration::from_millis)?,
            database_url,
            database_schema: environment
                .optional(food_delivery_contract::env::DATABASE_SCHEMA)
                .map(|schema| {
                    crate::store::validate_schema_name(&schema)
                        .map(|()| schema)
                        .map_err(|problem| {
                            ConfigError::new(food_delivery_contract::env::DATABASE_SCHEMA, problem)
                        })
                })
                .transpose()?,
            database_max_connections: environment.number_in_or(
                food_delivery_contract::env::DATABASE_MAX_CONNECTIONS,
                1..=500,
                10,
            )?,
            kafka,
            topic_prefix,
            drain_delay: environment
                .millis_or(env::SHUTDOWN_DRAIN_DELAY_MS, Duration::from_secs(5))?,
            shutdown_timeout: environment
                .millis_or(env::SHUTDOWN_TIMEOUT_MS, Duration::from_secs(10))?,
            outbox_poll_interval: environment
                .millis_or("OUTBOX_POLL_INTERVAL_MS", Duration::from_millis(250))?,
            consumer_batch_max: environment.number_in_or("CONSUMER_BATCH_MAX", 1..=1000, 64)?,
            readiness_requires_broker: environment.flag_or("READINESS_REQUIRES_BROKER", false)?,
            log: LogConfig {
                level: environment
                    .optional(env::LOG_LEVEL)
                    .unwrap_or_else(|| "info".to_owned()),
                format,
                file: environment.optional(env::LOG_FILE).map(PathBuf::from),
            },
        })
    }
}

fn validate_bootstrap_servers(value: &str) -> Result<(), String> {
    for server in value.split(',') {
        let server = server.trim();
        let valid = server.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
        });
        if !valid {
            return Err(format!("expected host:port[,host:port...], got '{server}'"));
        }
    }
    Ok(())
}

/// Checks a topic prefix against Kafka's rules for topic names (the prefix plus `.` plus a name must stay valid).
pub fn validate_topic_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 200 {
        return Err("must be 1 to 200 characters".to_owned());
    }
    if prefix == "." || prefix == ".." {
        return Err("cannot be '.' or '..'".to_owned());
    }
    if let Some(bad) = prefix
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "may contain only ASCII letters, digits, '.', '_' and '-', found '{bad}'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(pairs: &[(&str, &str)]) -> Result<KitConfig, ConfigError> {
        KitConfig::from_env(&Environment::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = config_with(&[]).unwrap();
        assert_eq!(config.http_address.port(), 8080);
        assert_eq!(config.topic_prefix, "food");
        assert!(config.kafka.is_none());
        assert!(config.database_url.is_none());
        assert_eq!(config.drain_delay, Duration::from_secs(5));
    }

    #[test]
    fn every_malformed_value_names_its_variable() {
        let cases = [
            ("HTTP_PORT", "eighty", "cannot parse 'eighty'"),
            ("HTTP_PORT", "70000", "cannot parse '70000'"),
            ("HTTP_HOST", "not an ip", "cannot parse"),
            ("DATABASE_URL", "mysql://db/food", "sqlite:"),
            ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "host:port"),
            ("KAFKA_TOPIC_PREFIX", "food orders", "letters, digits"),
            ("SHUTDOWN_DRAIN_DELAY_MS", "-1", "cannot parse '-1'"),
            ("READINESS_REQUIRES_BROKER", "maybe", "true or false"),
            ("LOG_FORMAT", "xml", "json or text"),
            ("DATABASE_MAX_CONNECTIONS", "0", "between 1 and 500"),
            ("KAFKA_FETCH_WAIT_MAX_MS", "0", "between 1 and 10000"),
        ];
        for (variable, value, expected) in cases {
            let mut pairs = vec![(variable, value)];
            if variable != "KAFKA_BOOTSTRAP_SERVERS" {
                pairs.push(("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"));
            }
            let error = config_with(&pairs).expect_err(variable);
            assert_eq!(error.variable, variable, "{error}");
            assert!(
                error.problem.contains(expected),
                "{variable}: '{}' lacks '{expected}'",
                error.problem
            );
            assert!(error.to_string().contains(variable));
        }
    }

    #[test]
    fn required_variable_reports_that_it_is_missing() {
        let error = Environment::default().required("PAYMENT_URL").unwrap_err();
        assert_eq!(
            error.to_string(),
            "configuration error: PAYMENT_URL: is required but not set"
        );
    }

    #[test]
    fn blank_values_count_as_unset() {
        let environment = Environment::from_pairs([("HTTP_PORT", "  ")]);
        assert_eq!(environment.parsed_or("HTTP_PORT", 8080_u16).unwrap(), 8080);
    }

    #[test]
    fn topic_prefix_follows_kafka_rules() {
        assert!(validate_topic_prefix("food").is_ok());
        assert!(validate_topic_prefix("good-morning.prod_1").is_ok());
        assert!(validate_topic_prefix("").is_err());
        assert!(validate_topic_prefix("..").is_err());
        assert!(
            validate_topic_prefix("food/orders")
                .unwrap_err()
                .contains("'/'")
        );
        assert!(validate_topic_prefix(&"a".repeat(201)).is_err());
    }
}
