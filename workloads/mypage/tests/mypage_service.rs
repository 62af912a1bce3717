//! My page through its HTTP API and the events it reads, on both stores, over the in-process bus: the views,
//! catching up after a stop, and a rebuild from the topics into an empty store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::http::StatusCode;
use food_delivery_kit::events::{Event, EventBus, InProcessBus};
use food_delivery_mypage::events::*;
use food_delivery_mypage::start;
use food_delivery_testkit::{Backend, InProcessService, TestDatabase, eventually};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

async fn start_mypage(backend: Backend) -> InProcessService {
    InProcessService::start_with(backend, |config, bus| start(config, Some(bus))).await
}

async fn view(service: &InProcessService, path: &str) -> Option<Value> {
    let (status, body) = service.call("GET", path, None).await;
    match status {
        StatusCode::OK => Some(body),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET {path}: {other} {body}"),
    }
}

/// Waits until the view at `path` satisfies `done`, and returns it.
async fn wait_for(service: &InProcessService, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(WAIT, path, || async {
        view(service, path).await.filter(|body| done(body))
    })
    .await
}

/// A cancelled order's events as the services publish them, kitchen events before the order's on purpose:
/// topics have no order between them.
/// Publishes an event as another service would.
async fn publish(bus: &InProcessBus, topic: &str, event_type: &str, subject: &str, data: Value) {
    let event = Event::new(event_type, "test", subject, &data).unwrap();
    let published = EventBus::InProcess(bus.clone())
        .publish_all(vec![event.to_message(topic)])
        .await;
    assert!(published.iter().all(Result::is_ok));
}

async fn publish_cancelled_order(bus: &InProcessBus, order_id: &str, customer_id: &str) {
    let placed = json!({"orderId": order_id, "customerId": customer_id, "amount": 2400, "paymentId": "p-1",
        "items": [{"menuId": "bibimbap", "name": "Bibimbap", "unitPrice": 1200, "qty": 2}]});
    let payment = json!({"paymentId": "p-1", "orderId": order_id, "customerId": customer_id, "amount": 2400, "qty": 2});
    let ticket = json!({"orderId": order_id, "lines": [{"menuId": "bibimbap", "qty": 2}]});
    let ended =
        json!({"orderId": order_id, "customerId": customer_id, "reason": "changed my mind"});
    let stamps = |balance| json!({"customerId": customer_id, "orderId": order_id, "qty": 2, "balance": balance});
    for (topic, event_type, data) in [
        ("food.kitchen", TICKET_ACCEPTED, ticket.clone()),
        ("food.orders", ORDER_PLACED, placed),
        ("food.payments", PAYMENT_APPROVED, payment.clone()),
        ("food.stamps", STAMPS_EARNED, stamps(2)),
        ("food.orders", ORDER_CANCELLED, ended),
        ("food.kitchen", TICKET_CANCELLED, ticket),
        ("food.payments", PAYMENT_REFUNDED, payment),
        ("food.stamps", STAMPS_DEDUCTED, stamps(0)),
        (
            "food.kitchen",
            "food.kitchen.menu-item-updated.v1",
            json!({"menuId": "bibimbap"}),
        ),
    ] {
        let subject = if event_type.contains("menu-item") {
            "bibimbap"
        } else {
            order_id
        };
        publish(bus, topic, event_type, subject, data).await;
    }
}

async fn publish_customer_changes(bus: &InProcessBus, customer_id: &str) {
    for (event_type, data) in [
        (
            CUSTOMER_REGISTERED,
            json!({"customerId": customer_id, "name": "Ada", "email": "ada@example.org"}),
        ),
        (
            CUSTOMER_UPDATED,
            json!({"customerId": customer_id, "changes": {"email": {"from": "ada@example.org", "to": "ada@lovelace.org"}}}),
        ),
        (CUSTOMER_DELETED, json!({"customerId": customer_id})),
    ] {
        publish(bus, "food.customers", event_type, customer_id, data).await;
    }
}

