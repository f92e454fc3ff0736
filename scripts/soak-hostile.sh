#!/usr/bin/env bash
# A soak (not run by CI): `keyward serve` with a hostile connector looping
# over every attack on what the host does after the guest returns, beside
# honest renders, for SOAK_SECONDS (default 180). Prints the hostile
# renders answered, the honest renders' p99 idle, at the start and overall,
# and the service's resident memory at start, peak and after.
source "$(dirname "$0")/common.sh"

ensure_wasm_target
ensure_moto
ensure_python_toolchain
ensure_typescript_toolchain
KEYWARD_SOAK_SECONDS="${SOAK_SECONDS:-180}" cargo test --release -p keyward-cli --test serve_limits \
    a_hostile_connector_in_a_loop -- --nocapture 2>&1 | grep -E "^soak|test result|panicked"
