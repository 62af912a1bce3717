//! The customer aggregate: what a valid customer is and what a change changes. Pure; no I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A registered customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    /// Its id.
    pub customer_id: String,
    /// Display name, 1-100 characters.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// When registered (ms since the epoch).
    pub registered_at: i64,
    /// When last changed.
    pub updated_at: i64,
}

/// One field's change, as the history shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldChange {
    /// The value before.
    pub from: String,
    /// The value after.
    pub to: String,
}

/// The rule a name breaks, if any.
pub fn name_problem(name: &str) -> Option<&'static str> {
    let length = name.trim().chars().count();
    (length == 0 || length > 100).then_some("must be 1-100 characters")
}

/// The rule an e-mail address breaks, if any. Deliberately shallow: one `@` with something on both sides and a
/// dot in the domain; whether the address exists is for a confirmation mail to find out.
pub fn email_problem(email: &str) -> Option<&'static str> {
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.split('.').count() >= 2
                && domain.split('.').all(|part| !part.is_empty())
        });
    (!valid).then_some("must be an e-mail address like name@example.org")
}

/// Applies a change of name and/or e-mail; returns the changed customer and only the fields that really changed
/// (an update that changes nothing changes nothing, and announces nothing).
pub fn apply_update(
    customer: &Customer,
    name: Option<&str>,
    email: Option<&str>,
    now: i64,
) -> (Customer, BTreeMap<String, FieldChange>) {
    let mut updated = customer.clone();
    let mut changes = BTreeMap::new();
    if let Some(name) = name.map(str::trim).filter(|name| *name != customer.name) {
        changes.insert(
            "name".to_owned(),
            FieldChange {
                from: customer.name.clone(),
                to: name.to_owned(),
            },
        );
        updated.name = name.to_owned();
    }
    if let Some(email) = email.filter(|email| *email != customer.email) {
        changes.insert(
            "email".to_owned(),
            FieldChange {
                from: customer.email.clone(),
                to: email.to_owned(),
            },
        );
        updated.email = email.to_owned();
    }
    if !changes.is_empty() {
        updated.updated_at = now;
    }
    (updated, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Customer {
        Customer {
            customer_id: "c1".into(),
            name: "Ann".into(),
            email: "ann@example.org".into(),
            registered_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn only_real_changes_are_changes() {
        let (updated, changes) = apply_update(&ann(), Some("Ann"), Some("ann@new.example"), 5);
        assert_eq!(changes.keys().collect::<Vec<_>>(), ["email"]);
        assert_eq!(
            (updated.email.as_str(), updated.updated_at),
            ("ann@new.example", 5)
        );
        let (same, none) = apply_update(&ann(), Some(" Ann "), None, 9);
        assert!(none.is_empty());
        assert_eq!(same.updated_at, 1);
    }

    #[test]
    fn names_and_addresses_are_checked() {
        assert_eq!(name_problem("  "), Some("must be 1-100 characters"));
        assert_eq!(name_problem("Ann"), None);
        for bad in [
            "ann",
            "@example.org",
            "ann@",
            "ann@example",
            "an n@example.org",
            "a@b@example.org",
            "ann@example..org",
        ] {
            assert!(email_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(email_problem("ann.lee+food@mail.example.org"), None);
    }
}
