//! The app's ServiceAccount: its pods need no Kubernetes API, so no token is mounted.

use super::metadata::AppIdentity;
use k8s_openapi::api::core::v1::ServiceAccount;

/// One ServiceAccount per app, named like the app.
pub fn build_service_account(app: &AppIdentity) -> ServiceAccount {
    ServiceAccount {
        metadata: app.metadata(app.name.clone(), None, true),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::identity;

    #[test]
    fn no_token_is_mounted() {
        let account = build_service_account(&identity());
        assert_eq!(account.automount_service_account_token, Some(false));
        assert_eq!(account.metadata.name.as_deref(), Some("shop"));
    }
}
