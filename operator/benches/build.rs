//! The build stage's cost: every object of the production example (eight components with HPA, PDB,
//! NetworkPolicy, Ingress and a log volume), and the same with validation and YAML, as `render` does it.
//!
//! `cargo bench -p food-delivery-operator --bench build`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use food_delivery_operator::build::build;
use food_delivery_operator::validate::parse_app;
use std::hint::black_box;

const PRODUCTION: &str = include_str!("../../examples/production.yaml");

fn benchmarks(criterion: &mut Criterion) {
    let app = parse_app(PRODUCTION).unwrap();
    assert_eq!(build(&app).deployments.len(), 8);
    criterion.bench_function("build: 8 components, 44 objects", |bench| {
        bench.iter(|| build(black_box(&app)))
    });
    criterion.bench_function("build + YAML", |bench| {
        bench.iter(|| build(black_box(&app)).to_yaml().unwrap())
    });
    criterion.bench_function("render (validate: schema + CEL, build, YAML)", |bench| {
        bench.iter(|| food_delivery_operator::render(black_box(PRODUCTION)).unwrap())
    });
}

criterion_group!(build_stage, benchmarks);
criterion_main!(build_stage);
