//! The gateway's rules: which service owns a path, how the path is rewritten, and how long a route may take.
//! Pure; the routes come from configuration (the operator writes them) and are checked once at startup.
//!
//! `/api/<resource>/<rest>` goes to the service that owns `<resource>`, as `/<resource>/<rest>`: the services
//! name their own paths after their resources (`/orders`, `/menu`, `/mypage`), so the gateway only strips `/api`.

use food_delivery_kit::ConfigError;
use std::collections::BTreeMap;
use std::time::Duration;

/// The prefix every routed path starts with.
pub const API_PREFIX: &str = "/api";

use food_delivery_contract::Component;
pub use food_delivery_contract::RESOURCE_OWNERS;

/// `GATEWAY_ROUTES` for the components `base_url` knows (`None`: not deployed, so not routed).
pub fn routes_setting(base_url: impl Fn(Component) -> Option<String>) -> String {
    RESOURCE_OWNERS
        .iter()
        .filter_map(|(resource, owner)| base_url(*owner).map(|url| format!("{resource}={url}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// One configured route: a resource and the base URL of the service that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The first path segment after `/api`, e.g. `orders`.
    pub resource: String,
    /// Base URL of the owning service, e.g. `http://app-order:8080`.
    pub target: String,
    /// How long a request on this route may take, upstream included.
    pub timeout: Duration,
}

/// Settings that hold the routes and their timeout overrides.
pub const ROUTES_VARIABLE: &str = food_delivery_contract::env::GATEWAY_ROUTES;
/// Per-route timeout overrides.
pub const TIMEOUTS_VARIABLE: &str = food_delivery_contract::env::GATEWAY_ROUTE_TIMEOUTS_MS;

fn valid_resource(resource: &str) -> bool {
    !resource.is_empty()
        && resource.len() <= 63
        && resource
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Parses `resource=url` entries separated by commas (`orders=http://app-order:8080,menu=http://app-kitchen:8080`)
/// and `resource=millis` timeout overrides in the same form; routes without an override get `default_timeout`.
pub fn parse_routes(
    routes: &str,
    timeouts: &str,
    default_timeout: Duration,
) -> Result<Vec<RouteSpec>, ConfigError> {
    let entries = |raw: &str,
                   variable: &'static str|
     -> Result<Vec<(String, String)>, ConfigError> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (key, value) = entry.split_once('=').ok_or_else(|| {
                    ConfigError::new(
                        variable,
                        format!("'{entry}' is not of the form resource=value"),
                    )
                })?;
                let key = key.trim();
                if !valid_resource(key) {
                    return Err(ConfigError::new(
                        variable,
                        format!("'{key}' is not a resource name (lowercase letters, digits, '-')"),
                    ));
                }
                Ok((key.to_owned(), value.trim().to_owned()))
            })
            .collect()
    };
    let mut overrides = BTreeMap::new();
    for (resource, millis) in entries(timeouts, TIMEOUTS_VARIABLE)? {
        let millis: u64 = millis
            .parse()
            .ok()
            .filter(|millis| (1..=600_000).contains(millis))
            .ok_or_else(|| {
                ConfigError::new(
                    TIMEOUTS_VARIABLE,
                    format!(
                        "{resource}: '{millis}' is not a number of milliseconds from 1 to 600000"
                    ),
                )
            })?;
        overrides.insert(resource, Duration::from_millis(millis));
    }
    let mut specs: Vec<RouteSpec> = Vec::new();
    for (resource, target) in entries(routes, ROUTES_VARIABLE)? {
        let authority = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))
            .unwrap_or_default();
        if authority.is_empty() || authority.starts_with('/') || target.contains(['?', '#']) {
            return Err(ConfigError::new(
                ROUTES_VARIABLE,
                format!("{resource}: '{target}' is not an http(s) base URL"),
            ));
        }
        if specs.iter().any(|spec| spec.resource == resource) {
            return Err(ConfigError::new(
                ROUTES_VARIABLE,
                format!("{resource} is routed twice"),
            ));
        }
        specs.push(RouteSpec {
            timeout: overrides.remove(&resource).unwrap_or(default_timeout),
            target: target.trim_end_matches('/').to_owned(),
            resource,
        });
    }
    if specs.is_empty() {
        return Err(ConfigError::new(
            ROUTES_VARIABLE,
            "routes nothing; set resource=url entries".to_owned(),
        ));
    }
    if let Some(resource) = overrides.keys().next() {
        return Err(ConfigError::new(
            TIMEOUTS_VARIABLE,
            format!("{resource} has a timeout but no route"),
        ));
    }
    Ok(specs)
}

