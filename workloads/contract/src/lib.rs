//! The contract between the services and the operator that deploys them, in one place with no dependencies:
//! the kit reads these settings and serves these paths; the operator writes these settings and probes these
//! paths. Change one side only through here.

/// The port every service listens on unless `HTTP_PORT` says otherwise.
pub const HTTP_PORT: u16 = 8080;

/// Startup probe path: initialisation finished.
pub const STARTED_PATH: &str = "/health/started";
/// Liveness probe path: the process answers; never checks dependencies.
pub const LIVE_PATH: &str = "/health/live";
/// Readiness probe path: this replica should get traffic now.
pub const READY_PATH: &str = "/health/ready";
/// Prometheus scrape path.
pub const METRICS_PATH: &str = "/metrics";

/// The components of the platform: the services `food-delivery serve <service>` runs and the operator deploys, with
/// the facts about each that both sides act on. A new component is one variant here, and the compiler then shows
/// every place that must learn about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// Routes `/api/<resource>` to the owning service; the platform's one door to the outside.
    Gateway,
    /// Customers.
    Customer,
    /// Orders: the saga's coordinator and the payment call.
    Order,
    /// Payment holds, captures, refunds.
    Payment,
    /// Menu, stock and tickets.
    Kitchen,
    /// Deliveries.
    Delivery,
    /// Read models of every topic ("my page").
    Mypage,
    /// Loyalty stamps.
    Stamp,
}

impl Component {
    /// Every component, in the order the platform starts them and the operator lists them.
    pub const ALL: [Self; 8] = [
        Self::Gateway,
        Self::Customer,
        Self::Order,
        Self::Payment,
        Self::Kitchen,
        Self::Delivery,
        Self::Mypage,
        Self::Stamp,
    ];

    /// The name `serve` takes, and that logs, metrics, consumer groups, schemas, object names and labels use.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Customer => "customer",
            Self::Order => "order",
            Self::Payment => "payment",
            Self::Kitchen => "kitchen",
            Self::Delivery => "delivery",
            Self::Mypage => "mypage",
            Self::Stamp => "stamp",
        }
    }

    /// The component of that name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|component| component.name() == name)
    }

    /// Whether it keeps data: it gets a database (PostgreSQL schema or SQLite volume); the gateway keeps none.
    pub const fn stateful(self) -> bool {
        !matches!(self, Self::Gateway)
    }

    /// Whether it is reachable from outside the app (Service type, Ingress, the NetworkPolicy's outside rule);
    /// every other component only answers its peers.
    pub const fn exposed(self) -> bool {
        matches!(self, Self::Gateway)
    }

    /// The topic it publishes its events to (before the prefix), if it publishes any.
    pub const fn publishes(self) -> Option<&'static str> {
        match self {
            Self::Gateway | Self::Mypage => None,
            Self::Customer => Some(topics::CUSTOMERS_TOPIC),
            Self::Order => Some(topics::ORDERS_TOPIC),
            Self::Payment => Some(topics::PAYMENTS_TOPIC),
            Self::Kitchen => Some(topics::KITCHEN_TOPIC),
            Self::Delivery => Some(topics::DELIVERIES_TOPIC),
            Self::Stamp => Some(topics::STAMPS_TOPIC),
        }
    }

    /// The topics it consumes (before the prefix).
    pub const fn consumes(self) -> &'static [&'static str] {
        match self {
            Self::Gateway | Self::Customer => &[],
            Self::Order => &[
                topics::KITCHEN_TOPIC,
                topics::DELIVERIES_TOPIC,
                topics::PAYMENTS_TOPIC,
            ],
            Self::Payment | Self::Kitchen | Self::Delivery => &[topics::ORDERS_TOPIC],
            Self::Mypage => &topics::ALL,
            Self::Stamp => &[topics::PAYMENTS_TOPIC],
        }
    }

    /// Whether it talks to the broker at all (and so gets the Kafka settings).
    pub const fn uses_events(self) -> bool {
        self.publishes().is_some() || !self.consumes().is_empty()
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

impl std::str::FromStr for Component {
    type Err = UnknownComponent;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::from_name(name).ok_or_else(|| UnknownComponent(name.to_owned()))
    }
}

