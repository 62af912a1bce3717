//! A rolling restart as a Deployment does it, over the real broker (tansu) and PostgreSQL: a new instance starts
//! and becomes ready next to the old one, then the old one gets SIGTERM and exits. The consumer group must hand the
//! old member's partitions to the new one within seconds, so the saga never stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use food_delivery_testkit::{Backend, eventually, free_port};
use serde_json::Value;
use std::time::Instant;
use support::{Cluster, ServiceProcess, WAIT};

/// Orders placed after the old kitchen's SIGTERM: enough that every partition of the orders topic gets some.
const ORDERS_AFTER_SIGTERM: usize = 12;

/// The kitchen's readiness as another instance of it reports it.
async fn readiness(client: &reqwest::Client, kitchen: &ServiceProcess) -> Option<Value> {
    let response = client.get(kitchen.url("/health/ready")).send().await.ok()?;
    (response.status() == 200).then_some(())?;
    response.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_the_kitchen_hands_its_partitions_over_within_seconds() {
    let mut cluster = Cluster::start_with(Backend::Postgres, false).await;
    let (status, first) = cluster.place("customer-roll", "bibimbap", 1).await;
    assert_eq!(status, 201, "{first}");
    cluster
        .wait_for_status(first["orderId"].as_str().unwrap(), "ACCEPTED")
        .await;

    // The new instance: the same settings and store, its own port, as a new pod of the same Deployment.
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut environment = cluster.services["kitchen"].environment.clone();
    environment.retain(|(key, _)| key != "HTTP_PORT");
    environment.push(("HTTP_PORT".to_owned(), port.to_string()));
    let mut new_kitchen = ServiceProcess {
        name: "kitchen",
        port,
        environment,
        log: directory.path().join("kitchen-new.log"),
        child: None,
    };
    new_kitchen.start();
    // Ready, and a member of the group with partitions of its own (librdkafka reports every 5 s).
    let joined = eventually(WAIT, "the new kitchen to join its group", || async {
        let body = readiness(&cluster.client, &new_kitchen).await?;
        let members = body["checks"]["consumers"]["members"].as_array()?.clone();
        members
            .iter()
            .any(|member| member["assignedPartitions"].as_i64() > Some(0))
            .then_some(members)
    })
    .await;
    eprintln!("new kitchen joined: {joined:?}");

    // The old instance goes, as the kubelet does it; the clock runs from its SIGTERM.
    let sigterm = Instant::now();
    cluster.stop_service("kitchen", "TERM");
    let exited = sigterm.elapsed();
    let mut placed = Vec::with_capacity(ORDERS_AFTER_SIGTERM);
    for index in 0..ORDERS_AFTER_SIGTERM {
        let (status, order) = cluster
            .place(&format!("customer-after-{index}"), "bibimbap", 1)
            .await;
        assert_eq!(status, 201, "{order}");
        placed.push(order["orderId"].as_str().unwrap().to_owned());
    }
    for order_id in &placed {
        cluster.wait_for_status(order_id, "ACCEPTED").await;
    }
    let handed_over = sigterm.elapsed();
    eprintln!(
        "kitchen hand-over: old instance exited {} ms after SIGTERM; every order placed after it accepted {} ms after \
         SIGTERM",
        exited.as_millis(),
        handed_over.as_millis()
    );
    let members =
        readiness(&cluster.client, &new_kitchen).await.unwrap()["checks"]["consumers"]["members"]
            .clone();
    eprintln!("new kitchen now: {members}");
    new_kitchen.stop("TERM");
    cluster.stop().await;
}
