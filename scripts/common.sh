# Shared by the scripts: toolchain checks and the connector build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ensure_wasm_target() {
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        echo "==> installing the wasm32-wasip2 target"
        rustup target add wasm32-wasip2
    fi
}

# Builds example connectors into target/connectors (the directory the test
# build script uses too, so the work is shared).
build_connectors() {
    CARGO_TARGET_DIR="$ROOT/target/connectors" \
        cargo build --quiet --target wasm32-wasip2 --profile connector "$@"
}