async fn an_order_trace_shows_every_step_the_refund_and_the_stamps(backend: Backend) {
    let service = start_mypage(backend).await;
    assert!(
        view(&service, "/mypage/orders/o-1").await.is_none(),
        "not seen yet: 404"
    );
    publish_cancelled_order(&service.bus, "o-1", "c-1").await;
    let trace = wait_for(&service, "/mypage/orders/o-1", |trace| {
        trace["timeline"].as_array().unwrap().len() == 8
    })
    .await;
    assert_eq!(trace["status"], "CANCELLED");
    assert_eq!(trace["customerId"], "c-1");
    assert_eq!(trace["amount"], 2400);
    assert_eq!(trace["items"][0]["name"], "Bibimbap");
    assert_eq!(trace["reason"], "changed my mind");
    assert_eq!(
        trace["payment"],
        json!({"status": "REFUNDED", "amount": 2400, "refundedAmount": 2400})
    );
    assert_eq!(trace["stamps"], json!({"earned": 2, "deducted": 2}));
    let steps: Vec<&str> = trace["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "TicketAccepted",
            "OrderPlaced",
            "PaymentApproved",
            "StampsEarned",
            "OrderCancelled",
            "TicketCancelled",
            "PaymentRefunded",
            "StampsDeducted"
        ],
        "in the order they happened"
    );
    let listed = view(&service, "/mypage/orders?customerId=c-1")
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0], trace);
    assert_eq!(
        view(&service, "/mypage/orders?customerId=nobody")
            .await
            .unwrap(),
        json!([])
    );
    let (status, problem) = service.call("GET", "/mypage/orders", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("customerId"),
        "{problem}"
    );
    service.stop().await;
}

async fn customer_history_shows_new_mod_and_del(backend: Backend) {
    let service = start_mypage(backend).await;
    publish_customer_changes(&service.bus, "c-7").await;
    let history = wait_for(&service, "/mypage/customers/c-7/history", |history| {
        history["history"].as_array().unwrap().len() == 3
    })
    .await;
    let kinds: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["NEW", "MOD", "DEL"]);
    assert_eq!(
        history["history"][1]["changes"]["email"],
        json!({"from": "ada@example.org", "to": "ada@lovelace.org"})
    );
    assert_eq!(history["email"], "ada@lovelace.org");
    assert_eq!(history["deleted"], true);
    assert!(
        view(&service, "/mypage/customers/c-8/history")
            .await
            .is_none()
    );
    service.stop().await;
}

#[tokio::test]
async fn poison_is_skipped_and_the_views_go_on() {
    let service = start_mypage(Backend::Sqlite).await;
    service
        .publish("food.orders", "food.order.teleported.v1", "o-2", json!({}))
        .await;
    service
        .publish("food.orders", ORDER_PLACED, "o-2", json!("not an object"))
        .await;
    service
        .publish("food.orders", ORDER_PLACED, "o-3", json!({"orderId": "o-3", "customerId": "c-3", "amount": 1, "paymentId": "p", "items": []}))
        .await;
    let trace = wait_for(&service, "/mypage/orders/o-3", |_| true).await;
    assert_eq!(trace["status"], "PLACED");
    assert!(
        view(&service, "/mypage/orders/o-2").await.is_none(),
        "poison made no view"
    );
    let parked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kit_parked_messages")
        .fetch_one(service.host.store().unwrap().pool())
        .await
        .unwrap();
    assert_eq!(parked, 2);
    service.stop().await;
}

async fn a_stopped_mypage_catches_up_and_an_empty_store_rebuilds_the_same_views(backend: Backend) {
    let first = start_mypage(backend).await;
    publish_cancelled_order(&first.bus, "o-1", "c-1").await;
    wait_for(&first, "/mypage/orders/o-1", |trace| {
        trace["timeline"].as_array().unwrap().len() == 8
    })
    .await;

    // Stopped: events keep coming.
    let InProcessService {
        database,
        host,
        bus,
        ..
    } = first;
    host.stop().await;
    publish_customer_changes(&bus, "c-1").await;
    publish_cancelled_order(&bus, "o-2", "c-1").await;
    let stopped_database_url = database.url.clone();

    // Restarted on its own store: it resumes where it left off and catches up exactly.
    let restarted = InProcessService::start_on_bus(database, bus.clone(), |config, bus| {
        start(config, Some(bus))
    })
    .await;
    assert_eq!(restarted.database.url, stopped_database_url);
    let o2 = wait_for(&restarted, "/mypage/orders/o-2", |trace| {
        trace["timeline"].as_array().unwrap().len() == 8
    })
    .await;
    let history = wait_for(&restarted, "/mypage/customers/c-1/history", |history| {
        history["history"].as_array().unwrap().len() == 3
    })
    .await;

    // A new my page on an empty store reads every topic from the beginning and arrives at the same views.
    let rebuilt =
        InProcessService::start_on_bus(TestDatabase::create(backend).await, bus, |config, bus| {
            start(config, Some(bus))
        })
        .await;
    let rebuilt_o2 = wait_for(&rebuilt, "/mypage/orders/o-2", |trace| {
        trace["timeline"].as_array().unwrap().len() == 8
    })
    .await;
    assert_eq!(rebuilt_o2, o2);
    assert_eq!(
        view(&rebuilt, "/mypage/orders/o-1").await,
        view(&restarted, "/mypage/orders/o-1").await
    );
    let rebuilt_history = wait_for(&rebuilt, "/mypage/customers/c-1/history", |history| {
        history["history"].as_array().unwrap().len() == 3
    })
    .await;
    assert_eq!(rebuilt_history, history);
    assert_eq!(
        view(&rebuilt, "/mypage/orders?customerId=c-1").await,
        view(&restarted, "/mypage/orders?customerId=c-1").await
    );
    rebuilt.stop().await;
    restarted.stop().await;
}

