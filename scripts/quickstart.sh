#!/usr/bin/env bash
# Builds the PostgreSQL example connector and the keyward CLI, then renders
# the example connection from the embedded file backend.
source "$(dirname "$0")/common.sh"

ensure_wasm_target
echo "==> building the postgres connector (wasm32-wasip2)"
build_connectors -p postgres-connector
mkdir -p examples/quickstart/connectors
cp target/connectors/wasm32-wasip2/connector/postgres_connector.wasm examples/quickstart/connectors/postgres.wasm

echo "==> building the keyward CLI"
cargo build --quiet -p keyward-cli --bin keyward
KEYWARD=target/debug/keyward
CONFIG=examples/quickstart/keyward.toml

echo "==> keyward describe examples/quickstart/connectors/postgres.wasm"
"$KEYWARD" describe examples/quickstart/connectors/postgres.wasm
echo "==> keyward refs --config $CONFIG orders-db"
"$KEYWARD" refs --config "$CONFIG" orders-db
echo "==> keyward render --config $CONFIG orders-db"
"$KEYWARD" render --config "$CONFIG" orders-db
echo "==> keyward render --config $CONFIG orders-db --reveal"
"$KEYWARD" render --config "$CONFIG" orders-db --reveal
