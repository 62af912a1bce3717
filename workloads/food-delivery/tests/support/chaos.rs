//! The randomized fault-injection run of the platform's invariants (DOMAIN.md): seeded clients place, retry, give up
//! on and cancel orders, change customers and restock dishes through the gateway while faults are injected; when
//! the faults stop and the platform settles, every invariant is checked and the counts are printed.
//!
//! The clients record only what the platform acknowledged; the checks read the platform's own answers (its APIs)
//! and, for the list of every payment, the payment service's table (no API lists them all).

use food_delivery_testkit::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A small deterministic generator (xorshift64*): the same seed replays the same clients and faults.
#[derive(Debug, Clone)]
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// True with `percent` % probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A generator of its own for a client or the fault schedule, derived from this one.
    pub fn fork(&mut self) -> Self {
        Self::new(self.next())
    }
}

/// How big and which run: `FAULTS_SEED`, `FAULTS_SECONDS` and `FAULTS_CLIENTS` make it longer by hand.
#[derive(Debug, Clone, Copy)]
pub struct RunSize {
    pub seed: u64,
    pub seconds: u64,
    pub clients: usize,
}

impl RunSize {
    /// The size CI runs, unless the environment asks for another.
    pub fn from_environment(seconds: u64, clients: usize) -> Self {
        let read = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Self {
            seed: read("FAULTS_SEED").unwrap_or(20_261_130),
            seconds: read("FAULTS_SECONDS").unwrap_or(seconds),
            clients: read("FAULTS_CLIENTS").map_or(clients, |c| c as usize),
        }
    }
}

/// Dishes whose stock only orders change (conservation is checked on them) and the one the clients restock.
pub const DISHES: [&str; 3] = ["bibimbap", "green-tea", "kimchi-stew"];
pub const RESTOCKED: &str = "tteokbokki";
/// What every dish starts with.
pub const STARTING_STOCK: i64 = 100_000;

/// What one order request was, as far as the client knows.
#[derive(Debug, Clone, Default)]
pub struct PlacedOrder {
    pub customer_id: String,
    pub key: Option<String>,
    /// Acknowledged with 201 (at least once, for keyed retries).
    pub acknowledged: bool,
    /// A cancel was acknowledged (200).
    pub cancel_acknowledged: bool,
}

/// What the clients did to one customer.
#[derive(Debug, Clone, Default)]
pub struct CustomerRecord {
    /// Changes acknowledged: NEW, MOD..., DEL, in order.
    pub acknowledged: Vec<&'static str>,
    /// Changes whose outcome the client could not learn (a timeout, a 503, a dropped connection).
    pub uncertain: usize,
    pub deleted: bool,
}

/// Everything the clients saw.
#[derive(Debug, Default)]
pub struct Ledger {
    pub orders: BTreeMap<String, PlacedOrder>,
    pub customers: BTreeMap<String, CustomerRecord>,
    /// Requests by outcome: status code, or `connection` when no answer came.
    pub outcomes: BTreeMap<String, u64>,
    /// Answers that break the rules: a 5xx other than 503/504, an error without problem+json, a keyed retry that
    /// got a different order.
    pub violations: Vec<String>,
    /// Connection errors (no HTTP answer at all), with what was asked.
    pub connection_errors: Vec<String>,
    /// Operations by kind.
    pub operations: BTreeMap<&'static str, u64>,
}

/// The shared ledger and the rules an answer is held to.
#[derive(Clone)]
pub struct Clients {
    pub base: String,
    pub http: reqwest::Client,
    pub ledger: Arc<Mutex<Ledger>>,
}

/// One answer.
pub struct Answer {
    pub status: Option<StatusCode>,
    pub body: Value,
}

impl Answer {
    pub fn is(&self, code: u16) -> bool {
        self.status.map(|s| s.as_u16()) == Some(code)
    }
}

