//! The kitchen through its HTTP API and its events, on both stores, over the in-process bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use food_delivery_kitchen::events::{
    COOKING_FINISHED, COOKING_REQUESTED, COOKING_STARTED, KITCHEN_REJECTED, MENU_ITEM_UPDATED,
    ORDER_CANCELLED, ORDER_CLEARED, ORDER_PLACED, TICKET_ACCEPTED, TICKET_CANCELLED,
};
use food_delivery_kitchen::{Settings, default_menu, start};
use food_delivery_testkit::{Backend, InProcessService, TestDatabase, eventually, stock_on_menu};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

struct Kitchen(InProcessService);

fn settings(auto_cook: bool) -> Settings {
    Settings {
        starter_menu: default_menu(),
        auto_cook,
        cook_time: Duration::from_millis(200),
        menu_announce_every: Duration::from_secs(3600),
        auto_start_after: Duration::ZERO,
    }
}

impl std::ops::Deref for Kitchen {
    type Target = InProcessService;
    fn deref(&self) -> &InProcessService {
        &self.0
    }
}

impl Kitchen {
    async fn start(backend: Backend, auto_cook: bool) -> Self {
        Self(
            InProcessService::start_with(backend, |config, bus| {
                start(config, settings(auto_cook), Some(bus))
            })
            .await,
        )
    }

    async fn start_on(database: TestDatabase, auto_cook: bool) -> Self {
        Self(
            InProcessService::start_on(database, |config, bus| {
                start(config, settings(auto_cook), Some(bus))
            })
            .await,
        )
    }

    fn kitchen_events(&self) -> Vec<(String, String, Value)> {
        self.published("food.kitchen")
    }

    /// Types of the kitchen's events about one order, in order.
    fn events_of(&self, order_id: &str) -> Vec<String> {
        self.kitchen_events()
            .into_iter()
            .filter(|(_, subject, _)| subject == order_id)
            .map(|(event_type, _, _)| event_type)
            .collect()
    }

    /// Plays the order service clearing the kitchen to cook `order_id`.
    async fn clear(&self, order_id: &str) {
        self.publish(
            "food.orders",
            ORDER_CLEARED,
            order_id,
            json!({"orderId": order_id, "customerId": "customer-1"}),
        )
        .await;
    }

    async fn place(&self, order_id: &str, items: Value) {
        self.publish(
            "food.orders",
            ORDER_PLACED,
            order_id,
            json!({"orderId": order_id, "items": items, "amount": 1}),
        )
        .await;
    }

    async fn stock_of(&self, menu_id: &str) -> i64 {
        let (_, menu) = self.call("GET", "/menu", None).await;
        stock_on_menu(&menu, menu_id)
    }

    async fn ticket_status(&self, order_id: &str) -> Option<String> {
        let (status, ticket) = self
            .call("GET", &format!("/tickets/{order_id}"), None)
            .await;
        (status == StatusCode::OK).then(|| ticket["status"].as_str().unwrap().to_owned())
    }
}

