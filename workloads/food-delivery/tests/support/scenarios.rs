//! The saga flows of DOMAIN.md driven through the gateway, with the invariants checked afterwards. The same
//! scenario runs against `food-delivery up` and against a cluster of processes over the real broker.

use food_delivery_testkit::{eventually, stock_on_menu};
use serde_json::{Value, json};
use std::time::Duration;

/// How long an asynchronous step may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// A client of the platform's gateway.
#[derive(Clone)]
pub struct Platform {
    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// The HTTP client.
    pub client: reqwest::Client,
}

/// What a scenario left behind, for checks after a restart.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The customer every order was placed for.
    pub customer_id: String,
    /// Each order with the status it ended in.
    pub orders: Vec<(String, &'static str)>,
}

impl Platform {
    pub fn new(base: String) -> Self {
        Self {
            base,
            client: reqwest::Client::new(),
        }
    }

    /// Sends `method path` with an optional JSON body; returns the status and the JSON body (null if none).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(15));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if response.status().is_client_error() {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{path}"
            );
        }
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn register(&self, name: &str, email: &str) -> String {
        let (status, customer) = self
            .call(
                "POST",
                "/api/customers",
                Some(json!({"name": name, "email": email})),
            )
            .await;
        assert_eq!(status, 201, "{customer}");
        customer["customerId"].as_str().unwrap().to_owned()
    }

    pub async fn place(&self, customer_id: &str, menu_id: &str, qty: i64) -> String {
        let body = json!({"customerId": customer_id, "items": [{"menuId": menu_id, "qty": qty}]});
        let (status, order) = self.call("POST", "/api/orders", Some(body)).await;
        assert_eq!(status, 201, "{order}");
        order["orderId"].as_str().unwrap().to_owned()
    }

    /// Waits until my page shows the order in `status` with every event in `steps` on its timeline.
    pub async fn wait_for_trace(&self, order_id: &str, status: &str, steps: &[&str]) -> Value {
        let path = format!("/api/mypage/orders/{order_id}");
        let mut last = Value::Null;
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let (code, trace) = self.call("GET", &path, None).await;
                if code == 200
                    && trace["status"] == status
                    && steps.iter().all(|step| has_step(&trace, step))
                {
                    return trace;
                }
                last = trace;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!("order {order_id} never showed {status} with {steps:?}; last: {last}")
        })
    }

    /// Waits until my page's history of the customer has `entries` entries, and returns it.
    pub async fn wait_for_history(&self, customer_id: &str, entries: usize) -> Value {
        let path = format!("/api/mypage/customers/{customer_id}/history");
        eventually(WAIT, &path, || async {
            let (_, history) = self.call("GET", &path, None).await;
            (history["history"].as_array().map(Vec::len) == Some(entries)).then_some(history)
        })
        .await
    }

    pub async fn stamps(&self, customer_id: &str) -> i64 {
        let (status, card) = self
            .call("GET", &format!("/api/stamps/{customer_id}"), None)
            .await;
        assert_eq!(status, 200, "{card}");
        card["stamps"].as_i64().unwrap()
    }
}

pub fn has_step(trace: &Value, event: &str) -> bool {
    count_steps(trace, event) > 0
}

pub fn count_steps(trace: &Value, event: &str) -> usize {
    trace["timeline"].as_array().map_or(0, |timeline| {
        timeline
            .iter()
            .filter(|entry| entry["event"] == event)
            .count()
    })
}