impl Clients {
    pub fn new(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
            ledger: Arc::default(),
        }
    }

    /// Sends one request and records its outcome; `give_up_after` is a client that stops waiting.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
        give_up_after: Duration,
    ) -> Answer {
        let mut request = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.base),
            )
            .timeout(give_up_after);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let what = format!("{method} {path}");
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let mut ledger = self.ledger.lock().unwrap();
                if error.is_timeout() {
                    *ledger.outcomes.entry("gave up".to_owned()).or_default() += 1;
                } else {
                    *ledger.outcomes.entry("connection".to_owned()).or_default() += 1;
                    ledger.connection_errors.push(format!("{what}: {error:?}"));
                }
                return Answer {
                    status: None,
                    body: Value::Null,
                };
            }
        };
        let status = response.status();
        let problem = response
            .headers()
            .get("content-type")
            .is_some_and(|value| value == "application/problem+json");
        let body = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(_) => {
                *self
                    .ledger
                    .lock()
                    .unwrap()
                    .outcomes
                    .entry("gave up".to_owned())
                    .or_default() += 1;
                return Answer {
                    status: None,
                    body: Value::Null,
                };
            }
        };
        let mut ledger = self.ledger.lock().unwrap();
        *ledger
            .outcomes
            .entry(status.as_u16().to_string())
            .or_default() += 1;
        if status.is_server_error() && !matches!(status.as_u16(), 503 | 504) {
            ledger
                .violations
                .push(format!("{what} -> {status}: {body}"));
        }
        if (status.is_client_error() || status.is_server_error()) && !problem {
            ledger
                .violations
                .push(format!("{what} -> {status} without problem+json: {body}"));
        }
        Answer {
            status: Some(status),
            body,
        }
    }

    fn count(&self, operation: &'static str) {
        *self
            .ledger
            .lock()
            .unwrap()
            .operations
            .entry(operation)
            .or_default() += 1;
    }

    /// One client: a seeded stream of journeys until `stop`.
    pub async fn run_client(self, name: String, mut random: Random, stop: CancellationToken) {
        let mut customers: Vec<String> = Vec::new();
        let mut orders: Vec<String> = Vec::new();
        let mut sequence = 0_u64;
        let normal = Duration::from_secs(10);
        while !stop.is_cancelled() {
            sequence += 1;
            let roll = random.below(100);
            if customers.is_empty() || roll < 8 {
                self.count("register");
                let answer = self
                    .send(
                        "POST",
                        "/api/customers",
                        Some(json!({"name": format!("{name} {sequence}"), "email": format!("{name}-{sequence}@example.org")})),
                        None,
                        normal,
                    )
                    .await;
                if answer.is(201) {
                    let id = answer.body["customerId"].as_str().unwrap().to_owned();
                    self.ledger
                        .lock()
                        .unwrap()
                        .customers
                        .entry(id.clone())
                        .or_default()
                        .acknowledged
                        .push("NEW");
                    customers.push(id);
                }
            } else if roll < 60 {
                let customer = random.pick(&customers).clone();
                let dish = if random.chance(10) {
                    RESTOCKED
                } else {
                    *random.pick(&DISHES)
                };
                let qty = 1 + random.below(3) as i64;
                let body = json!({"customerId": customer, "items": [{"menuId": dish, "qty": qty}]});
                let key = random
                    .chance(75)
                    .then(|| format!("{name}-order-{sequence}"));
                // Some clients give up long before the platform could answer, then retry with the same key.
                let impatient = random.chance(15);
                let first_wait = if impatient {
                    Duration::from_millis(1 + random.below(40))
                } else {
                    normal
                };
                self.count(if impatient {
                    "place (client gives up)"
                } else {
                    "place"
                });
                let mut answer = self
                    .send(
                        "POST",
                        "/api/orders",
                        Some(body.clone()),
                        key.as_deref(),
                        first_wait,
                    )
                    .await;
                // A keyed request is retried after anything but a definite answer, as a careful client does;
                // sometimes once more after a definite answer, which must give the same order.
                let mut attempts = 1;
                while let Some(key) = &key {
                    let definite = answer
                        .status
                        .is_some_and(|s| !matches!(s.as_u16(), 500..=599));
                    if attempts >= 6 || (definite && (attempts > 1 || !random.chance(20))) {
                        break;
                    }
                    attempts += 1;
                    self.count("place retry (same key)");
                    tokio::time::sleep(Duration::from_millis(200 * attempts)).await;
                    let again = self
                        .send("POST", "/api/orders", Some(body.clone()), Some(key), normal)
                        .await;
                    if answer.is(201)
                        && again.is(201)
                        && answer.body["orderId"] != again.body["orderId"]
                    {
                        self.ledger.lock().unwrap().violations.push(format!(
                            "key {key} gave two orders: {} and {}",
                            answer.body["orderId"], again.body["orderId"]
                        ));
                    }
                    if again.status.is_some() || !answer.is(201) {
                        answer = again;
                    }
                }
                if answer.is(201) {
                    let id = answer.body["orderId"].as_str().unwrap().to_owned();
                    let mut ledger = self.ledger.lock().unwrap();
                    let record = ledger.orders.entry(id.clone()).or_default();
                    record.customer_id = customer;
                    record.key = key;
                    record.acknowledged = true;
                    orders.push(id);
                }
            } else if roll < 72 {
                if orders.is_empty() {
                    continue;
                }
                self.count("cancel");
                let order = random.pick(&orders).clone();
                let answer = self
                    .send(
                        "POST",
                        &format!("/api/orders/{order}/cancel"),
                        None,
                        None,
                        normal,
                    )
                    .await;
                if answer.is(200)
                    && let Some(record) = self.ledger.lock().unwrap().orders.get_mut(&order)
                {
                    record.cancel_acknowledged = true;
                }
            } else if roll < 80 {
                self.count("change customer");
                let customer = random.pick(&customers).clone();
                let answer = self
                    .send(
                        "PATCH",
                        &format!("/api/customers/{customer}"),
                        Some(json!({"email": format!("{name}-{sequence}@changed.example.org")})),
                        None,
                        normal,
                    )
                    .await;
                self.record_customer_change(&customer, &answer, "MOD", 200);
            } else if roll < 83 {
                self.count("delete customer");
                let customer = random.pick(&customers).clone();
                let answer = self
                    .send(
                        "DELETE",
                        &format!("/api/customers/{customer}"),
                        None,
                        None,
                        normal,
                    )
                    .await;
                self.record_customer_change(&customer, &answer, "DEL", 204);
                if answer.is(204) || answer.is(404) {
                    customers.retain(|c| c != &customer);
                }
            } else if roll < 86 {
                self.count("restock");
                let stock = 3 + random.below(10) as i64;
                self.send(
                    "PUT",
                    &format!("/api/menu/{RESTOCKED}"),
                    Some(json!({"name": "Tteokbokki", "price": 800, "stock": stock})),
                    None,
                    normal,
                )
                .await;
            } else {
                self.count("read");
                let path = if !orders.is_empty() && random.chance(50) {
                    format!("/api/mypage/orders/{}", random.pick(&orders))
                } else if !orders.is_empty() && random.chance(50) {
                    format!("/api/orders/{}", random.pick(&orders))
                } else {
                    "/api/menu".to_owned()
                };
                self.send("GET", &path, None, None, normal).await;
            }
        }
    }

    fn record_customer_change(
        &self,
        customer: &str,
        answer: &Answer,
        kind: &'static str,
        success: u16,
    ) {
        let mut ledger = self.ledger.lock().unwrap();
        let record = ledger.customers.entry(customer.to_owned()).or_default();
        if record.deleted {
            return;
        }
        if answer.is(success) {
            record.acknowledged.push(kind);
            record.deleted = kind == "DEL";
        } else if answer.status.is_none_or(|s| s.is_server_error()) {
            record.uncertain += 1;
        }
    }
}