async fn the_starter_menu_is_seeded_once_and_changes_are_published(backend: Backend) {
    let kitchen = Kitchen::start(backend, false).await;
    let (status, menu) = kitchen.call("GET", "/menu", None).await;
    assert_eq!(
        (status, menu.as_array().unwrap().len()),
        (StatusCode::OK, 4)
    );
    let (status, changed) = kitchen
        .call(
            "PUT",
            "/menu/bibimbap",
            Some(r#"{"name": "Bibimbap", "price": 1300, "stock": 5}"#),
        )
        .await;
    assert_eq!(
        (status, changed["price"].as_i64()),
        (StatusCode::OK, Some(1300))
    );
    let updates = eventually(WAIT, "menu events", || async {
        let updates: Vec<_> = kitchen
            .kitchen_events()
            .into_iter()
            .filter(|(event_type, _, _)| event_type == MENU_ITEM_UPDATED)
            .collect();
        (updates.len() == 5).then_some(updates)
    })
    .await;
    assert_eq!(updates[4].1, "bibimbap");
    assert_eq!(
        updates[4].2["price"], 1300,
        "the order service learns prices from these"
    );

    // A restart on the same store keeps the change, seeds nothing again, and announces every dish as it stands
    // (the order service's copy of the menu heals from these, whatever it lost).
    let Kitchen(service) = kitchen;
    service.host.stop().await;
    let restarted = Kitchen::start_on(service.database, false).await;
    assert_eq!(restarted.stock_of("bibimbap").await, 5);
    let announced = eventually(WAIT, "the menu announced again", || async {
        let events = restarted.kitchen_events();
        (events.len() == 4).then_some(events)
    })
    .await;
    assert!(
        announced
            .iter()
            .all(|(event_type, _, _)| event_type == MENU_ITEM_UPDATED)
    );
    let bibimbap = announced
        .iter()
        .find(|(_, menu_id, _)| menu_id == "bibimbap")
        .unwrap();
    assert_eq!(bibimbap.2["price"], 1300, "as it stands, not as seeded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(restarted.kitchen_events().len(), 4, "once per start");
    restarted.0.stop().await;
}

async fn a_placed_order_is_accepted_with_its_stock_and_cooked(backend: Backend) {
    let kitchen = Kitchen::start(backend, false).await;
    kitchen
        .place(
            "order-1",
            json!([{"menuId": "bibimbap", "qty": 2}, {"menuId": "green-tea", "qty": 1}]),
        )
        .await;
    eventually(WAIT, "the ticket", || async {
        (kitchen.ticket_status("order-1").await.as_deref() == Some("ACCEPTED")).then_some(())
    })
    .await;
    assert_eq!(
        (
            kitchen.stock_of("bibimbap").await,
            kitchen.stock_of("green-tea").await
        ),
        (98, 199)
    );
    assert_eq!(
        kitchen
            .call("POST", "/tickets/order-1/finish", None)
            .await
            .0,
        StatusCode::CONFLICT,
        "not cooking yet"
    );
    let (status, ticket) = kitchen.call("POST", "/tickets/order-1/start", None).await;
    assert_eq!(
        (status, ticket["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ACCEPTED")),
        "asked to start; nothing cooks before the order service clears it"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        kitchen.ticket_status("order-1").await.as_deref(),
        Some("ACCEPTED")
    );
    kitchen.clear("order-1").await;
    eventually(WAIT, "cooking", || async {
        (kitchen.ticket_status("order-1").await.as_deref() == Some("COOKING")).then_some(())
    })
    .await;
    assert_eq!(
        kitchen.call("POST", "/tickets/order-1/start", None).await.0,
        StatusCode::CONFLICT,
        "already cooking"
    );
    let (status, ticket) = kitchen.call("POST", "/tickets/order-1/finish", None).await;
    assert_eq!(
        (status, ticket["status"].as_str()),
        (StatusCode::OK, Some("READY"))
    );
    eventually(WAIT, "the cooking events", || async {
        (kitchen.events_of("order-1")
            == [
                TICKET_ACCEPTED,
                COOKING_REQUESTED,
                COOKING_STARTED,
                COOKING_FINISHED,
            ])
        .then_some(())
    })
    .await;
    kitchen.0.stop().await;
}

async fn an_order_short_of_stock_is_rejected_with_the_missing_dishes(backend: Backend) {
    let kitchen = Kitchen::start(backend, false).await;
    kitchen.place("order-big", json!([{"menuId": "green-tea", "qty": 150}, {"menuId": "green-tea", "qty": 100}, {"menuId": "bibimbap", "qty": 1}])).await;
    let rejected = eventually(WAIT, "the rejection", || async {
        kitchen
            .kitchen_events()
            .into_iter()
            .find(|(event_type, _, _)| event_type == KITCHEN_REJECTED)
    })
    .await;
    assert_eq!(rejected.1, "order-big");
    assert_eq!(rejected.2["reason"], "OUT_OF_STOCK");
    assert_eq!(
        rejected.2["missingItems"],
        json!([{"menuId": "green-tea", "requested": 250, "available": 200}])
    );
    assert_eq!(
        kitchen.ticket_status("order-big").await.as_deref(),
        Some("REJECTED"),
        "the rejection is recorded"
    );
    assert_eq!(
        (
            kitchen.stock_of("green-tea").await,
            kitchen.stock_of("bibimbap").await
        ),
        (200, 100),
        "nothing taken"
    );

    // The same order again, as a replay older than the inbox brings it (a new delivery the inbox does not know),
    // after a restock that would now cover it: the order was rejected and stays rejected.
    let (status, _) = kitchen
        .call(
            "PUT",
            "/menu/green-tea",
            Some(r#"{"name": "Green tea", "price": 300, "stock": 1000}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    kitchen.place("order-big", json!([{"menuId": "green-tea", "qty": 150}, {"menuId": "green-tea", "qty": 100}, {"menuId": "bibimbap", "qty": 1}])).await;
    // A cancellation of the rejected order (the order service's OrderRejected travels separately) gives nothing.
    kitchen
        .publish(
            "food.orders",
            ORDER_CANCELLED,
            "order-big",
            json!({"orderId": "order-big"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(kitchen.events_of("order-big"), [KITCHEN_REJECTED]);
    assert_eq!(
        (
            kitchen.stock_of("green-tea").await,
            kitchen.stock_of("bibimbap").await
        ),
        (1000, 100),
        "the replay took nothing and the cancel gave nothing back"
    );
    kitchen.0.stop().await;
}

/// The cancellation can reach the kitchen before the order (a replay, a consumer reset): the order is then never
/// reserved, and no stock moves.
async fn a_cancellation_before_the_order_keeps_it_from_being_reserved(backend: Backend) {
    let kitchen = Kitchen::start(backend, false).await;
    kitchen
        .publish(
            "food.orders",
            ORDER_CANCELLED,
            "order-early",
            json!({"orderId": "order-early"}),
        )
        .await;
    eventually(WAIT, "the tombstone", || async {
        (kitchen.ticket_status("order-early").await.as_deref() == Some("CANCELLED")).then_some(())
    })
    .await;
    kitchen
        .place("order-early", json!([{"menuId": "tteokbokki", "qty": 3}]))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        kitchen.stock_of("tteokbokki").await,
        100,
        "nothing reserved"
    );
    assert_eq!(kitchen.events_of("order-early"), Vec::<String>::new());
    kitchen.0.stop().await;
}

async fn a_cancelled_order_gives_its_stock_back_exactly_once(backend: Backend) {
    let kitchen = Kitchen::start(backend, false).await;
    kitchen
        .place("order-3", json!([{"menuId": "tteokbokki", "qty": 3}]))
        .await;
    eventually(WAIT, "the ticket", || async {
        kitchen.ticket_status("order-3").await
    })
    .await;
    assert_eq!(kitchen.stock_of("tteokbokki").await, 97);
    kitchen
        .publish(
            "food.orders",
            ORDER_CANCELLED,
            "order-3",
            json!({"orderId": "order-3"}),
        )
        .await;
    kitchen
        .publish(
            "food.orders",
            ORDER_CANCELLED,
            "order-3",
            json!({"orderId": "order-3"}),
        )
        .await;
    eventually(WAIT, "the cancellation", || async {
        (kitchen.ticket_status("order-3").await.as_deref() == Some("CANCELLED")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        kitchen.stock_of("tteokbokki").await,
        100,
        "given back once, not twice"
    );
    assert_eq!(
        kitchen.events_of("order-3"),
        [TICKET_ACCEPTED, TICKET_CANCELLED]
    );
    assert_eq!(
        kitchen.call("POST", "/tickets/order-3/start", None).await.0,
        StatusCode::CONFLICT
    );
    kitchen.0.stop().await;
}

food_delivery_testkit::on_both_backends!(
    the_starter_menu_is_seeded_once_and_changes_are_published,
    a_placed_order_is_accepted_with_its_stock_and_cooked,
    an_order_short_of_stock_is_rejected_with_the_missing_dishes,
    a_cancelled_order_gives_its_stock_back_exactly_once,
    a_cancellation_before_the_order_keeps_it_from_being_reserved,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_mode_cooks_without_anyone_pressing_buttons() {
    let kitchen = Kitchen::start(Backend::Sqlite, true).await;
    kitchen
        .place("order-auto", json!([{"menuId": "bibimbap", "qty": 1}]))
        .await;
    eventually(WAIT, "the request to cook", || async {
        kitchen
            .events_of("order-auto")
            .contains(&COOKING_REQUESTED.to_owned())
            .then_some(())
    })
    .await;
    kitchen.clear("order-auto").await;
    eventually(WAIT, "the auto cook", || async {
        (kitchen.ticket_status("order-auto").await.as_deref() == Some("READY")).then_some(())
    })
    .await;
    // The relay publishes after the commit the status shows, so the events may trail it a little.
    eventually(WAIT, "the cooking events", || async {
        (kitchen.events_of("order-auto")
            == [
                TICKET_ACCEPTED,
                COOKING_REQUESTED,
                COOKING_STARTED,
                COOKING_FINISHED,
            ])
        .then_some(())
    })
    .await;
    kitchen.0.stop().await;
}

/// The kitchen asked to cook, and the customer's cancel won at the order service (which then never clears it):
/// whatever the cooks or the auto mode do, nothing is cooked, and the stock comes back once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_cancelled_before_it_was_cleared_is_never_cooked() {
    let kitchen = Kitchen::start(Backend::Sqlite, true).await;
    kitchen
        .place("order-gone", json!([{"menuId": "bibimbap", "qty": 2}]))
        .await;
    eventually(WAIT, "the request to cook", || async {
        kitchen
            .events_of("order-gone")
            .contains(&COOKING_REQUESTED.to_owned())
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        kitchen.ticket_status("order-gone").await.as_deref(),
        Some("ACCEPTED"),
        "the auto mode does not cook what is not cleared"
    );
    kitchen
        .publish(
            "food.orders",
            ORDER_CANCELLED,
            "order-gone",
            json!({"orderId": "order-gone"}),
        )
        .await;
    eventually(WAIT, "the cancellation", || async {
        (kitchen.ticket_status("order-gone").await.as_deref() == Some("CANCELLED")).then_some(())
    })
    .await;
    assert_eq!(kitchen.stock_of("bibimbap").await, 100);
    assert_eq!(
        kitchen
            .call("POST", "/tickets/order-gone/start", None)
            .await
            .0,
        StatusCode::CONFLICT
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        kitchen.events_of("order-gone"),
        [TICKET_ACCEPTED, COOKING_REQUESTED, TICKET_CANCELLED]
    );
    kitchen.0.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_problem_naming_the_field_and_change_nothing() {
    let kitchen = Kitchen::start(Backend::Sqlite, false).await;
    let cases = [
        (
            "/menu/bibimbap",
            r#"{"name": "Bibimbap", "price": -1, "stock": 5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "price",
        ),
        (
            "/menu/bibimbap",
            r#"{"name": "Bibimbap", "price": 1, "stock": -5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "stock",
        ),
        (
            "/menu/bibimbap",
            r#"{"name": " ", "price": 1, "stock": 5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            "/menu/Bad%20Id",
            r#"{"name": "x", "price": 1, "stock": 5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "menuId",
        ),
        (
            "/menu/bibimbap",
            r#"{"name": "x", "price": "cheap", "stock": 5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "price",
        ),
        (
            "/menu/bibimbap",
            r#"{"name": "x", "price": 1, "stock": 5, "spicy": true}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "spicy",
        ),
        (
            "/menu/bibimbap",
            r#"{"name": "x", "#,
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
    ];
    for (path, body, expected, field) in cases {
        let (status, problem) = kitchen.call("PUT", path, Some(body)).await;
        assert_eq!(status, expected, "{body}: {problem}");
        assert!(
            problem.to_string().contains(field),
            "{body}: the problem does not name {field}: {problem}"
        );
    }
    assert_eq!(
        kitchen.call("GET", "/tickets/nothing", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        kitchen.call("POST", "/tickets/nothing/start", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, menu) = kitchen.call("GET", "/menu", None).await;
    let bibimbap = menu
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["menuId"] == "bibimbap")
        .unwrap()
        .clone();
    assert_eq!(
        (bibimbap["price"].as_i64(), bibimbap["stock"].as_i64()),
        (Some(1200), Some(100)),
        "nothing changed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        kitchen.kitchen_events().len(),
        4,
        "only the seeded menu was published"
    );
    kitchen.0.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route_and_is_valid() {
    let kitchen = Kitchen::start(Backend::Sqlite, false).await;
    let (status, document) = kitchen.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for (path, method) in [
        ("/menu", "get"),
        ("/menu/{menu_id}", "put"),
        ("/tickets/{order_id}", "get"),
        ("/tickets/{order_id}/start", "post"),
        ("/tickets/{order_id}/finish", "post"),
    ] {
        assert!(
            document["paths"][path][method].is_object(),
            "{method} {path} missing from the document"
        );
    }
    food_delivery_testkit::assert_valid_openapi(&document);
    kitchen.0.stop().await;
}
