//! The gateway: one entry for every service under `/api/...`. Routes come from configuration (the operator
//! writes them from the app's components); each route has a deadline, each upstream a circuit breaker; the
//! correlation id travels on; browsers are let in by CORS when configured. It owns no data.
//! Wiring only; the routing rules live in `domain`, the proxy in `api`.

pub mod api;
pub mod domain;

use crate::api::{Gateway, Upstream};
use crate::domain::RouteSpec;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method};
use food_delivery_contract::Component;
use food_delivery_contract::env;
use food_delivery_kit::breaker::BreakerSettings;
use food_delivery_kit::host::HostError;
use food_delivery_kit::telemetry::{CORRELATION_ID_HEADER, REQUEST_ID_HEADER};
use food_delivery_kit::{ConfigError, Environment, KitConfig, ServiceHost, ServiceSpec};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// What the service is to the kit: no store, no topics.
pub const SPEC: ServiceSpec = ServiceSpec::of(Component::Gateway, &[]);

/// Target scheme for a service in this process (the all-in-one mode); never accepted from configuration.
pub const IN_PROCESS_SCHEME: &str = "in-process://";

/// Which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers: only same-origin pages and non-browser clients.
    Disabled,
    /// Any origin (`*`): for local use.
    Any,
    /// These origins only.
    List(Vec<String>),
}

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The routes.
    pub routes: Vec<RouteSpec>,
    /// How long connecting to an upstream may take: a down service must fail fast, not at the route deadline.
    pub connect_timeout: Duration,
    /// When an upstream's breaker opens.
    pub breaker: BreakerSettings,
    /// CORS.
    pub cors: CorsOrigins,
}

impl Settings {
    /// Reads `GATEWAY_ROUTES` (`resource=url,...`, required), `GATEWAY_ROUTE_TIMEOUTS_MS` (`resource=ms,...`),
    /// `GATEWAY_TIMEOUT_MS` (5000) and the rest as [`Settings::with_routes`] does.
    pub fn from_env(environment: &Environment) -> Result<Self, ConfigError> {
        let default_timeout = environment.millis_or(
            env::GATEWAY_TIMEOUT_MS,
            Duration::from_millis(food_delivery_contract::deadlines::GATEWAY_ROUTE_TIMEOUT_MS),
        )?;
        let routes = domain::parse_routes(
            &environment.required(domain::ROUTES_VARIABLE)?,
            &environment
                .optional(domain::TIMEOUTS_VARIABLE)
                .unwrap_or_default(),
            default_timeout,
        )?;
        Self::with_routes(environment, routes)
    }

    /// Settings for `routes` given by the caller (the all-in-one mode); reads `GATEWAY_CONNECT_TIMEOUT_MS`
    /// (1000), `GATEWAY_BREAKER_*` and `GATEWAY_CORS_ALLOWED_ORIGINS` (empty: off; `*`: any; else a
    /// comma-separated list of origins).
    pub fn with_routes(
        environment: &Environment,
        routes: Vec<RouteSpec>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            routes,
            connect_timeout: environment
                .millis_or("GATEWAY_CONNECT_TIMEOUT_MS", Duration::from_secs(1))?,
            breaker: BreakerSettings::from_env(environment, "GATEWAY")?,
            cors: cors_origins(
                &environment
                    .optional(env::GATEWAY_CORS_ALLOWED_ORIGINS)
                    .unwrap_or_default(),
            )?,
        })
    }
}

fn cors_origins(raw: &str) -> Result<CorsOrigins, ConfigError> {
    let origins: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .collect();
    match origins.as_slice() {
        [] => Ok(CorsOrigins::Disabled),
        ["*"] => Ok(CorsOrigins::Any),
        list => {
            if let Some(bad) = list.iter().find(|origin| {
                !(origin.starts_with("http://") || origin.starts_with("https://"))
                    || origin.ends_with('/')
            }) {
                return Err(ConfigError::new(
                    env::GATEWAY_CORS_ALLOWED_ORIGINS,
                    format!(
                        "'{bad}' is not an origin like https://shop.example.org (or use * alone)"
                    ),
                ));
            }
            Ok(CorsOrigins::List(
                list.iter().map(|origin| (*origin).to_owned()).collect(),
            ))
        }
    }
}

