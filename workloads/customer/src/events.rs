//! Events the customer service publishes (subject: the customer id).

use crate::domain::FieldChange;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Topic this service publishes to.
pub const CUSTOMERS_TOPIC: &str = "customers";

/// A customer registered.
pub const CUSTOMER_REGISTERED: &str = "food.customer.registered.v1";
/// A customer changed their name or e-mail.
pub const CUSTOMER_UPDATED: &str = "food.customer.updated.v1";
/// A customer was deleted.
pub const CUSTOMER_DELETED: &str = "food.customer.deleted.v1";

/// Data of [`CUSTOMER_REGISTERED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRegistered {
    /// The customer.
    pub customer_id: String,
    /// Name.
    pub name: String,
    /// E-mail.
    pub email: String,
}

/// Data of [`CUSTOMER_UPDATED`]: only the fields that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerUpdated {
    /// The customer.
    pub customer_id: String,
    /// Field name to its old and new value.
    pub changes: BTreeMap<String, FieldChange>,
}

/// Data of [`CUSTOMER_DELETED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerDeleted {
    /// The customer.
    pub customer_id: String,
}
