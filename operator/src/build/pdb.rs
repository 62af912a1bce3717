//! A PodDisruptionBudget (policy/v1) only for components that always run at least two replicas: with one, a
//! budget would block node drains forever. One pod at a time may go; unhealthy pods may always be evicted, so a
//! broken rollout cannot block maintenance.

use super::metadata::AppIdentity;
use super::plan::ComponentPlan;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The component's PDB, when its minimum is two or more.
pub fn build_disruption_budget(
    app: &AppIdentity,
    component: &ComponentPlan,
) -> Option<PodDisruptionBudget> {
    (component.minimum_replicas() >= 2).then(|| PodDisruptionBudget {
        metadata: app.metadata(
            app.object_name(component.component),
            Some(component.component),
            true,
        ),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(app.selector(component.component)),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{identity, plan_of_postgres};

    #[test]
    fn a_budget_exactly_when_the_minimum_is_two_or_more() {
        let plans = plan_of_postgres(
            "components: {order: {replicas: 2}, payment: {autoscaling: {minReplicas: 2}}, kitchen: {autoscaling: {minReplicas: 1, maxReplicas: 4}}}",
        );
        let budget = |name: &str| {
            build_disruption_budget(
                &identity(),
                plans
                    .iter()
                    .find(|plan| plan.component.name() == name)
                    .unwrap(),
            )
        };
        assert!(budget("order").is_some());
        assert!(budget("payment").is_some());
        assert!(budget("kitchen").is_none());
        assert!(budget("stamp").is_none(), "one replica");
        let spec = budget("order").unwrap().spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            Some("AlwaysAllow")
        );
    }
}
