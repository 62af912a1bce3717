#!/usr/bin/env bash
# The one command that runs every check: installs what the tests need (idempotently, cached outside the clone),
# starts the Kafka-protocol broker on a free loopback port, runs formatting, lints and every test in one cargo
# invocation, and stops what it started even when something fails.
set -euo pipefail

repository="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repository"

cache="${FOOD_DELIVERY_CACHE:-$HOME/.cache/food-delivery}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
tansu_version="0.6.0"
postgres_url="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TEST_POSTGRES_URL="$postgres_url"

step() { printf '\n==> %s\n' "$*"; }

step "Kafka-protocol broker: tansu $tansu_version"
if tansu --version 2>/dev/null | grep -qx "tansu $tansu_version"; then
  echo "already installed: $(command -v tansu)"
else
  cargo install "tansu@$tansu_version" --locked --features dynostore,libsql
fi
TANSU_BIN="$(command -v tansu)"
export TANSU_BIN

step "Python tools (virtualenv at $cache/venv)"
venv="$cache/venv"
requirements="scripts/requirements-test.txt"
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" > "$stamp"
else
  echo "up to date"
fi
export FOOD_DELIVERY_VENV="$venv"
export PATH="$venv/bin:$PATH"

step "PostgreSQL at ${postgres_url%%/postgres}"
postgres_ready() { python3 - "$postgres_url" <<'PY'
import socket, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
try:
    socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}
if ! postgres_ready && command -v pg_ctlcluster >/dev/null; then
  echo "not reachable; starting the local cluster"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! postgres_ready; then
  echo "PostgreSQL is not reachable at $postgres_url; the store tests need it (set TEST_POSTGRES_URL)." >&2
  exit 1
fi
if command -v psql >/dev/null; then
  # Databases left behind by interrupted earlier runs.
  psql "$postgres_url" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'kit_test_%'" 2>/dev/null |
    while read -r database; do psql "$postgres_url" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true; done
fi

step "Starting the broker"
broker_dir="$(mktemp -d)"
broker_pid=""
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$broker_dir"
}
trap cleanup EXIT
broker_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
(cd "$broker_dir" && exec "$TANSU_BIN" broker \
  --listener-url "tcp://127.0.0.1:$broker_port" \
  --advertised-listener-url "tcp://127.0.0.1:$broker_port" \
  --storage-engine "memory://tansu/" >"$broker_dir/tansu.log" 2>&1) &
broker_pid=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null; then break; fi
  if ! kill -0 "$broker_pid" 2>/dev/null; then cat "$broker_dir/tansu.log" >&2; echo "the broker exited" >&2; exit 1; fi
  sleep 0.1
done
export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$broker_port"
echo "tansu listening on $KAFKA_BOOTSTRAP_SERVERS"

step "Formatting"
cargo fmt --all --check

step "Lints"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "Tests"
cargo nextest run --workspace --locked --no-fail-fast
