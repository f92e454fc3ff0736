#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, end-to-end and CLI tests.
# Installs what it needs; safe to run on a fresh machine and without a TTY.
source "$(dirname "$0")/common.sh"

ensure_wasm_target
ensure_moto
ensure_postgres
ensure_clients
ensure_python_toolchain
ensure_redis
ensure_typescript_toolchain
ensure_mariadb
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> cargo clippy (connectors, wasm32-wasip2)"
CONNECTORS=$(connector_packages)
# shellcheck disable=SC2046 # one word per package
CARGO_TARGET_DIR="$ROOT/target/connectors" cargo clippy --quiet --target wasm32-wasip2 \
    -p keyward-guest $(printf -- '-p %s ' $CONNECTORS) -- -D warnings
echo "==> pytest: the Python SDK and the Python example, natively"
(cd sdk/python && "$ROOT/target/venv/bin/python" -m pytest -q -p no:cacheprovider tests)
(cd examples/redis-python && PYTHONPATH="$ROOT/sdk/python:." "$ROOT/target/venv/bin/python" -m pytest -q -p no:cacheprovider tests)
echo "==> node --test: the TypeScript SDK and the TypeScript example, natively"
(cd sdk/typescript && npm test --silent)
(cd examples/mariadb-typescript && npm test --silent)
echo "==> cargo test"
# shellcheck disable=SC2046
cargo test --workspace $(printf -- '--exclude %s ' $CONNECTORS)

echo "==> fuzzing (bounded): the template parser, the reference canonicalizer and the destination parser"
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz
for target in template canonical destination; do
    # cargo fuzz wants nightly flags; RUSTC_BOOTSTRAP lets the stable
    # toolchain (the only one here) accept them.
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="${FUZZ_SECONDS:-30}" 2>&1 | tail -n 1)
done

if command -v systemd-analyze >/dev/null; then
    echo "==> systemd-analyze verify docs/deploy/keyward.service"
    sed "s|/usr/local/bin/keyward|$ROOT/target/debug/keyward|" docs/deploy/keyward.service > target/keyward.service
    systemd-analyze verify target/keyward.service
fi

echo "==> the README's quickstart"
bash scripts/quickstart.sh > target/quickstart.out
grep -q '"dsn": "postgresql://orders_app:p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9@db.internal.example:5432/orders?sslmode=require"' target/quickstart.out \
    || { cat target/quickstart.out; echo "quickstart did not render the expected DSN"; exit 1; }
echo "quickstart: ok"