/// The events of two orders and a customer, interleaved as topics deliver them, with a menu event my page ignores
/// and one event twice.
fn interleaved_events() -> Vec<Event> {
    let event = |event_type: &str, subject: &str, data: Value| {
        Event::new(event_type, "test", subject, &data).unwrap()
    };
    let placed = |order_id: &str| {
        json!({"orderId": order_id, "customerId": "c-1", "amount": 1200, "paymentId": format!("p-{order_id}"),
            "items": [{"menuId": "bibimbap", "name": "Bibimbap", "unitPrice": 1200, "qty": 1}]})
    };
    let ticket =
        |order_id: &str| json!({"orderId": order_id, "lines": [{"menuId": "bibimbap", "qty": 1}]});
    let accepted = event(TICKET_ACCEPTED, "o-1", ticket("o-1"));
    vec![
        event(
            CUSTOMER_REGISTERED,
            "c-1",
            json!({"customerId": "c-1", "name": "Ada", "email": "ada@example.org"}),
        ),
        event(ORDER_PLACED, "o-2", placed("o-2")),
        accepted.clone(),
        event(ORDER_PLACED, "o-1", placed("o-1")),
        event(
            "food.kitchen.menu-item-updated.v1",
            "bibimbap",
            json!({"menuId": "bibimbap"}),
        ),
        accepted,
        event(COOKING_STARTED, "o-1", ticket("o-1")),
        event(
            ORDER_CANCELLED,
            "o-2",
            json!({"orderId": "o-2", "customerId": "c-1", "reason": "changed my mind"}),
        ),
        event(CUSTOMER_DELETED, "c-1", json!({"customerId": "c-1"})),
    ]
}

/// The views as the API serves them: both orders, the customer's list and history.
async fn views_in(store: &food_delivery_kit::Store) -> Vec<Value> {
    use food_delivery_mypage::store;
    vec![
        json!(store::order(store.pool(), "o-1").await.unwrap()),
        json!(store::order(store.pool(), "o-2").await.unwrap()),
        json!(store::orders_of(store.pool(), "c-1").await.unwrap()),
        json!(store::customer(store.pool(), "c-1").await.unwrap()),
    ]
}

/// A batch's events kept together and each view folded once give the views that one event at a time gives.
async fn a_batch_folds_each_view_once_to_what_one_event_at_a_time_gives(backend: Backend) {
    use food_delivery_kit::events::EventHandler;
    use food_delivery_mypage::policies::ProjectViews;
    let events = interleaved_events();
    let mut views = Vec::new();
    for together in [true, false] {
        let database = TestDatabase::create(backend).await;
        let store = food_delivery_kit::Store::connect(&database.url, 2)
            .await
            .unwrap();
        store
            .migrate(food_delivery_mypage::store::MIGRATIONS)
            .await
            .unwrap();
        if together {
            let mut transaction = store.begin().await.unwrap();
            ProjectViews
                .handle_all(&mut transaction, &events)
                .await
                .unwrap();
            transaction.commit().await.unwrap();
        } else {
            for event in &events {
                let mut transaction = store.begin().await.unwrap();
                ProjectViews.handle(&mut transaction, event).await.unwrap();
                transaction.commit().await.unwrap();
            }
        }
        views.push(views_in(&store).await);
        store.close().await;
    }
    assert_eq!(views[0], views[1]);
    let [o1, o2, listed, history] = &views[0][..] else {
        unreachable!()
    };
    assert_eq!(o1["status"], "COOKING", "{o1}");
    assert_eq!(
        o1["timeline"].as_array().unwrap().len(),
        3,
        "the repeated event once: {o1}"
    );
    assert_eq!(o2["status"], "CANCELLED", "{o2}");
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(history["history"].as_array().unwrap().len(), 2, "{history}");
}

food_delivery_testkit::on_both_backends!(
    a_batch_folds_each_view_once_to_what_one_event_at_a_time_gives,
    an_order_trace_shows_every_step_the_refund_and_the_stamps,
    customer_history_shows_new_mod_and_del,
    a_stopped_mypage_catches_up_and_an_empty_store_rebuilds_the_same_views
);

#[tokio::test]
async fn the_openapi_document_is_valid() {
    let service = start_mypage(Backend::Sqlite).await;
    let (status, document) = service.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    food_delivery_testkit::assert_valid_openapi(&document);
    service.stop().await;
}