fn cors_layer(origins: &CorsOrigins) -> Option<CorsLayer> {
    let allow_origin = match origins {
        CorsOrigins::Disabled => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        ),
    };
    let correlation = HeaderName::from_static(CORRELATION_ID_HEADER);
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                axum::http::header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                correlation.clone(),
                request_id.clone(),
            ])
            .expose_headers([
                correlation,
                request_id,
                axum::http::header::RETRY_AFTER,
                axum::http::header::LOCATION,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Starts the gateway and returns the host with the proxy. Routes whose target is
/// `in-process://<name>` go to `in_process[<name>]` (the all-in-one mode).
pub async fn start(
    config: KitConfig,
    settings: Settings,
    in_process: &BTreeMap<String, Router>,
) -> Result<(ServiceHost, Router), HostError> {
    let body_limit = config.http_body_limit;
    let host = ServiceHost::start(SPEC, config, None).await?;
    let mut routes = Vec::with_capacity(settings.routes.len());
    for spec in settings.routes {
        let upstream = match spec.target.strip_prefix(IN_PROCESS_SCHEME) {
            Some(name) => Upstream::InProcess(in_process.get(name).cloned().ok_or_else(|| {
                HostError::NoInProcessService {
                    service: name.to_owned(),
                    resource: spec.resource.clone(),
                }
            })?),
            None => Upstream::Http(spec.target.clone()),
        };
        routes.push((spec, upstream));
    }
    let gateway = Gateway::new(
        routes,
        settings.connect_timeout,
        &settings.breaker,
        body_limit,
    )
    .map_err(|source| HostError::HttpClient {
        target: "upstream services",
        source,
    })?;
    for breaker in gateway.breakers() {
        host.health().add_check(Arc::new(breaker));
    }
    let mut router = gateway.router();
    if let Some(cors) = cors_layer(&settings.cors) {
        router = router.layer(cors);
    }
    Ok((host, router))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_environment_with_clear_errors() {
        let environment = Environment::from_pairs([
            (
                "GATEWAY_ROUTES",
                "orders=http://order:8080,menu=http://kitchen:8080",
            ),
            ("GATEWAY_ROUTE_TIMEOUTS_MS", "orders=2500"),
            (
                "GATEWAY_CORS_ALLOWED_ORIGINS",
                "https://shop.example.org, http://localhost:3000",
            ),
        ]);
        let settings = Settings::from_env(&environment).unwrap();
        assert_eq!(settings.routes.len(), 2);
        assert_eq!(settings.routes[0].timeout, Duration::from_millis(2500));
        assert_eq!(settings.routes[1].timeout, Duration::from_secs(5));
        assert_eq!(
            settings.cors,
            CorsOrigins::List(vec![
                "https://shop.example.org".into(),
                "http://localhost:3000".into()
            ])
        );
        let missing = Settings::from_env(&Environment::from_pairs(Vec::<(String, String)>::new()))
            .unwrap_err();
        assert_eq!(missing.variable, "GATEWAY_ROUTES");
        let bad_origin = Settings::from_env(&Environment::from_pairs([
            ("GATEWAY_ROUTES", "orders=http://order:8080"),
            ("GATEWAY_CORS_ALLOWED_ORIGINS", "shop.example.org"),
        ]))
        .unwrap_err();
        assert_eq!(bad_origin.variable, "GATEWAY_CORS_ALLOWED_ORIGINS");
        let in_process = Settings::from_env(&Environment::from_pairs([(
            "GATEWAY_ROUTES",
            "orders=in-process://order",
        )]))
        .unwrap_err();
        assert!(in_process.problem.contains("http(s)"), "{in_process:?}");
    }
}
