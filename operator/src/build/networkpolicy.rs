//! One NetworkPolicy per app when asked for: ingress to the app's pods is denied except to the gateway from
//! anywhere, between the app's own pods, and for metrics scrapers; egress is limited to DNS, Kafka, PostgreSQL
//! and the app's own pods. The database and Kafka ports are the spec's (networkPolicy.databasePorts and
//! kafkaPorts), by default PostgreSQL's 5432 and the bootstrap servers' ports.

use super::metadata::AppIdentity;
use crate::resource::{FoodDeliveryAppSpec, PortNumber};
use food_delivery_contract::Component;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};

/// PostgreSQL's port, unless the spec lists others (the URL is in a Secret the build does not read).
pub const POSTGRES_PORT: i32 = 5432;

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    }
}

fn pods(labels: BTreeMap<String, String>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(labels),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// The ports of the Kafka bootstrap servers (9092 where none is given).
pub fn kafka_ports(bootstrap_servers: &str) -> BTreeSet<i32> {
    bootstrap_servers
        .split(',')
        .map(|server| {
            server
                .trim()
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
                .unwrap_or(9092)
        })
        .collect()
}

/// The app's NetworkPolicy, when enabled.
pub fn build_network_policy(
    app: &AppIdentity,
    spec: &FoodDeliveryAppSpec,
) -> Option<NetworkPolicy> {
    let policy = spec
        .network_policy
        .as_ref()
        .filter(|policy| policy.enabled)?;
    let http = i32::from(food_delivery_contract::HTTP_PORT);
    let scrapers = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "prometheus".to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    // The gateway's front door is a policy of its own (build_gateway_network_policy): policies add up.
    let ingress = vec![
        // Components call each other (order -> payment, gateway -> everyone).
        NetworkPolicyIngressRule {
            from: Some(vec![pods(app.app_selector())]),
            ports: Some(vec![tcp(http)]),
        },
        // Prometheus scrapes /metrics on the HTTP port.
        NetworkPolicyIngressRule {
            from: Some(vec![scrapers]),
            ports: Some(vec![tcp(http)]),
        },
    ];
    let dns = NetworkPolicyEgressRule {
        to: None,
        ports: Some(vec![
            NetworkPolicyPort {
                port: Some(IntOrString::Int(53)),
                protocol: Some("UDP".to_owned()),
                ..NetworkPolicyPort::default()
            },
            tcp(53),
        ]),
    };
    let listed =
        |ports: &[PortNumber]| -> BTreeSet<i32> { ports.iter().map(|port| port.0).collect() };
    let brokers = Some(listed(&policy.kafka_ports))
        .filter(|ports| !ports.is_empty())
        .unwrap_or_else(|| kafka_ports(&spec.kafka.bootstrap_servers));
    let databases = Some(listed(&policy.database_ports))
        .filter(|ports| !ports.is_empty())
        .unwrap_or_else(|| BTreeSet::from([POSTGRES_PORT]));
    let brokers_and_database: Vec<NetworkPolicyPort> =
        brokers.union(&databases).copied().map(tcp).collect();
    let egress = vec![
        dns,
        NetworkPolicyEgressRule {
            to: None,
            ports: Some(brokers_and_database),
        },
        NetworkPolicyEgressRule {
            to: Some(vec![pods(app.app_selector())]),
            ports: Some(vec![tcp(http)]),
        },
    ];
    Some(NetworkPolicy {
        metadata: app.metadata(app.name.clone(), None, true),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(app.app_selector()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    })
}

/// The gateway's own policy: anyone may reach its HTTP port.
pub fn build_gateway_network_policy(
    app: &AppIdentity,
    spec: &FoodDeliveryAppSpec,
) -> Option<NetworkPolicy> {
    if !spec
        .network_policy
        .as_ref()
        .is_some_and(|policy| policy.enabled)
        || !super::plan::is_enabled(spec, Component::Gateway)
    {
        return None;
    }
    Some(NetworkPolicy {
        metadata: app.metadata(
            app.object_name(Component::Gateway),
            Some(Component::Gateway),
            true,
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(app.selector(Component::Gateway)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: None,
                ports: Some(vec![tcp(i32::from(food_delivery_contract::HTTP_PORT))]),
            }]),
            egress: None,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{app_with, identity};

    #[test]
    fn ingress_is_denied_but_for_the_gateway_peers_and_scrapers_and_egress_is_dns_kafka_database() {
        let mut app = app_with("{sqlite: {}}", "networkPolicy: {enabled: true}");
        app.spec.kafka.bootstrap_servers = "k1:9092,k2:9094".to_owned();
        let policy = build_network_policy(&identity(), &app.spec)
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(policy.policy_types.unwrap(), ["Ingress", "Egress"]);
        assert_eq!(
            policy.pod_selector.unwrap().match_labels.unwrap(),
            identity().app_selector()
        );
        let ingress = policy.ingress.unwrap();
        assert!(
            ingress.iter().all(|rule| rule.from.is_some()),
            "no open ingress to every pod"
        );
        let egress_ports: Vec<i32> = policy
            .egress
            .unwrap()
            .iter()
            .flat_map(|rule| rule.ports.clone().unwrap_or_default())
            .filter_map(|port| match port.port {
                Some(IntOrString::Int(number)) => Some(number),
                _ => None,
            })
            .collect();
        for port in [53, 9092, 9094, POSTGRES_PORT, 8080] {
            assert!(egress_ports.contains(&port), "{port} in {egress_ports:?}");
        }
        let gateway = build_gateway_network_policy(&identity(), &app.spec)
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(
            gateway.pod_selector.unwrap().match_labels.unwrap(),
            identity().selector(Component::Gateway)
        );
        assert!(
            gateway.ingress.unwrap()[0].from.is_none(),
            "the gateway is open to clients"
        );
        let off = app_with("{sqlite: {}}", "");
        assert!(build_network_policy(&identity(), &off.spec).is_none());
        assert!(build_gateway_network_policy(&identity(), &off.spec).is_none());
    }

    #[test]
    fn database_and_kafka_ports_listed_in_the_spec_replace_the_defaults() {
        let app = app_with(
            "{sqlite: {}}",
            "networkPolicy: {enabled: true, databasePorts: [6432], kafkaPorts: [9093, 19093]}",
        );
        let egress = build_network_policy(&identity(), &app.spec)
            .unwrap()
            .spec
            .unwrap()
            .egress
            .unwrap();
        let ports: Vec<i32> = egress[1]
            .ports
            .clone()
            .unwrap()
            .iter()
            .filter_map(|port| match port.port {
                Some(IntOrString::Int(number)) => Some(number),
                _ => None,
            })
            .collect();
        assert_eq!(ports, [6432, 9093, 19093]);
    }

    #[test]
    fn kafka_ports_come_from_the_bootstrap_servers() {
        assert_eq!(
            kafka_ports("a:9092, b:9093,c"),
            BTreeSet::from([9092, 9093])
        );
    }
}
