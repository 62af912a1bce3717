//! The Argo CD health check (operator/argocd/health.lua) run by Lua 5.1, the dialect of Argo CD's gopher-lua,
//! on the statuses the operator writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_testkit::python_tool;
use serde_json::{Value, json};
use std::process::Command;

const SCRIPT: &str = include_str!("../argocd/health.lua");

/// Runs the health check on each object; returns (status, message) per object.
fn health(objects: &[Value]) -> Vec<(String, String)> {
    let program = r#"
import json, sys
from lupa import lua51
lua = lua51.LuaRuntime()
def to_lua(value):
    if isinstance(value, dict):
        return lua.table_from({key: to_lua(item) for key, item in value.items()})
    if isinstance(value, list):
        return lua.table_from([to_lua(item) for item in value])
    return value
check = lua.eval("function(obj) " + sys.argv[1] + " end")
for obj in json.loads(sys.argv[2]):
    result = check(to_lua(obj))
    print(json.dumps([result["status"], result["message"]]))
"#;
    let output = Command::new(python_tool("python"))
        .args([
            "-c",
            program,
            SCRIPT,
            &Value::from(objects.to_vec()).to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn app(generation: i64, observed: i64, conditions: Value) -> Value {
    json!({"metadata": {"generation": generation}, "spec": {},
           "status": {"observedGeneration": observed, "conditions": conditions}})
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message})
}

#[test]
fn argo_cd_sees_healthy_progressing_degraded_and_suspended() {
    let ready = app(
        2,
        2,
        json!([
            condition(
                "Ready",
                "True",
                "AllComponentsAvailable",
                "8 components available"
            ),
            condition("Reconciling", "False", "Idle", ""),
            condition("Stalled", "False", "Progressing", ""),
        ]),
    );
    let rolling = app(
        2,
        2,
        json!([
            condition("Ready", "False", "RollingOut", "waiting for order"),
            condition("Reconciling", "True", "RollingOut", "rolling out order"),
            condition("Stalled", "False", "Progressing", ""),
        ]),
    );
    let stalled = app(
        2,
        2,
        json!([
            condition("Ready", "False", "Stalled", "Secret food-db not found"),
            condition("Reconciling", "False", "Idle", ""),
            condition(
                "Stalled",
                "True",
                "SecretMissing",
                "Secret food-db not found"
            ),
        ]),
    );
    let stale = app(3, 2, ready["status"]["conditions"].clone());
    let fresh = json!({"metadata": {"generation": 1}, "spec": {}});
    let paused = json!({"metadata": {"generation": 1}, "spec": {"paused": true}});
    let verdicts = health(&[ready, rolling, stalled, stale, fresh, paused]);
    let statuses: Vec<&str> = verdicts.iter().map(|(status, _)| status.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "Healthy",
            "Progressing",
            "Degraded",
            "Progressing",
            "Progressing",
            "Suspended"
        ]
    );
    assert_eq!(verdicts[1].1, "rolling out order");
    assert_eq!(verdicts[2].1, "SecretMissing: Secret food-db not found");
    assert!(verdicts[3].1.contains("generation 3"));
}
