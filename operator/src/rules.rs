//! The CEL rules the CRD carries for what its schema alone cannot say (rules across fields). Built here as text
//! once: the CRD embeds them (`resource`) and `validate` evaluates the same text client-side.

use food_delivery_contract::Component;
use kube::core::{Message, Rule};

/// The rule that keeps a component on SQLite at one replica without autoscaling: SQLite lives on a
/// ReadWriteOnce volume that only one pod can use. A component that chooses SQLite for itself ignores the
/// defaults' replicas and autoscaling (they are for the components that can scale); one that inherits the app's
/// SQLite must not be scaled by the defaults either.
pub fn sqlite_rule(component: Component) -> Rule {
    let this = format!("self.components.{component}");
    let listed = format!("has(self.components.{component})");
    let disabled = format!("({listed} && has({this}.enabled) && !{this}.enabled)");
    let own_database = format!("({listed} && has({this}.database))");
    let own_sqlite_single = format!(
        "(!has({this}.database.sqlite) || ((has({this}.replicas) ? {this}.replicas : 1) <= 1 && !has({this}.autoscaling)))"
    );
    let replicas = format!(
        "({listed} && has({this}.replicas) ? {this}.replicas : (has(self.defaults) && has(self.defaults.replicas) ? self.defaults.replicas : 1))"
    );
    let autoscaled = format!(
        "(({listed} && has({this}.autoscaling)) || (has(self.defaults) && has(self.defaults.autoscaling)))"
    );
    let app_sqlite_single =
        format!("(!has(self.database.sqlite) || ({replicas} <= 1 && !{autoscaled}))");
    Rule::new(format!(
        "{disabled} || ({own_database} ? {own_sqlite_single} : {app_sqlite_single})"
    ))
    .message(Message::Message(format!(
        "components.{component}: SQLite (a ReadWriteOnce volume) allows one replica and no autoscaling; use postgres to scale"
    )))
}

/// The rule the API server applies to a Deployment's rolling update: maxSurge and maxUnavailable cannot both be
/// zero (no pod could ever be replaced).
pub fn rollout_rule() -> Rule {
    let zero = |field: &str| format!("(has(self.{field}) && self.{field}.matches('^0+%?$'))");
    Rule::new(format!(
        "!({} && (!has(self.maxUnavailable) || {}))",
        zero("maxSurge"),
        zero("maxUnavailable")
    ))
    .message("rollout: maxSurge and maxUnavailable cannot both be 0")
}
