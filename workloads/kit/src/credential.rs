//! The credential of calls between services: the operator generates one per app (a Secret it owns) and gives it
//! to the services that own internal writes and to their callers. A caller's [`crate::client::ServiceClient`]
//! sends it as a bearer token; an owner guards its write routes with [`require`]. Unset (a service run by hand),
//! writes are open, as before, and only the gateway keeps customers away from them.

use crate::config::{ConfigError, Environment};
use crate::problem::Problem;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use food_delivery_contract::env;
use std::sync::Arc;

/// Shorter tokens are refused at startup: the operator's are 64 hexadecimal digits.
pub const MIN_TOKEN_CHARS: usize = 32;

/// The internal credential, if this service has one.
#[derive(Clone, Default)]
pub struct InternalCredential {
    token: Option<Arc<str>>,
}

impl std::fmt::Debug for InternalCredential {
    // Never printed: logs and panics must not carry it.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.token.is_some() {
            "InternalCredential(set)"
        } else {
            "InternalCredential(unset)"
        })
    }
}

impl InternalCredential {
    /// `INTERNAL_TOKEN` from the environment.
    pub fn from_env(environment: &Environment) -> Result<Self, ConfigError> {
        match environment.optional(env::INTERNAL_TOKEN) {
            None => Ok(Self::default()),
            Some(token) if token.chars().count() < MIN_TOKEN_CHARS => Err(ConfigError::new(
                env::INTERNAL_TOKEN,
                format!("must be at least {MIN_TOKEN_CHARS} characters"),
            )),
            Some(token) => Ok(Self::of(&token)),
        }
    }

    /// A credential with this token.
    pub fn of(token: &str) -> Self {
        Self {
            token: Some(Arc::from(token)),
        }
    }

    /// The `Authorization` header value a caller sends, if any.
    pub fn bearer(&self) -> Option<String> {
        self.token.as_ref().map(|token| format!("Bearer {token}"))
    }

    /// Whether a request with these headers may write: always when no credential is configured.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        same_secret(offered.as_bytes(), token.as_bytes())
    }
}

/// Compares without stopping at the first difference, so the time taken does not tell how much of a guess was
/// right.
fn same_secret(offered: &[u8], expected: &[u8]) -> bool {
    let differences = offered
        .iter()
        .zip(expected)
        .fold(0u8, |differences, (left, right)| {
            differences | (left ^ right)
        });
    offered.len() == expected.len() && differences == 0
}

/// Middleware for write routes that only other services may call: 401 problem+json without the credential.
pub async fn require(
    State(credential): State<InternalCredential>,
    request: Request,
    next: Next,
) -> Response {
    if credential.admits(request.headers()) {
        return next.run(request).await;
    }
    let mut response = Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Only the platform's own services may do this",
    )
    .with_detail("send the internal credential as a bearer token")
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Bearer"
            .parse()
            .unwrap_or_else(|_| header::HeaderValue::from_static("Bearer")),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_is_admitted_and_an_unset_credential_admits_all() {
        let token = "0123456789abcdef0123456789abcdef";
        let credential = InternalCredential::of(token);
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert!(credential.admits(&with(&format!("Bearer {token}"))));
        assert!(!credential.admits(&with(&format!("Bearer {token}x"))));
        assert!(!credential.admits(&with("Bearer ")));
        assert!(!credential.admits(&HeaderMap::new()));
        assert!(InternalCredential::default().admits(&HeaderMap::new()));
        assert_eq!(format!("{credential:?}"), "InternalCredential(set)");
        let short = Environment::from_pairs([(env::INTERNAL_TOKEN, "short")]);
        assert!(InternalCredential::from_env(&short).is_err());
    }
}