/// Starts `count` seeded clients that run until `stop`; the task ends when every one has finished its journey in
/// hand.
pub fn spawn_clients(
    clients: &Clients,
    random: &mut Random,
    count: usize,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let tasks: Vec<_> = (0..count)
        .map(|index| {
            tokio::spawn(clients.clone().run_client(
                format!("client{index}"),
                random.fork(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::spawn(async move {
        for task in tasks {
            task.await.unwrap();
        }
    })
}

/// A token cancelled after `duration`.
pub fn stop_after(duration: Duration) -> CancellationToken {
    let stop = CancellationToken::new();
    let timer = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(duration).await;
        timer.cancel();
    });
    stop
}

/// Gives every dish a known stock before the run.
pub async fn stock_the_kitchen(clients: &Clients) {
    for dish in DISHES.iter().chain([&RESTOCKED]) {
        let answer = clients
            .send(
                "PUT",
                &format!("/api/menu/{dish}"),
                Some(json!({"name": dish, "price": 700, "stock": STARTING_STOCK})),
                None,
                Duration::from_secs(10),
            )
            .await;
        assert!(
            answer.is(200),
            "restocking {dish}: {:?} {} {:?}",
            answer.status,
            answer.body,
            clients.ledger.lock().unwrap().connection_errors
        );
    }
}

/// One payment as the payment service stored it.
#[derive(Debug, Clone)]
pub struct StoredPayment {
    pub order_id: String,
    pub customer_id: String,
    pub qty: i64,
    pub status: String,
    pub authorized_at: i64,
}

/// Reads every payment from the payment service's store (its own schema on a shared PostgreSQL database).
pub async fn stored_payments(database_url: &str, schema: Option<&str>) -> Vec<StoredPayment> {
    use sqlx::Row;
    let store = food_delivery_kit::Store::connect_in_schema(database_url, 1, schema)
        .await
        .unwrap();
    let rows =
        sqlx::query("SELECT order_id, customer_id, qty, status, authorized_at FROM payments")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let payments = rows
        .iter()
        .map(|row| StoredPayment {
            order_id: row.get("order_id"),
            customer_id: row.get("customer_id"),
            qty: row.get("qty"),
            status: row.get("status"),
            authorized_at: row.get("authorized_at"),
        })
        .collect();
    store.close().await;
    payments
}

/// The invariants, each with how many cases it checked and what broke it.
#[derive(Debug, Default)]
pub struct Report {
    pub checked: BTreeMap<&'static str, u64>,
    pub broken: BTreeMap<&'static str, Vec<String>>,
}

impl Report {
    fn check(&mut self, invariant: &'static str, holds: bool, case: impl FnOnce() -> String) {
        *self.checked.entry(invariant).or_default() += 1;
        if !holds {
            self.broken.entry(invariant).or_default().push(case());
        }
    }

    pub fn holds(&self) -> bool {
        self.broken.is_empty()
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        for (invariant, cases) in &self.checked {
            let broken = self.broken.get(invariant).map_or(0, Vec::len);
            let verdict = if broken == 0 { "holds" } else { "BROKEN" };
            writeln!(
                text,
                "  {verdict:>6}  {invariant}: {cases} checked, {broken} broken"
            )
            .unwrap();
            for case in self.broken.get(invariant).into_iter().flatten().take(5) {
                writeln!(text, "            {case}").unwrap();
            }
        }
        text
    }
}

const END_STATES: [&str; 3] = ["DELIVERED", "CANCELLED", "REJECTED"];

/// Waits until every order the platform knows has ended and my page agrees, then checks every invariant.
/// `payments` reads the payment service's table.
pub async fn settle_and_check<Payments, Fut>(
    clients: &Clients,
    settle: Duration,
    payments: Payments,
) -> Report
where
    Payments: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<StoredPayment>>,
{
    let deadline = Instant::now() + settle;
    loop {
        let report = check(clients, &payments().await).await;
        if report.holds() || Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn get(clients: &Clients, path: &str) -> (u16, Value) {
    let answer = clients
        .http
        .get(format!("{}{path}", clients.base))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn check(clients: &Clients, stored: &[StoredPayment]) -> Report {
    let mut report = Report::default();
    let (acknowledged, customers) = {
        let ledger = clients.ledger.lock().unwrap();
        (ledger.orders.clone(), ledger.customers.clone())
    };
    for violation in &clients.ledger.lock().unwrap().violations {
        report.check(
            "every answer is a success, a 4xx, a 503 or a 504, errors as problem+json",
            false,
            || violation.clone(),
        );
    }
    report.check(
        "every answer is a success, a 4xx, a 503 or a 504, errors as problem+json",
        true,
        String::new,
    );

    // Every order of every customer the clients used, as the order service has them.
    let mut orders: BTreeMap<String, Value> = BTreeMap::new();
    let customer_ids: BTreeSet<String> = customers
        .keys()
        .cloned()
        .chain(acknowledged.values().map(|o| o.customer_id.clone()))
        .collect();
    for customer in &customer_ids {
        let (_, list) = get(clients, &format!("/api/orders?customerId={customer}")).await;
        for order in list.as_array().cloned().unwrap_or_default() {
            orders.insert(order["orderId"].as_str().unwrap().to_owned(), order);
        }
    }
    // A customer's list holds their latest 100 orders; older ones are read one by one.
    for order_id in acknowledged.keys() {
        if !orders.contains_key(order_id) {
            let (code, order) = get(clients, &format!("/api/orders/{order_id}")).await;
            if code == 200 {
                orders.insert(order_id.clone(), order);
            }
        }
    }
    for (order_id, placed) in acknowledged
        .iter()
        .filter(|(_, placed)| placed.cancel_acknowledged)
    {
        let status = orders
            .get(order_id)
            .and_then(|order| order["status"].as_str())
            .unwrap_or("missing");
        report.check(
            "every acknowledged cancel ends the order CANCELLED",
            status == "CANCELLED",
            || format!("{order_id} is {status} ({placed:?})"),
        );
    }
    for (order_id, placed) in &acknowledged {
        report.check(
            "every acknowledged order exists",
            orders.contains_key(order_id),
            || format!("{order_id} ({placed:?})"),
        );
    }

    let payments_by_order: BTreeMap<&str, &StoredPayment> =
        stored.iter().map(|p| (p.order_id.as_str(), p)).collect();
    let mut stamps: BTreeMap<&str, i64> = BTreeMap::new();
    let mut held: BTreeMap<String, i64> = BTreeMap::new();
    for (order_id, order) in &orders {
        let status = order["status"].as_str().unwrap_or_default();
        if !END_STATES.contains(&status) {
            // What the other services say about it, to tell where the saga stopped.
            let (_, ticket) = get(clients, &format!("/api/tickets/{order_id}")).await;
            let (_, delivery) = get(clients, &format!("/api/deliveries/{order_id}")).await;
            let (_, view) = get(clients, &format!("/api/mypage/orders/{order_id}")).await;
            report.check("every order reaches an end state", false, || {
                format!(
                    "{order_id} is {status}; ticket {}, delivery {}, my page {}",
                    ticket["status"], delivery["status"], view["status"]
                )
            });
        } else {
            report.check("every order reaches an end state", true, String::new);
        }
        let given_up = order["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("payment not completed"));
        let payment = payments_by_order.get(order_id.as_str());
        let payment_status = payment.map_or("none", |p| p.status.as_str());
        if given_up {
            report.check(
                "an order given up before its payment completed has nothing charged",
                matches!(payment_status, "none" | "VOIDED"),
                || format!("{order_id}: payment {payment_status}"),
            );
        } else {
            let expected = match status {
                "DELIVERED" => "APPROVED",
                "CANCELLED" | "REJECTED" => "REFUNDED",
                _ => "APPROVED",
            };
            report.check(
                "every placed order has one payment: captured, or refunded once cancelled or rejected",
                payment_status == expected,
                || format!("{order_id} is {status}, payment {payment_status}"),
            );
        }
        if status == "CANCELLED" {
            // A cancel is accepted only before the food is handed to delivery, so no rider ever has it: no
            // delivery, or one born cancelled (a tombstone).
            let (code, delivery) = get(clients, &format!("/api/deliveries/{order_id}")).await;
            let delivery_status = delivery["status"].as_str().unwrap_or("none").to_owned();
            report.check(
                "nothing is delivered after a cancel",
                code == 404 || delivery_status == "CANCELLED",
                || {
                    format!(
                        "{order_id}: delivery {delivery_status}, picked up {}",
                        delivery["pickedUpAt"]
                    )
                },
            );
        }
        let (code, ticket) = get(clients, &format!("/api/tickets/{order_id}")).await;
        let ticket_status = ticket["status"].as_str().unwrap_or("none");
        if code == 200 && !matches!(ticket_status, "CANCELLED" | "REJECTED") {
            for line in ticket["lines"].as_array().cloned().unwrap_or_default() {
                *held
                    .entry(line["menuId"].as_str().unwrap().to_owned())
                    .or_default() += line["qty"].as_i64().unwrap();
            }
        }
        if status == "CANCELLED" {
            // A cancel is accepted only before the order service clears the kitchen to cook, and the kitchen cooks
            // nothing it was not cleared for.
            report.check(
                "nothing is cooked after a cancel",
                code == 404 || ticket["startedAt"].is_null(),
                || {
                    format!(
                        "{order_id}: ticket {ticket_status}, started {}",
                        ticket["startedAt"]
                    )
                },
            );
        }
        if matches!(status, "CANCELLED" | "REJECTED") {
            report.check(
                "a cancelled or rejected order holds no stock",
                code == 404 || matches!(ticket_status, "CANCELLED" | "REJECTED"),
                || format!("{order_id} is {status}, ticket {ticket_status}"),
            );
        }
        let (code, view) = get(clients, &format!("/api/mypage/orders/{order_id}")).await;
        report.check(
            "my page shows every order as the order service does",
            code == 200 && view["status"] == status,
            || {
                format!(
                    "{order_id}: order {status}, my page {code} {}",
                    view["status"]
                )
            },
        );
        let refunds = super::scenarios::count_steps(&view, "PaymentRefunded");
        report.check("at most one refund per order", refunds <= 1, || {
            format!("{order_id}: {refunds} refunds")
        });
    }

    let now = food_delivery_kit::store::now_millis();
    for payment in stored {
        match payment.status.as_str() {
            "APPROVED" => {
                *stamps.entry(payment.customer_id.as_str()).or_default() += payment.qty;
                let order_status = orders
                    .get(&payment.order_id)
                    .and_then(|o| o["status"].as_str())
                    .unwrap_or("missing");
                report.check(
                    "no captured payment without a live order",
                    matches!(order_status, "DELIVERED"),
                    || {
                        format!(
                            "payment of {} captured, order {order_status}",
                            payment.order_id
                        )
                    },
                );
            }
            "AUTHORIZED" => report.check(
                "no payment hold outlives its void deadline",
                now - payment.authorized_at < 30_000,
                || {
                    format!(
                        "hold of {} since {} ms",
                        payment.order_id,
                        now - payment.authorized_at
                    )
                },
            ),
            _ => {}
        }
    }
    for customer in &customer_ids {
        let (_, card) = get(clients, &format!("/api/stamps/{customer}")).await;
        let expected = stamps.get(customer.as_str()).copied().unwrap_or(0);
        report.check(
            "stamps equal the items of captured, unrefunded payments",
            card["stamps"].as_i64() == Some(expected),
            || {
                let theirs: Vec<String> = stored
                    .iter()
                    .filter(|p| &p.customer_id == customer)
                    .map(|p| format!("{} {} x{}", p.order_id, p.status, p.qty))
                    .collect();
                format!(
                    "{customer}: {} stamps, expected {expected}; payments {theirs:?}",
                    card["stamps"]
                )
            },
        );
    }

    let (_, menu) = get(clients, "/api/menu").await;
    for dish in menu.as_array().cloned().unwrap_or_default() {
        let menu_id = dish["menuId"].as_str().unwrap_or_default();
        let stock = dish["stock"].as_i64().unwrap_or(-1);
        report.check("stock never goes negative", stock >= 0, || {
            format!("{menu_id}: {stock}")
        });
        if DISHES.contains(&menu_id) {
            let expected = STARTING_STOCK - held.get(menu_id).copied().unwrap_or(0);
            report.check(
                "stock is conserved: what is left plus what live tickets hold is what there was",
                stock == expected,
                || format!("{menu_id}: {stock} left, {expected} expected"),
            );
        }
    }

    for (customer, record) in &customers {
        let (_, history) = get(
            clients,
            &format!("/api/mypage/customers/{customer}/history"),
        )
        .await;
        let kinds: Vec<String> = history["history"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|entry| entry["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        // Changes whose outcome the client never learnt may or may not be there; acknowledged ones must be, in
        // order.
        let mut acknowledged = record.acknowledged.iter().peekable();
        for kind in &kinds {
            if acknowledged.peek().is_some_and(|wanted| *wanted == kind) {
                acknowledged.next();
            }
        }
        report.check(
            "my page's customer history holds every acknowledged change, in order",
            acknowledged.next().is_none()
                && kinds.len() <= record.acknowledged.len() + record.uncertain,
            || {
                format!(
                    "{customer}: history {kinds:?}, acknowledged {:?} (+{} uncertain)",
                    record.acknowledged, record.uncertain
                )
            },
        );
    }
    report
}

/// What a run did and found, printed at the end of every run.
pub fn summary(
    name: &str,
    size: &RunSize,
    clients: &Clients,
    faults: &[String],
    report: &Report,
) -> String {
    let ledger = clients.ledger.lock().unwrap();
    let mut text = String::new();
    writeln!(
        text,
        "fault injection [{name}] seed {} for {} s with {} clients",
        size.seed, size.seconds, size.clients
    )
    .unwrap();
    writeln!(text, "operations: {:?}", ledger.operations).unwrap();
    writeln!(text, "answers: {:?}", ledger.outcomes).unwrap();
    writeln!(
        text,
        "orders acknowledged: {}, customers: {}",
        ledger.orders.len(),
        ledger.customers.len()
    )
    .unwrap();
    writeln!(text, "faults ({}): {}", faults.len(), faults.join("; ")).unwrap();
    writeln!(text, "invariants:\n{}", report.render()).unwrap();
    text
}

/// Waits until `url` answers 200.
pub async fn wait_ready(url: &str, what: &str) {
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(60), what, || async {
        let response = client.get(url).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}