/// Splits a request path into the resource that routes it and the path the service sees:
/// `/api/orders/7/cancel` -> (`orders`, `/orders/7/cancel`). `None` for paths outside `/api/`, and for paths with
/// a dot segment (`..`, `.`, also percent-encoded) or an encoded slash: the upstream or a proxy between may resolve
/// them, and `/api/orders/../metrics` would reach a service's own endpoints, which are not for the public.
pub fn route_path(path: &str) -> Option<(&str, &str)> {
    let upstream_path = path.strip_prefix(API_PREFIX)?;
    let mut segments = upstream_path.strip_prefix('/')?.split('/');
    let resource = segments.next()?;
    let unsafe_segment = upstream_path.split('/').any(|segment| {
        let decoded = segment
            .to_ascii_lowercase()
            .replace("%2e", ".")
            .replace("%2f", "/")
            .replace("%5c", "\\");
        decoded == "." || decoded == ".." || decoded.contains(['/', '\\'])
    });
    (!resource.is_empty() && !unsafe_segment).then_some((resource, upstream_path))
}

/// Whether a customer (anyone reaching the gateway) may call `method` on `resource`: everything but the writes of
/// resources only services write (payments are authorized by the order service, not by customers).
pub fn open_to_customers(resource: &str, method: &axum::http::Method) -> bool {
    !food_delivery_contract::INTERNAL_WRITES.contains(&resource)
        || matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Duration = Duration::from_secs(5);

    #[test]
    fn routes_parse_with_timeouts_and_trailing_slashes() {
        let routes = parse_routes(
            "orders=http://app-order:8080/, menu = http://app-kitchen:8080 ,",
            "orders=3000",
            DEFAULT,
        )
        .unwrap();
        assert_eq!(
            routes,
            [
                RouteSpec {
                    resource: "orders".into(),
                    target: "http://app-order:8080".into(),
                    timeout: Duration::from_millis(3000),
                },
                RouteSpec {
                    resource: "menu".into(),
                    target: "http://app-kitchen:8080".into(),
                    timeout: DEFAULT,
                },
            ]
        );
    }

    #[test]
    fn bad_route_settings_name_the_variable_and_the_entry() {
        let refused =
            |routes: &str, timeouts: &str| parse_routes(routes, timeouts, DEFAULT).unwrap_err();
        assert_eq!(refused("", "").variable, ROUTES_VARIABLE);
        assert!(refused("orders", "").problem.contains("'orders'"));
        assert!(
            refused("Orders=http://x", "")
                .problem
                .contains("resource name")
        );
        assert!(
            refused("orders=ftp://x", "")
                .problem
                .contains("http(s) base URL")
        );
        assert!(
            refused("orders=http://x?y=1", "")
                .problem
                .contains("http(s) base URL")
        );
        assert!(
            refused("orders=http://x,orders=http://y", "")
                .problem
                .contains("twice")
        );
        let timeout = refused("orders=http://x", "orders=0");
        assert_eq!(timeout.variable, TIMEOUTS_VARIABLE);
        assert!(timeout.problem.contains("milliseconds"));
        assert!(
            refused("orders=http://x", "menu=100")
                .problem
                .contains("no route")
        );
    }

    #[test]
    fn the_routes_setting_covers_the_deployed_owners_and_parses_back() {
        let setting = routes_setting(|service| {
            (service != Component::Stamp).then(|| format!("http://app-{service}:8080"))
        });
        assert_eq!(
            setting,
            "customers=http://app-customer:8080,orders=http://app-order:8080,payments=http://app-payment:8080,\
             menu=http://app-kitchen:8080,tickets=http://app-kitchen:8080,deliveries=http://app-delivery:8080,\
             mypage=http://app-mypage:8080"
        );
        assert_eq!(parse_routes(&setting, "", DEFAULT).unwrap().len(), 7);
    }

    #[test]
    fn only_api_paths_route_and_the_service_sees_its_own_path() {
        assert_eq!(route_path("/api/orders"), Some(("orders", "/orders")));
        assert_eq!(
            route_path("/api/orders/7/cancel"),
            Some(("orders", "/orders/7/cancel"))
        );
        assert_eq!(
            route_path("/api/mypage/customers/c/history"),
            Some(("mypage", "/mypage/customers/c/history"))
        );
        assert_eq!(route_path("/api"), None);
        assert_eq!(route_path("/api/"), None);
        assert_eq!(route_path("/apix/orders"), None);
        assert_eq!(route_path("/orders"), None);
    }

    #[test]
    fn dot_segments_and_encoded_slashes_never_route() {
        for path in [
            "/api/orders/../metrics",
            "/api/orders/%2e%2e/health/ready",
            "/api/orders/%2E%2e/metrics",
            "/api/orders/./7",
            "/api/../metrics",
            "/api/orders/7%2f..%2fmetrics",
            "/api/orders/7%5c..%5cmetrics",
        ] {
            assert_eq!(route_path(path), None, "{path}");
        }
        assert_eq!(
            route_path("/api/orders/a.b..c"),
            Some(("orders", "/orders/a.b..c")),
            "dots inside a segment are just characters"
        );
    }

    #[test]
    fn customers_read_payments_but_only_services_write_them() {
        use axum::http::Method;
        assert!(open_to_customers("payments", &Method::GET));
        assert!(!open_to_customers("payments", &Method::POST));
        assert!(!open_to_customers("payments", &Method::PUT));
        assert!(open_to_customers("orders", &Method::POST));
    }
}
