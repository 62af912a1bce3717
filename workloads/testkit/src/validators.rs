use std::path::PathBuf;
use std::process::Command;

/// The Python tools `scripts/test.sh` installs: `FOOD_DELIVERY_VENV`.
pub fn python_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("FOOD_DELIVERY_VENV")
        .expect("FOOD_DELIVERY_VENV is not set: these tests use the Python tools scripts/test.sh installs; run them with it");
    PathBuf::from(venv).join("bin").join(name)
}

/// The Kubernetes version manifests are validated against (the operator's `k8s-openapi` feature).
pub const KUBERNETES_VERSION: &str = "1.33.0";

/// Fails the test unless every object in `yaml` (one or more documents) is valid against the Kubernetes
/// OpenAPI schema of [`KUBERNETES_VERSION`], strictly (unknown fields are errors), by `kubernetes-validate`.
pub fn assert_valid_kubernetes(yaml: &str) {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), yaml).unwrap();
    let output = Command::new(python_tool("kubernetes-validate"))
        .args(["--strict", "--no-warn", "-k", KUBERNETES_VERSION])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubernetes-validate refused:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Fails the test unless `document` is a valid OpenAPI document (checked by `openapi-spec-validator`).
pub fn assert_valid_openapi(document: &serde_json::Value) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(document).unwrap()).unwrap();
    let output = Command::new(python_tool("openapi-spec-validator"))
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "invalid OpenAPI document:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
