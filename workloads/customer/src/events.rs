//! Events the customer service publishes (subject: the customer id).

use crate::domain::FieldChange;
pub use food_delivery_contract::event_types::{
    CUSTOMER_DELETED, CUSTOMER_REGISTERED, CUSTOMER_UPDATED,
};
pub use food_delivery_contract::topics::CUSTOMERS_TOPIC;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