/// A name that is not one of [`Component::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownComponent(pub String);

impl std::fmt::Display for UnknownComponent {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known: Vec<&str> = Component::ALL
            .iter()
            .map(|component| component.name())
            .collect();
        write!(
            formatter,
            "unknown component {:?} (one of: {})",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownComponent {}

/// Which component owns each resource under `/api`: what the gateway routes, and what the operator writes into
/// `GATEWAY_ROUTES` for the enabled components.
pub const RESOURCE_OWNERS: [(&str, Component); 8] = [
    ("customers", Component::Customer),
    ("orders", Component::Order),
    ("payments", Component::Payment),
    ("menu", Component::Kitchen),
    ("tickets", Component::Kitchen),
    ("deliveries", Component::Delivery),
    ("mypage", Component::Mypage),
    ("stamps", Component::Stamp),
];

/// Resources whose writes are service-to-service calls, never a customer's: the gateway lets only reads of them
/// through (anyone could otherwise mint authorizations), and the owning service accepts a write only with the
/// internal credential (`env::INTERNAL_TOKEN`), which the operator gives to the owner and to the callers.
pub const INTERNAL_WRITES: [&str; 1] = ["payments"];

/// The components that write `INTERNAL_WRITES` resources of other components (order authorizes payments).
pub const INTERNAL_CALLERS: [Component; 1] = [Component::Order];

/// Environment variables the services read (defaults are the kit's; see docs/architecture.md).
pub mod env {
    /// Listen port.
    pub const HTTP_PORT: &str = "HTTP_PORT";
    /// The credential of calls between services (at least 32 characters): callers send it as a bearer token,
    /// owners of internal writes refuse writes without it. Unset: writes are open (the all-in-one mode sets one).
    pub const INTERNAL_TOKEN: &str = "INTERNAL_TOKEN";
    /// `sqlite://PATH` or `postgres://...`.
    pub const DATABASE_URL: &str = "DATABASE_URL";
    /// PostgreSQL schema of the service's tables (default: the service's name), so services can share a database.
    pub const DATABASE_SCHEMA: &str = "DATABASE_SCHEMA";
    /// PostgreSQL pool size per process (the operator sizes it so every pod at full scale fits the server).
    pub const DATABASE_MAX_CONNECTIONS: &str = "DATABASE_MAX_CONNECTIONS";
    /// Kafka bootstrap servers.
    pub const KAFKA_BOOTSTRAP_SERVERS: &str = "KAFKA_BOOTSTRAP_SERVERS";
    /// Topic and group prefix.
    pub const KAFKA_TOPIC_PREFIX: &str = "KAFKA_TOPIC_PREFIX";
    /// Partitions of created topics.
    pub const KAFKA_TOPIC_PARTITIONS: &str = "KAFKA_TOPIC_PARTITIONS";
    /// Replication factor of created topics.
    pub const KAFKA_REPLICATION_FACTOR: &str = "KAFKA_REPLICATION_FACTOR";
    /// The pod's name (the operator sets it from the downward API); names the pod's log file and its consumer
    /// group members.
    pub const POD_NAME: &str = "POD_NAME";
    /// Delay between readiness turning 503 and the listener closing.
    pub const SHUTDOWN_DRAIN_DELAY_MS: &str = "SHUTDOWN_DRAIN_DELAY_MS";
    /// Bound on finishing in-flight work after the drain.
    pub const SHUTDOWN_TIMEOUT_MS: &str = "SHUTDOWN_TIMEOUT_MS";
    /// Log level or filter.
    pub const LOG_LEVEL: &str = "LOG_LEVEL";
    /// An extra JSON log file.
    pub const LOG_FILE: &str = "LOG_FILE";
    /// The gateway's routes: `resource=url,...`.
    pub const GATEWAY_ROUTES: &str = "GATEWAY_ROUTES";
    /// Browser origins the gateway lets in.
    pub const GATEWAY_CORS_ALLOWED_ORIGINS: &str = "GATEWAY_CORS_ALLOWED_ORIGINS";
    /// Where the order service finds payment.
    pub const PAYMENT_URL: &str = "PAYMENT_URL";
    /// Deadline of the payment call.
    pub const PAYMENT_TIMEOUT_MS: &str = "PAYMENT_TIMEOUT_MS";
    /// The longest a request to a service may take before it is answered 503.
    pub const HTTP_REQUEST_TIMEOUT_MS: &str = "HTTP_REQUEST_TIMEOUT_MS";
    /// The gateway's per-route deadlines: `resource=ms,...`.
    pub const GATEWAY_ROUTE_TIMEOUTS_MS: &str = "GATEWAY_ROUTE_TIMEOUTS_MS";
    /// The gateway's deadline of a route without its own.
    pub const GATEWAY_TIMEOUT_MS: &str = "GATEWAY_TIMEOUT_MS";
    /// Calls in flight to payment at most.
    pub const PAYMENT_MAX_CONCURRENT: &str = "PAYMENT_MAX_CONCURRENT";
    /// Breaker: failure rate that opens it.
    pub const PAYMENT_BREAKER_FAILURE_RATE_PERCENT: &str = "PAYMENT_BREAKER_FAILURE_RATE_PERCENT";
    /// Breaker: calls before the rate counts.
    pub const PAYMENT_BREAKER_MINIMUM_CALLS: &str = "PAYMENT_BREAKER_MINIMUM_CALLS";
    /// Breaker: open time in seconds.
    pub const PAYMENT_BREAKER_OPEN_SECONDS: &str = "PAYMENT_BREAKER_OPEN_SECONDS";
}

/// The type of every event the services exchange (the producer and each consumer name it from here, so a rename is
/// one edit; CloudEvents `type`, versioned). Order's events first: four services consume them.
pub mod event_types {
    /// An order was paid and registered (subject: the order id).
    pub const ORDER_PLACED: &str = "food.order.placed.v1";
    /// The customer cancelled it.
    pub const ORDER_CANCELLED: &str = "food.order.cancelled.v1";
    /// The kitchen could not make it, or its payment did not complete in time (the hold is voided).
    pub const ORDER_REJECTED: &str = "food.order.rejected.v1";
    /// Its food is cooked and handed to delivery: from here it can no longer be cancelled, and only this opens a
    /// delivery. The order service decides it in the same transaction that refuses later cancels, so a cancel
    /// and a delivery can never both win.
    pub const ORDER_DISPATCHED: &str = "food.order.dispatched.v1";
    /// The kitchen may cook it (the answer to [`COOKING_REQUESTED`]): from here it can no longer be cancelled. The
    /// order service decides it in the same transaction that refuses later cancels, so nothing is cooked after a
    /// cancel was acknowledged, whatever order the events arrive in.
    pub const ORDER_CLEARED: &str = "food.order.cleared.v1";
    /// A cook (or the auto mode) wants to start an accepted ticket: the kitchen waits for [`ORDER_CLEARED`].
    pub const COOKING_REQUESTED: &str = "food.kitchen.cooking-requested.v1";
    /// Cooking finished: ready for pickup.
    pub const COOKING_FINISHED: &str = "food.kitchen.cooking-finished.v1";
    /// Cooking started.
    pub const COOKING_STARTED: &str = "food.kitchen.cooking-started.v1";
    /// A customer was deleted.
    pub const CUSTOMER_DELETED: &str = "food.customer.deleted.v1";
    /// A customer registered.
    pub const CUSTOMER_REGISTERED: &str = "food.customer.registered.v1";
    /// A customer changed their name or e-mail.
    pub const CUSTOMER_UPDATED: &str = "food.customer.updated.v1";
    /// The food was handed to the customer.
    pub const DELIVERED: &str = "food.delivery.delivered.v1";
    /// The order was cancelled before the food was handed over.
    pub const DELIVERY_CANCELLED: &str = "food.delivery.cancelled.v1";
    /// A rider picked the food up (subject: the order id).
    pub const DELIVERY_STARTED: &str = "food.delivery.started.v1";
    /// Some dish is out of stock; nothing was reserved.
    pub const KITCHEN_REJECTED: &str = "food.kitchen.rejected.v1";
    /// A menu item was created or changed (subject: the menu id). The order service keeps its menu from these.
    pub const MENU_ITEM_UPDATED: &str = "food.kitchen.menu-item-updated.v1";
    /// A payment was captured: the customer paid for a placed order (stamps follow this, not the hold).
    pub const PAYMENT_APPROVED: &str = "food.payment.approved.v1";
    /// A captured payment was refunded.
    pub const PAYMENT_REFUNDED: &str = "food.payment.refunded.v1";
    /// A hold was voided: its order was never placed, nothing was charged.
    pub const PAYMENT_VOIDED: &str = "food.payment.voided.v1";
    /// Stamps taken back.
    pub const STAMPS_DEDUCTED: &str = "food.stamp.deducted.v1";
    /// Stamps earned (subject: the order id).
    pub const STAMPS_EARNED: &str = "food.stamp.earned.v1";
    /// Every dish of an order is in stock and reserved (subject: the order id).
    pub const TICKET_ACCEPTED: &str = "food.kitchen.ticket-accepted.v1";
    /// The order was cancelled; the stock is back.
    pub const TICKET_CANCELLED: &str = "food.kitchen.ticket-cancelled.v1";
}

/// The topics, one per aggregate, before the configured prefix (`food.orders`).
pub mod topics {
    /// Orders: placed, cancelled, rejected, dispatched (key: the order id).
    pub const ORDERS_TOPIC: &str = "orders";
    /// The kitchen: menu changes and tickets (key: the order id, or the dish for menu changes).
    pub const KITCHEN_TOPIC: &str = "kitchen";
    /// Deliveries (key: the order id).
    pub const DELIVERIES_TOPIC: &str = "deliveries";
    /// Payments: approved (captured), refunded, voided (key: the order id).
    pub const PAYMENTS_TOPIC: &str = "payments";
    /// Customers: registered, updated, deleted (key: the customer id).
    pub const CUSTOMERS_TOPIC: &str = "customers";
    /// Loyalty stamps earned and deducted (key: the customer id).
    pub const STAMPS_TOPIC: &str = "stamps";
    /// Every topic (what my page reads).
    pub const ALL: [&str; 6] = [
        ORDERS_TOPIC,
        KITCHEN_TOPIC,
        DELIVERIES_TOPIC,
        PAYMENTS_TOPIC,
        CUSTOMERS_TOPIC,
        STAMPS_TOPIC,
    ];
}

/// The limits of an order, enforced at every edge that sees one (order's API, payment's API, the kitchen's menu),
/// so an order the order service accepts is never refused further down, and no amount can overflow.
pub mod limits {
    /// Lines in one order.
    pub const MAX_ORDER_LINES: usize = 20;
    /// Portions on one line.
    pub const MAX_LINE_QTY: i64 = 100;
    /// Portions in one order.
    pub const MAX_ORDER_QTY: i64 = MAX_ORDER_LINES as i64 * MAX_LINE_QTY;
    /// Price of one portion, minor units (100,000.00): a menu price the kitchen accepts.
    pub const MAX_PRICE: i64 = 10_000_000;
    /// Amount of one order, minor units: the most portions at the highest price, far inside `i64`.
    pub const MAX_AMOUNT: i64 = MAX_ORDER_QTY * MAX_PRICE;
    /// Portions of one dish in stock.
    pub const MAX_STOCK: i64 = 1_000_000;
    /// Characters (not bytes) of a dish's name.
    pub const MAX_DISH_NAME_CHARS: usize = 100;
}

/// Default drain delay of a service (the kit's `SHUTDOWN_DRAIN_DELAY_MS`): endpoints stop routing meanwhile.
pub const DRAIN_DELAY_SECONDS: i64 = 5;
/// Default bound on in-flight requests, then again on consumers and the outbox flush (`SHUTDOWN_TIMEOUT_MS`).
pub const SHUTDOWN_TIMEOUT_SECONDS: i64 = 10;
/// What the relay's last publish round may add to its flush bound at shutdown.
pub const RELAY_STOP_MARGIN_SECONDS: i64 = 2;

/// The longest a service's shutdown takes with the default settings, SIGTERM to exit: the drain delay, then three
/// steps each bounded by the shutdown timeout (in-flight requests, consumers, outbox flush), plus the relay's margin.
/// The operator's grace period must cover it, or the kubelet kills a service mid-flush.
pub const fn shutdown_worst_case_seconds() -> i64 {
    DRAIN_DELAY_SECONDS + 3 * SHUTDOWN_TIMEOUT_SECONDS + RELAY_STOP_MARGIN_SECONDS
}

/// Deadlines, and how the ones around the payment call follow its own: `POST /orders` waits for payment, and every
/// deadline it passes through (order's request deadline, the gateway's route to orders and its request deadline)
/// must outlast that call, or the call is cut while payment may still act, and the breaker never sees a slow payment.
pub mod deadlines {
    /// A service's request deadline (`HTTP_REQUEST_TIMEOUT_MS`) when nothing sets it.
    pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
    /// The gateway's deadline of a route without its own (`GATEWAY_TIMEOUT_MS`).
    pub const GATEWAY_ROUTE_TIMEOUT_MS: u64 = 5_000;
    /// What each hop around the payment call needs beyond the call itself: its own database work and the answer.
    pub const HOP_MARGIN_MS: u64 = 2_000;

    /// The shortest request deadline order can run with when the payment call may take `payment_timeout_ms`.
    pub fn order_request_minimum_ms(payment_timeout_ms: u64) -> u64 {
        payment_timeout_ms.saturating_add(HOP_MARGIN_MS)
    }

    /// The shortest deadline of the gateway's route to orders (and of the gateway's requests) for that call.
    pub fn gateway_orders_minimum_ms(payment_timeout_ms: u64) -> u64 {
        order_request_minimum_ms(payment_timeout_ms).saturating_add(HOP_MARGIN_MS)
    }
}

/// The vocabulary of the operator's status: condition types (kstatus) and the reasons of its conditions and Events,
/// spelled once; docs/crd.md lists them for users and a test keeps the two in step.
pub mod conditions {
    /// The Ready condition type.
    pub const READY: &str = "Ready";
    /// A change is being rolled out.
    pub const RECONCILING: &str = "Reconciling";
    /// Progress needs someone to act.
    pub const STALLED: &str = "Stalled";

    /// Every reason the operator writes, in its conditions and in its Events, spelled once (docs/crd.md lists them
    /// for users; `operator/argocd/health.lua` reads the condition types, not these).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Reason {
        /// Ready: every component's Deployment is rolled out.
        AllComponentsAvailable,
        /// Ready false and Reconciling: a rollout is in progress.
        RollingOut,
        /// Reconciling false.
        Idle,
        /// Stalled false.
        Progressing,
        /// Ready false because the app is stalled.
        Stalled,
        /// `spec.paused` is true.
        Paused,
        /// Stalled: the spec breaks a rule (or cannot be read).
        InvalidSpec,
        /// Stalled: a Secret the spec names is missing or lacks the key.
        SecretMissing,
        /// Stalled: the API server refused a child for good.
        ApplyRefused,
        /// Stalled: a Deployment passed its progress deadline (Kubernetes' own reason, read from the Deployment).
        ProgressDeadlineExceeded,
        /// Event: children created.
        Created,
        /// Event: children changed after a spec change.
        Updated,
        /// Event: children edited or deleted by someone else, put back.
        Healed,
        /// Event: children the spec no longer asks for, deleted.
        Pruned,
        /// Warning Event: a reconcile failed and will be retried.
        ReconcileFailed,
        /// Warning Event: the app's pods at full scale need more PostgreSQL connections than the server allows.
        ConnectionBudget,
    }

    impl Reason {
        /// Every reason, for documentation checks.
        pub const ALL: [Self; 16] = [
            Self::AllComponentsAvailable,
            Self::RollingOut,
            Self::Idle,
            Self::Progressing,
            Self::Stalled,
            Self::Paused,
            Self::InvalidSpec,
            Self::SecretMissing,
            Self::ApplyRefused,
            Self::ProgressDeadlineExceeded,
            Self::Created,
            Self::Updated,
            Self::Healed,
            Self::Pruned,
            Self::ReconcileFailed,
            Self::ConnectionBudget,
        ];

        /// The reason as written in a condition or an Event.
        pub const fn as_str(self) -> &'static str {
            match self {
                Self::AllComponentsAvailable => "AllComponentsAvailable",
                Self::RollingOut => "RollingOut",
                Self::Idle => "Idle",
                Self::Progressing => "Progressing",
                Self::Stalled => "Stalled",
                Self::Paused => "Paused",
                Self::InvalidSpec => "InvalidSpec",
                Self::SecretMissing => "SecretMissing",
                Self::ApplyRefused => "ApplyRefused",
                Self::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
                Self::Created => "Created",
                Self::Updated => "Updated",
                Self::Healed => "Healed",
                Self::Pruned => "Pruned",
                Self::ReconcileFailed => "ReconcileFailed",
                Self::ConnectionBudget => "ConnectionBudget",
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_has_one_name_that_reads_back() {
        for component in Component::ALL {
            assert_eq!(Component::from_name(component.name()), Some(component));
            assert_eq!(component.to_string().parse::<Component>(), Ok(component));
        }
        let mut names: Vec<&str> = Component::ALL
            .iter()
            .map(|component| component.name())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Component::ALL.len());
        let unknown = "billing".parse::<Component>().unwrap_err().to_string();
        assert!(
            unknown.contains("billing") && unknown.contains("gateway"),
            "{unknown}"
        );
    }

    #[test]
    fn every_consumed_topic_has_a_publisher_and_every_topic_a_reader() {
        for topic in topics::ALL {
            let publishers: Vec<Component> = Component::ALL
                .into_iter()
                .filter(|component| component.publishes() == Some(topic))
                .collect();
            assert_eq!(publishers.len(), 1, "{topic}: {publishers:?}");
            assert!(
                Component::Mypage.consumes().contains(&topic),
                "my page reads every topic, {topic} too"
            );
        }
        for component in Component::ALL {
            for topic in component.consumes() {
                assert!(topics::ALL.contains(topic), "{component} reads {topic}");
            }
        }
    }

    #[test]
    fn only_the_gateway_is_exposed_keeps_no_data_and_ignores_the_broker() {
        for component in Component::ALL {
            let gateway = component == Component::Gateway;
            assert_eq!(component.exposed(), gateway);
            assert_eq!(component.stateful(), !gateway);
            assert_eq!(component.uses_events(), !gateway);
        }
    }

    #[test]
    fn every_resource_owner_and_internal_caller_is_a_component_that_keeps_data() {
        for (_, owner) in RESOURCE_OWNERS {
            assert!(owner.stateful(), "{owner}");
        }
        for caller in INTERNAL_CALLERS {
            assert!(caller.stateful(), "{caller}");
        }
    }
}
