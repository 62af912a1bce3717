//! The kitchen service: owns the menu and its stock; turns each placed order into a ticket (reserving stock) or an
//! out-of-stock rejection; cooks; gives the stock back when an order is cancelled. Wiring only; the rules live
//! in `domain`, the HTTP edge in `api`, reactions to events and the auto mode in `policies`.

pub mod api;
pub mod domain;
pub mod events;
pub mod policies;
pub mod store;

use axum::Router;
use domain::MenuItem;
use food_delivery_contract::Component;
use food_delivery_kit::events::{EventBus, OutboxError};
use food_delivery_kit::host::HostError;
use food_delivery_kit::{ConfigError, Environment, KitConfig, ServiceHost, ServiceSpec, Store};
use std::time::Duration;

/// What the service is to the kit.
pub const SPEC: ServiceSpec = ServiceSpec::of(Component::Kitchen, store::MIGRATIONS);

/// The kitchen's own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `KITCHEN_MENU`: the starter menu as a JSON array of `{menuId, name, price, stock}`; dishes missing from the
    /// store are added at startup, existing ones are left as they are (changes made through the API persist).
    pub starter_menu: Vec<MenuItem>,
    /// `KITCHEN_AUTO_COOK`: start and finish tickets without a cook (default false).
    pub auto_cook: bool,
    /// `KITCHEN_COOK_TIME_MS`: how long auto mode cooks (default 2000).
    pub cook_time: Duration,
    /// `KITCHEN_MENU_ANNOUNCE_MS`: how often every dish is announced again as it stands (default one hour; also
    /// at every start). The order service prices orders from its copy of the menu, learned from these events only:
    /// a copy lost or restored after the topic's retention dropped the old events, or an event it had to skip,
    /// would otherwise stay wrong for ever.
    pub menu_announce_every: Duration,
    /// `KITCHEN_AUTO_START_AFTER_MS`: in auto mode, how long an accepted ticket waits before the kitchen asks to
    /// cook it (default 2000): the customer's window to cancel, which closes when the order is cleared to cook.
    pub auto_start_after: Duration,
}

/// The menu a fresh kitchen starts with.
pub fn default_menu() -> Vec<MenuItem> {
    [
        ("bibimbap", "Bibimbap", 1200, 100),
        ("kimchi-stew", "Kimchi stew", 1000, 100),
        ("tteokbokki", "Tteokbokki", 800, 100),
        ("green-tea", "Green tea", 300, 200),
    ]
    .into_iter()
    .map(|(menu_id, name, price, stock)| MenuItem {
        menu_id: menu_id.to_owned(),
        name: name.to_owned(),
        price,
        stock,
    })
    .collect()
}

impl Settings {
    /// Reads the settings.
    pub fn from_env(environment: &Environment) -> Result<Self, ConfigError> {
        let starter_menu = match environment.optional("KITCHEN_MENU") {
            None => default_menu(),
            Some(json) => {
                let menu: Vec<MenuItem> = serde_json::from_str(&json).map_err(|error| {
                    ConfigError::new(
                        "KITCHEN_MENU",
                        format!("expected a JSON array of {{menuId, name, price, stock}}: {error}"),
                    )
                })?;
                if let Some(bad) = menu.iter().find(|item| item.price < 0 || item.stock < 0) {
                    return Err(ConfigError::new(
                        "KITCHEN_MENU",
                        format!("{}: price and stock must not be negative", bad.menu_id),
                    ));
                }
                menu
            }
        };
        Ok(Self {
            starter_menu,
            auto_cook: environment.flag_or("KITCHEN_AUTO_COOK", false)?,
            cook_time: environment
                .number_in_or("KITCHEN_COOK_TIME_MS", 0..=3_600_000, 2000)
                .map(Duration::from_millis)?,
            auto_start_after: environment
                .number_in_or("KITCHEN_AUTO_START_AFTER_MS", 0..=3_600_000, 2000)
                .map(Duration::from_millis)?,
            menu_announce_every: environment
                .number_in_or(
                    "KITCHEN_MENU_ANNOUNCE_MS",
                    1_000..=7 * 24 * 3_600_000,
                    3_600_000,
                )
                .map(Duration::from_millis)?,
        })
    }
}

/// Adds the starter dishes the store does not have yet, each with its event; returns the ids of those added.
async fn seed_menu(
    store: &Store,
    outbox: &food_delivery_kit::events::Outbox,
    menu: &[MenuItem],
) -> Result<Vec<String>, OutboxError> {
    let mut added = Vec::new();
    for item in menu {
        let mut transaction = store.begin().await?;
        if store::add_menu_item_if_missing(&mut transaction, item).await? {
            policies::record_dish(outbox, &mut transaction, item).await?;
            added.push(item.menu_id.clone());
        }
        outbox.commit(transaction).await?;
    }
    Ok(added)
}

/// Starts the service's parts (store, bus, relay, the order consumer, auto mode) and returns the host with the API.
/// `bus` replaces Kafka (the all-in-one mode passes the in-process bus).
pub async fn start(
    config: KitConfig,
    settings: Settings,
    bus: Option<EventBus>,
) -> Result<(ServiceHost, Router), HostError> {
    let mut host = ServiceHost::start(SPEC, config, bus).await?;
    let store = host.store()?;
    let outbox = host.outbox();
    let seeded = seed_menu(&store, &outbox, &settings.starter_menu).await?;
    let (announcing, every) = (
        (store.clone(), outbox.clone()),
        settings.menu_announce_every,
    );
    host.spawn_worker(move |shutdown| {
        policies::announce_menu(announcing.0, announcing.1, seeded, every, shutdown)
    });
    host.spawn_consumer(
        SPEC.name,
        policies::KitchenOrders {
            outbox: outbox.clone(),
        },
    )?;
    if settings.auto_cook {
        let (store, outbox) = (store.clone(), outbox.clone());
        let (start_after, cook_time) = (settings.auto_start_after, settings.cook_time);
        host.spawn_worker(move |shutdown| {
            policies::cook_unattended(store, outbox, start_after, cook_time, shutdown)
        });
    }
    let api = api::routes(api::KitchenApi { store, outbox });
    Ok((host, api))
}