fn steps_of(trace: &Value) -> Vec<String> {
    trace["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["event"].as_str().unwrap().to_owned())
        .collect()
}

/// Flows 1 (happy path), 2 (cancel), 3 (out of stock) and 6 (customer history), then the invariants.
/// Expects kitchen and delivery in auto mode with a cook time long enough to cancel before delivery starts.
pub async fn saga_flows(platform: &Platform) -> Outcome {
    let customer_id = platform.register("Ada", "ada@example.org").await;

    // 1. Happy path.
    let delivered = platform.place(&customer_id, "bibimbap", 2).await;
    let trace = platform
        .wait_for_trace(
            &delivered,
            "DELIVERED",
            &[
                "OrderPlaced",
                "PaymentApproved",
                "StampsEarned",
                "TicketAccepted",
                "CookingStarted",
                "CookingFinished",
                "DeliveryStarted",
                "Delivered",
            ],
        )
        .await;
    let steps = steps_of(&trace);
    let position = |step: &str| steps.iter().position(|seen| seen == step).unwrap();
    assert!(
        position("TicketAccepted") < position("CookingStarted")
            && position("CookingStarted") < position("CookingFinished")
            && position("CookingFinished") < position("DeliveryStarted")
            && position("DeliveryStarted") < position("Delivered"),
        "timeline out of order: {steps:?}"
    );
    assert_eq!(trace["amount"], 2400);
    assert_eq!(trace["stamps"], json!({"earned": 2, "deducted": 0}));

    // 2. Cancel before cooking ends: refund, stamps back, stock back.
    let stock_before = stock_of(platform, "green-tea").await;
    let cancelled = platform.place(&customer_id, "green-tea", 3).await;
    let (status, order) = platform
        .call("POST", &format!("/api/orders/{cancelled}/cancel"), None)
        .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["status"], "CANCELLED");
    let trace = platform
        .wait_for_trace(
            &cancelled,
            "CANCELLED",
            &["OrderCancelled", "PaymentRefunded", "StampsDeducted"],
        )
        .await;
    assert_eq!(trace["payment"]["status"], "REFUNDED");
    assert_eq!(trace["stamps"], json!({"earned": 3, "deducted": 3}));
    eventually(WAIT, "the stock to come back", || async {
        (stock_of(platform, "green-tea").await == stock_before).then_some(())
    })
    .await;

    // 3. Out of stock: rejected with the reason and the missing dish, refunded once.
    let (status, dish) = platform
        .call(
            "PUT",
            "/api/menu/tteokbokki",
            Some(json!({"name": "Tteokbokki", "price": 800, "stock": 1})),
        )
        .await;
    assert_eq!(status, 200, "{dish}");
    let rejected = platform.place(&customer_id, "tteokbokki", 3).await;
    let trace = platform
        .wait_for_trace(
            &rejected,
            "REJECTED",
            &[
                "KitchenRejected",
                "OrderRejected",
                "PaymentRefunded",
                "StampsDeducted",
            ],
        )
        .await;
    assert_eq!(trace["reason"], "OUT_OF_STOCK", "{trace}");
    assert!(
        trace["missingItems"].to_string().contains("tteokbokki"),
        "{trace}"
    );
    assert_eq!(
        stock_of(platform, "tteokbokki").await,
        1,
        "nothing was reserved"
    );

    // 6. Customer history.
    let (status, _) = platform
        .call(
            "PATCH",
            &format!("/api/customers/{customer_id}"),
            Some(json!({"email": "ada@lovelace.org"})),
        )
        .await;
    assert_eq!(status, 200);
    let other = platform.register("Grace", "grace@example.org").await;
    let (status, _) = platform
        .call("DELETE", &format!("/api/customers/{other}"), None)
        .await;
    assert_eq!(status, 204);
    let history = platform.wait_for_history(&customer_id, 2).await;
    assert_eq!(history["history"][0]["kind"], "NEW");
    assert_eq!(history["history"][1]["kind"], "MOD");
    assert_eq!(
        history["history"][1]["changes"]["email"]["to"],
        "ada@lovelace.org"
    );
    eventually(WAIT, "the deletion in the history", || async {
        let (_, history) = platform
            .call(
                "GET",
                &format!("/api/mypage/customers/{other}/history"),
                None,
            )
            .await;
        let kinds: Vec<Value> = history["history"]
            .as_array()?
            .iter()
            .map(|entry| entry["kind"].clone())
            .collect();
        (kinds == [json!("NEW"), json!("DEL")]).then_some(())
    })
    .await;

    let outcome = Outcome {
        customer_id,
        orders: vec![
            (delivered, "DELIVERED"),
            (cancelled, "CANCELLED"),
            (rejected, "REJECTED"),
        ],
    };
    check_invariants(platform, &outcome).await;
    outcome
}

/// The invariants of DOMAIN.md that the platform's APIs can show.
pub async fn check_invariants(platform: &Platform, outcome: &Outcome) {
    let (_, orders) = platform
        .call(
            "GET",
            &format!("/api/orders?customerId={}", outcome.customer_id),
            None,
        )
        .await;
    assert_eq!(
        orders.as_array().unwrap().len(),
        outcome.orders.len(),
        "every acknowledged order exactly once"
    );
    let mut expected_stamps = 0;
    for (order_id, status) in &outcome.orders {
        let (_, order) = platform
            .call("GET", &format!("/api/orders/{order_id}"), None)
            .await;
        assert_eq!(order["status"], *status);
        let trace = platform.wait_for_trace(order_id, status, &[]).await;
        assert_eq!(
            trace["status"], order["status"],
            "my page agrees with the order service"
        );
        let (_, payments) = platform
            .call("GET", &format!("/api/payments?orderId={order_id}"), None)
            .await;
        assert_eq!(
            payments.as_array().unwrap().len(),
            1,
            "one payment per order: {payments}"
        );
        let refunds = count_steps(&trace, "PaymentRefunded");
        if *status == "DELIVERED" {
            assert_eq!(payments[0]["status"], "APPROVED");
            assert_eq!(refunds, 0);
            expected_stamps += trace["stamps"]["earned"].as_i64().unwrap();
        } else {
            assert_eq!(payments[0]["status"], "REFUNDED");
            assert_eq!(refunds, 1, "exactly one refund: {trace}");
        }
    }
    assert_eq!(
        platform.stamps(&outcome.customer_id).await,
        expected_stamps,
        "stamps = qty of paid, unrefunded orders"
    );
    let (_, menu) = platform.call("GET", "/api/menu", None).await;
    assert!(
        menu.as_array()
            .unwrap()
            .iter()
            .all(|dish| dish["stock"].as_i64().unwrap() >= 0),
        "{menu}"
    );
}

pub async fn stock_of(platform: &Platform, menu_id: &str) -> i64 {
    let (_, menu) = platform.call("GET", "/api/menu", None).await;
    stock_on_menu(&menu, menu_id)
}
