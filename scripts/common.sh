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

# The Rust connector packages (wasm32-wasip2 only), one per line: each
# declares itself with `[package.metadata.keyward] artifact = ...` in its
# own Cargo.toml, the one list (tests/support/build.rs reads it too).
connector_packages() {
    cargo metadata --format-version 1 --no-deps --offline | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    if (package.get("metadata") or {}).get("keyward", {}).get("artifact"):
        print(package["name"])'
}

# Builds example connectors into target/connectors (the directory the test
# build script uses too, so the work is shared).
build_connectors() {
    CARGO_TARGET_DIR="$ROOT/target/connectors" \
        cargo build --quiet --target wasm32-wasip2 --profile connector "$@"
}

# moto (a real Secrets Manager API server) in a virtualenv under target/;
# the tests start one server per test on a free loopback port.
MOTO_VERSION="5.2.5"
ensure_moto() {
    local venv="$ROOT/target/venv"
    if [ ! -x "$venv/bin/python" ]; then
        echo "==> creating $venv"
        python3 -m venv "$venv"
    fi
    if ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
        echo "==> installing moto[server]==$MOTO_VERSION"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
    fi
    export KEYWARD_TEST_PYTHON="$venv/bin/python"
}

# The clients of `keyward serve`, for the test that runs their examples
# against a real server and PostgreSQL: the TypeScript one built with its
# pinned toolchain (npm ci), pg8000 for the Python one.
PG8000_VERSION="1.31.2"
ensure_clients() {
    local venv="$ROOT/target/venv"
    if ! "$venv/bin/python" -c "import pg8000, sys; sys.exit(pg8000.__version__ != '$PG8000_VERSION')" 2>/dev/null; then
        echo "==> installing pg8000==$PG8000_VERSION"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pg8000==$PG8000_VERSION"
    fi
    echo "==> building clients/typescript (npm ci, tsc)"
    (cd "$ROOT/clients/typescript" && npm ci --no-audit --no-fund --silent && npx --no-install tsc -p .)
}

# PostgreSQL from Debian's packages, for the test that connects for real;
# each test starts its own server in a temporary directory.
ensure_postgres() {
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "==> installing PostgreSQL (Debian's postgresql package)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq postgresql >/dev/null
    fi
    command -v runuser >/dev/null || { echo "runuser (util-linux) is needed to run PostgreSQL as its own user"; exit 1; }
}

# The Python connector toolchain, in the same virtualenv: componentize-py
# (one self-contained wheel) builds components, pytest runs the SDK's and
# the examples' native tests, redis-py is the example's real client.
COMPONENTIZE_PY_VERSION="0.25.1"
PYTEST_VERSION="8.3.4"
REDIS_PY_VERSION="5.2.1"
ensure_python_toolchain() {
    ensure_moto
    local venv="$ROOT/target/venv"
    if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $COMPONENTIZE_PY_VERSION"; then
        echo "==> installing componentize-py==$COMPONENTIZE_PY_VERSION"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
    fi
    if ! "$venv/bin/python" -c "import pytest, redis, sys; sys.exit(pytest.__version__ != '$PYTEST_VERSION' or redis.__version__ != '$REDIS_PY_VERSION')" 2>/dev/null; then
        echo "==> installing pytest==$PYTEST_VERSION redis==$REDIS_PY_VERSION"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pytest==$PYTEST_VERSION" "redis==$REDIS_PY_VERSION"
    fi
}

# Redis from Debian's packages, for the Python example's real connection;
# each test starts its own server on a free port.
ensure_redis() {
    if ! command -v redis-server >/dev/null; then
        echo "==> installing Redis (Debian's redis-server package)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq redis-server >/dev/null
    fi
}

# The TypeScript connector toolchain: the SDK (componentize-js, esbuild,
# tsc, pinned in its package-lock.json) built once, and the example's
# packages (mysql2 is its real client). `npm ci` installs exactly the lock.
ensure_typescript_toolchain() {
    echo "==> building sdk/typescript and installing examples/mariadb-typescript (npm ci)"
    (cd "$ROOT/sdk/typescript" && npm ci --no-audit --no-fund --silent && npm run --silent build)
    (cd "$ROOT/examples/mariadb-typescript" && npm ci --no-audit --no-fund --silent)
}

# MariaDB from Debian's packages, for the TypeScript example's real
# connection; each test starts its own server in a temporary directory.
ensure_mariadb() {
    if ! command -v mariadbd >/dev/null; then
        echo "==> installing MariaDB (Debian's mariadb-server package)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq mariadb-server >/dev/null
    fi
}
