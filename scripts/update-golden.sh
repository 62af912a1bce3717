#!/usr/bin/env bash
# Regenerates the operator's golden files from examples/ (render of each example), the committed CRD and its copy
# in the Helm chart.
# Run it on purpose after a change to the build stage, then review the diff: the golden tests compare against
# these files and never write them.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/food-delivery/target}"
cargo build --quiet --locked -p food-delivery-operator
operator="$CARGO_TARGET_DIR/debug/food-delivery-operator"
"$operator" crd > crds/fooddeliveryapps.fooddelivery.dev.yaml
cp crds/fooddeliveryapps.fooddelivery.dev.yaml charts/food-delivery-operator/crds/
for example in examples/*.yaml; do
  name=$(basename "$example")
  "$operator" render -f "$example" > "operator/tests/golden/$name"
done
git status --short crds charts operator/tests/golden
