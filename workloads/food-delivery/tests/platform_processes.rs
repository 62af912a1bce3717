//! The whole platform as the operator runs it: eight `food-delivery serve` processes, the gateway in front, over
//! the real broker. The saga flows through the gateway, my page stopped and caught up, my page rebuilt from the
//! topics alone, and the gateway with a service down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use food_delivery_testkit::{Backend, TestDatabase, eventually, free_port};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::scenarios::{Outcome, Platform, check_invariants, saga_flows};
use support::{Cluster, PLATFORM, ServiceProcess, WAIT};

/// The kitchen asks to cook after the default 2 s, the window in which the test cancels.
const TIMINGS: [(&str, &str); 2] = [
    ("KITCHEN_COOK_TIME_MS", "1500"),
    ("DELIVERY_RIDE_TIME_MS", "300"),
];

async fn the_saga_flows_through_the_gateway_over_the_broker(backend: Backend) {
    let cluster = Cluster::start_services(backend, true, &PLATFORM, &TIMINGS).await;
    saga_flows(&cluster.platform()).await;
    cluster.stop().await;
}

food_delivery_testkit::on_both_backends!(the_saga_flows_through_the_gateway_over_the_broker);

/// The view my page at `base` has of each order and of the customer.
async fn views(mypage: &Platform, outcome: &Outcome) -> Vec<Value> {
    let mut views = Vec::new();
    for (order_id, _) in &outcome.orders {
        let (status, trace) = mypage
            .call("GET", &format!("/mypage/orders/{order_id}"), None)
            .await;
        assert_eq!(status, 200, "{trace}");
        views.push(trace);
    }
    for path in [
        format!("/mypage/orders?customerId={}", outcome.customer_id),
        format!("/mypage/customers/{}/history", outcome.customer_id),
    ] {
        views.push(mypage.call("GET", &path, None).await.1);
    }
    views
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_mypage_catches_up_exactly_and_a_rebuild_from_the_topics_gives_the_same_views() {
    let mut cluster = Cluster::start_services(Backend::Sqlite, true, &PLATFORM, &TIMINGS).await;
    let platform = cluster.platform();
    let customer_id = platform.register("Ada", "ada@example.org").await;
    let first = platform.place(&customer_id, "bibimbap", 2).await;
    platform
        .wait_for_trace(&first, "DELIVERED", &["Delivered"])
        .await;

    cluster.stop_service("mypage", "TERM");
    // While my page is down, orders flow and the customer changes.
    let (status, problem) = platform
        .call("GET", &format!("/api/mypage/orders/{first}"), None)
        .await;
    assert_eq!(status, 503, "the gateway says my page is down: {problem}");
    let second = platform.place(&customer_id, "kimchi-stew", 1).await;
    let cancelled = platform.place(&customer_id, "green-tea", 2).await;
    let (status, _) = platform
        .call("POST", &format!("/api/orders/{cancelled}/cancel"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = platform
        .call(
            "PATCH",
            &format!("/api/customers/{customer_id}"),
            Some(json!({"name": "Ada L."})),
        )
        .await;
    assert_eq!(status, 200);
    eventually(WAIT, "the second order to be delivered", || async {
        let (_, order) = platform
            .call("GET", &format!("/api/orders/{second}"), None)
            .await;
        (order["status"] == "DELIVERED").then_some(())
    })
    .await;

    cluster.start_service("mypage").await;
    let outcome = Outcome {
        customer_id: customer_id.clone(),
        orders: vec![
            (first, "DELIVERED"),
            (second, "DELIVERED"),
            (cancelled, "CANCELLED"),
        ],
    };
    // Caught up exactly: statuses equal the order service's, one refund, stamps right, nothing twice.
    check_invariants(&platform, &outcome).await;
    for (order_id, _) in &outcome.orders {
        let (_, trace) = platform
            .call("GET", &format!("/api/mypage/orders/{order_id}"), None)
            .await;
        for step in ["OrderPlaced", "PaymentApproved", "StampsEarned"] {
            assert_eq!(
                support::scenarios::count_steps(&trace, step),
                1,
                "{step} once: {trace}"
            );
        }
    }
    let history = platform.wait_for_history(&customer_id, 2).await;
    assert_eq!(history["name"], "Ada L.");
    let caught_up = views(&Platform::new(cluster.services["mypage"].url("")), &outcome).await;

    // A second my page on an empty store, fed by nothing but the topics.
    let rebuilt_database = TestDatabase::create(Backend::Sqlite).await;
    let port = free_port();
    let mut environment = cluster.services["mypage"].environment.clone();
    for (key, value) in [
        ("HTTP_PORT", port.to_string()),
        ("DATABASE_URL", rebuilt_database.url.clone()),
    ] {
        environment.retain(|(existing, _)| existing != key);
        environment.push((key.to_owned(), value));
    }
    let directory = tempfile::tempdir().unwrap();
    let mut rebuilt = ServiceProcess {
        name: "mypage",
        port,
        environment,
        log: directory.path().join("mypage-rebuilt.log"),
        child: None,
    };
    rebuilt.start();
    let rebuilt_platform = Platform::new(rebuilt.url(""));
    let ready = rebuilt.url("/health/ready");
    eventually(WAIT, "the rebuilt my page to become ready", || async {
        let response = rebuilt_platform.client.get(&ready).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    let rebuilt_views = eventually(WAIT, "the rebuilt views", || async {
        let (status, history) = rebuilt_platform
            .call(
                "GET",
                &format!("/mypage/customers/{customer_id}/history"),
                None,
            )
            .await;
        if status != 200 || history["history"].as_array().map(Vec::len) != Some(2) {
            return None;
        }
        let views = views(&rebuilt_platform, &outcome).await;
        (views == caught_up).then_some(views)
    })
    .await;
    assert_eq!(rebuilt_views, caught_up);
    rebuilt.stop("TERM");
    rebuilt_database.remove().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_reaches_its_service_and_a_stopped_one_fails_fast_without_touching_the_others()
{
    let mut cluster = Cluster::start_services(Backend::Sqlite, true, &PLATFORM, &TIMINGS).await;
    let platform = cluster.platform();
    // (path through the gateway, owning service, expected status): the gateway's answer must be the service's.
    let routes = [
        ("/api/menu", "kitchen", 200),
        ("/api/tickets/nope", "kitchen", 404),
        ("/api/customers/nope", "customer", 404),
        ("/api/orders?customerId=nobody", "order", 200),
        ("/api/orders/nope", "order", 404),
        ("/api/payments?orderId=nope", "payment", 200),
        ("/api/deliveries/nope", "delivery", 404),
        ("/api/mypage/orders?customerId=nobody", "mypage", 200),
        ("/api/mypage/customers/nope/history", "mypage", 404),
        ("/api/stamps/nobody", "stamp", 200),
    ];
    for (path, service, expected) in routes {
        let (status, through_gateway) = platform.call("GET", path, None).await;
        let direct = Platform::new(cluster.services[service].url(""));
        let (direct_status, direct_body) = direct
            .call("GET", path.trim_start_matches("/api"), None)
            .await;
        assert_eq!(status, expected, "{path}: {through_gateway}");
        assert_eq!(
            (status, &through_gateway["detail"]),
            (direct_status, &direct_body["detail"]),
            "{path}"
        );
        if expected == 200 {
            assert_eq!(through_gateway, direct_body, "{path}");
        }
    }
    // Bad input gets the service's own 4xx, unchanged.
    for body in [
        json!({"customerId": "c", "items": [{"menuId": "bibimbap", "qty": 0}]}),
        json!({"customerId": "c", "items": "three"}),
    ] {
        let through_gateway = platform
            .call("POST", "/api/orders", Some(body.clone()))
            .await;
        let direct = Platform::new(cluster.services["order"].url(""))
            .call("POST", "/orders", Some(body))
            .await;
        assert!(
            (400..500).contains(&through_gateway.0),
            "{through_gateway:?}"
        );
        assert_eq!(through_gateway, direct);
    }

    cluster.stop_service("stamp", "TERM");
    let started = Instant::now();
    let (status, problem) = platform.call("GET", "/api/stamps/nobody", None).await;
    assert_eq!(status, 503, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("/api/stamps"),
        "{problem}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    let (status, _) = platform.call("GET", "/api/menu", None).await;
    assert_eq!(status, 200, "other routes are unaffected");
    let customer_id = platform.register("Lin", "lin@example.org").await;
    let order = platform.place(&customer_id, "tteokbokki", 1).await;
    platform.wait_for_trace(&order, "DELIVERED", &[]).await;
    cluster.start_service("stamp").await;
    eventually(WAIT, "the stamps to catch up", || async {
        (platform.stamps(&customer_id).await == 1).then_some(())
    })
    .await;
    cluster.stop().await;
}
