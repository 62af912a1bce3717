//! A HorizontalPodAutoscaler (autoscaling/v2) for components with autoscaling: CPU utilization target, and a
//! gentle scale-down (5 minutes of stability, at most a quarter of the pods a minute) so a dip does not throw
//! away warm replicas.

use super::metadata::AppIdentity;
use super::plan::ComponentPlan;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricSpec, MetricTarget,
    ResourceMetricSource,
};

/// The component's HPA, when it autoscales.
pub fn build_autoscaler(
    app: &AppIdentity,
    component: &ComponentPlan,
) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = component.autoscaling?;
    let name = app.object_name(component.component);
    Some(HorizontalPodAutoscaler {
        metadata: app.metadata(name.clone(), Some(component.component), true),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name,
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(autoscaling.target_cpu_percent),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_down: Some(HPAScalingRules {
                    stabilization_window_seconds: Some(300),
                    select_policy: Some("Max".to_owned()),
                    policies: Some(vec![HPAScalingPolicy {
                        type_: "Percent".to_owned(),
                        value: 25,
                        period_seconds: 60,
                    }]),
                    ..HPAScalingRules::default()
                }),
                scale_up: None,
            }),
        }),
        ..HorizontalPodAutoscaler::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{identity, plan_of_postgres};
    use food_delivery_contract::Component;

    #[test]
    fn autoscaled_components_get_an_hpa_with_gentle_scale_down() {
        let plans = plan_of_postgres(
            "components: {order: {autoscaling: {minReplicas: 3, maxReplicas: 9, targetCPUUtilizationPercentage: 60}}}",
        );
        let order = plans
            .iter()
            .find(|plan| plan.component == Component::Order)
            .unwrap();
        let spec = build_autoscaler(&identity(), order).unwrap().spec.unwrap();
        assert_eq!((spec.min_replicas, spec.max_replicas), (Some(3), 9));
        assert_eq!(spec.scale_target_ref.name, "shop-order");
        let metric = spec.metrics.unwrap()[0].resource.clone().unwrap();
        assert_eq!(metric.target.average_utilization, Some(60));
        let down = spec.behavior.unwrap().scale_down.unwrap();
        assert_eq!(down.stabilization_window_seconds, Some(300));
        let kitchen = plans
            .iter()
            .find(|plan| plan.component == Component::Kitchen)
            .unwrap();
        assert!(build_autoscaler(&identity(), kitchen).is_none());
    }
}
