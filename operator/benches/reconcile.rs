//! The controller's cost against the in-memory fake API server: CPU time of a reconcile of the production
//! example (8 components, 44 children) when everything is in place (the steady state) and when everything is
//! created; the API calls a reconcile makes with 1, 100 and 1,000 apps; and the memory of watch caches holding
//! 1,000 such apps with their children.
//!
//! `cargo bench -p food-delivery-operator --features fake-api --bench reconcile`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use food_delivery_operator::reconcile::children::ChildCaches;
use food_delivery_operator::reconcile::fake_api::FakeApi;
use food_delivery_operator::reconcile::{Context, reconcile, wall_clock};
use food_delivery_operator::resource::FoodDeliveryApp;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRODUCTION: &str = include_str!("../../examples/production.yaml");
const APPS: &str = "/apis/fooddelivery.dev/v1alpha1/namespaces/food/fooddeliveryapps";

/// This process's user + system CPU time.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn resident_mib() -> f64 {
    food_delivery_testkit::resident_kib(std::process::id()) as f64 / 1024.0
}

fn context(client: kube::Client) -> Arc<Context> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "food-delivery-operator".into(),
            instance: None,
        },
    );
    Arc::new(Context {
        client,
        recorder,
        now: wall_clock,
        caches: Default::default(),
    })
}

fn stored_app(fake: &FakeApi) -> FoodDeliveryApp {
    serde_json::from_value(fake.get(APPS, "good-morning").unwrap()).unwrap()
}

fn seed(fake: &FakeApi) {
    seed_in(fake, "food");
}

/// The production example in `namespace`, with its Secret.
fn seed_in(fake: &FakeApi, namespace: &str) {
    let mut app: Value = serde_saphyr::from_str(PRODUCTION).unwrap();
    app["metadata"]["uid"] = json!(format!("app-uid-{namespace}"));
    app["metadata"]["generation"] = json!(1);
    app["metadata"]["namespace"] = json!(namespace);
    fake.insert(
        &format!("/apis/fooddelivery.dev/v1alpha1/namespaces/{namespace}/fooddeliveryapps"),
        app,
    );
    fake.insert(
        &format!("/api/v1/namespaces/{namespace}/secrets"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "food-db"}, "data": {"url": "eA=="}}),
    );
}

/// Reconciles `count` apps (one namespace each) until they are in place, then once more each, and prints the
/// API calls and time of that steady-state round: the children listed, or read from watch caches (`cached`).
async fn calls_with(count: usize, cached: bool) {
    let (client, fake) = FakeApi::start();
    let mut context = context(client.clone());
    let namespaces: Vec<String> = (0..count).map(|index| format!("food-{index}")).collect();
    for namespace in &namespaces {
        seed_in(&fake, namespace);
    }
    let app_of = |namespace: &str| -> Arc<FoodDeliveryApp> {
        let path =
            format!("/apis/fooddelivery.dev/v1alpha1/namespaces/{namespace}/fooddeliveryapps");
        Arc::new(serde_json::from_value(fake.get(&path, "good-morning").unwrap()).unwrap())
    };
    for _ in 0..2 {
        for namespace in &namespaces {
            reconcile(app_of(namespace), context.clone()).await.unwrap();
        }
    }
    if cached {
        let namespaces: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        let before = resident_mib();
        let caches = ChildCaches::snapshot(&client, &namespaces).await.unwrap();
        let after = resident_mib();
        if count == 1000 {
            // An upper bound: the LIST answers read to fill the caches are freed, not always given back.
            println!(
                "  watch caches of 1,000 apps' children as the fake serves them, trimmed as the controller's: RSS {after:.1} MiB ({:+.1} MiB)",
                after - before
            );
        }
        context = Arc::new(Context {
            client,
            recorder: context.recorder.clone(),
            now: wall_clock,
            caches,
        });
    }
    fake.take_seen();
    let started = Instant::now();
    for namespace in &namespaces {
        reconcile(app_of(namespace), context.clone()).await.unwrap();
    }
    let wall = started.elapsed() / u32::try_from(count).unwrap();
    let seen = fake.take_seen();
    let per_app = |keep: &dyn Fn(&food_delivery_operator::reconcile::fake_api::Seen) -> bool| {
        seen.iter().filter(|seen| keep(seen)).count() as f64 / count as f64
    };
    println!(
        "  {count:>5} apps, {}: {:>5.1} calls per reconcile ({:.1} LIST/GET, {:.1} apply), {:.1} writes, wall {:>6.2} ms",
        if cached {
            "watch caches"
        } else {
            "listed      "
        },
        per_app(&|_| true),
        per_app(&|seen| seen.method == http::Method::GET),
        per_app(&|seen| seen.method == http::Method::PATCH),
        per_app(&|seen| seen.is_write()),
        wall.as_secs_f64() * 1e3,
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // First reconciles: everything is created.
        let rounds = 50;
        let cpu_before = cpu_time();
        let started = Instant::now();
        for _ in 0..rounds {
            let (client, fake) = FakeApi::start();
            seed(&fake);
            reconcile(Arc::new(stored_app(&fake)), context(client)).await.unwrap();
        }
        let create_cpu = (cpu_time() - cpu_before) / rounds;
        let create_wall = started.elapsed() / rounds;

        // Steady state: nothing to change.
        let (client, fake) = FakeApi::start();
        seed(&fake);
        let context = context(client);
        reconcile(Arc::new(stored_app(&fake)), context.clone()).await.unwrap();
        let app = Arc::new(stored_app(&fake));
        reconcile(app.clone(), context.clone()).await.unwrap();
        fake.take_seen();
        let rounds = 300;
        let cpu_before = cpu_time();
        let started = Instant::now();
        for _ in 0..rounds {
            reconcile(app.clone(), context.clone()).await.unwrap();
        }
        let steady_cpu = (cpu_time() - cpu_before) / rounds;
        let steady_wall = started.elapsed() / rounds;
        let writes = fake.take_seen().iter().filter(|seen| seen.is_write()).count();
        assert_eq!(writes, 0, "the steady state writes nothing");
        println!("reconcile of the production example (8 components, 44 children), fake API in process:");
        println!("  creating everything: CPU {:>6.2} ms, wall {:>6.2} ms per reconcile", create_cpu.as_secs_f64() * 1e3, create_wall.as_secs_f64() * 1e3);
        println!("  nothing to change:   CPU {:>6.2} ms, wall {:>6.2} ms per reconcile (0 writes)", steady_cpu.as_secs_f64() * 1e3, steady_wall.as_secs_f64() * 1e3);
        println!("  (both include the fake server's own work and JSON on both sides of the HTTP boundary)");
        println!("API calls of a steady-state reconcile (everything in place), one namespace per app:");
        for count in [1, 100, 1000] {
            calls_with(count, false).await;
            calls_with(count, true).await;
        }
    });
}
