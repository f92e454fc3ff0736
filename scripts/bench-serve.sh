#!/usr/bin/env bash
# `keyward serve` side by side with the AWS Secrets Manager Agent, on one
# machine and one local Secrets Manager (moto), both under wrk with
# keep-alive on loopback: keyward renders the 3-secret template of
# benches/ in a sandboxed connector; the Agent serves one cached secret.
# Then a soak of keyward serve with its resident memory at start and end.
# Prints a table and writes benches/SERVE.md. Not run by CI.
source "$(dirname "$0")/common.sh"

ensure_wasm_target
ensure_moto
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
AGENT_VERSION=2.1.0
AGENT="$ROOT/target/agent/bin/aws_secretsmanager_agent"
if [ ! -x "$AGENT" ]; then
    echo "==> cargo install aws_secretsmanager_agent@$AGENT_VERSION"
    cargo install --quiet --locked "aws_secretsmanager_agent@$AGENT_VERSION" --root "$ROOT/target/agent"
fi
echo "==> building keyward (release) and the echo connector"
cargo build --quiet --release -p keyward-cli
build_connectors -p echo-connector -p echo-planned-connector
# The same connector twice: `echo-planned` (its renders planned: after the
# first, host work only) and `echo` (it opts out: runs every render).
ECHO_WASM="$ROOT/target/connectors/wasm32-wasip2/connector/echo_connector.wasm"
PLANNED_WASM="$ROOT/target/connectors/wasm32-wasip2/connector/echo_planned_connector.wasm"

DURATION="${BENCH_SECONDS:-10}"
SOAK="${SOAK_SECONDS:-120}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
free_port() { "$KEYWARD_TEST_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

MOTO_PORT=$(free_port)
"$KEYWARD_TEST_PYTHON" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 &
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
for _ in $(seq 50); do curl -s "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null && break; sleep 0.2; done
"$KEYWARD_TEST_PYTHON" - "$MOTO_PORT" <<'PY'
import sys, boto3
sm = boto3.client("secretsmanager", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1")
for name, value in [("bench/user", "app"), ("bench/password", "p@ss:w/rd"), ("bench/host", "db.internal")]:
    sm.create_secret(Name=name, SecretString=value)
PY

TOKEN="bench-token-0123456789abcdef"
KW_PORT=$(free_port)
cat > "$WORK/keyward.toml" <<TOML
[secrets]
namespace = "bench/"
cache_ttl_ms = 300000
connector_fetch_burst = 100000

[secrets.backend]
kind = "aws"
region = "us-east-1"
account_id = "123456789012"
endpoint_url = "http://127.0.0.1:$MOTO_PORT"

[sandbox]
mode = "warm"
warm_instances = 64
pooled_instances = 128

[server]
listen = "127.0.0.1:$KW_PORT"
max_connections = 1024
max_renders_per_connector = 1024
TOML
# One connector table: id $1, component $2, the 3-secret template.
connector_table() {
    cat <<TOML

[connectors.$1]
component = "$2"
allow = ["user", "password", "host"]
egress = ["db.internal:5432"]
[connectors.$1.config]
a = "postgresql://{{ secrets.user }}:{{ secrets.password | urlencode }}@{{ secrets.host }}:5432/orders"
TOML
}
connector_table echo "$ECHO_WASM" >> "$WORK/keyward.toml"
connector_table planned "$PLANNED_WASM" >> "$WORK/keyward.toml"
KEYWARD_TOKEN="$TOKEN" "$ROOT/target/release/keyward" serve --config "$WORK/keyward.toml" > "$WORK/keyward.out" 2>&1 &
KW_PID=$!
for _ in $(seq 100); do grep -q ready "$WORK/keyward.out" && break; sleep 0.1; done

AGENT_PORT=$(free_port)
cat > "$WORK/agent.toml" <<TOML
log_level = "ERROR"
http_port = "$AGENT_PORT"
ttl_seconds = "300"
cache_size = "1000"
max_conn = "1000"
TOML
(cd "$WORK" && AWS_TOKEN="$TOKEN" AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" exec "$AGENT" --config agent.toml >/dev/null 2>&1) &
for _ in $(seq 100); do curl -s "http://127.0.0.1:$AGENT_PORT/ping" >/dev/null && break; sleep 0.1; done

cat > "$WORK/render.lua" <<LUA
wrk.method = "POST"
wrk.headers["X-Keyward-Token"] = "$TOKEN"
LUA
cat > "$WORK/agent.lua" <<LUA
wrk.headers["X-Aws-Parameters-Secrets-Token"] = "$TOKEN"
LUA
KW_URL="http://127.0.0.1:$KW_PORT/v1/connectors/planned/render"
UNPLANNED_URL="http://127.0.0.1:$KW_PORT/v1/connectors/echo/render"
AGENT_URL="http://127.0.0.1:$AGENT_PORT/secretsmanager/get?secretId=bench/password"
for url in "$KW_URL" "$UNPLANNED_URL"; do
    curl -sf -X POST -H "X-Keyward-Token: $TOKEN" "$url" >/dev/null || { echo "keyward serve does not render $url"; cat "$WORK/keyward.out"; exit 1; }
done
curl -sf -H "X-Aws-Parameters-Secrets-Token: $TOKEN" "$AGENT_URL" >/dev/null || { echo "the Agent does not answer"; exit 1; }

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# CPU time (user + system, clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# wrk against URL $1 with script $2; then the CPU the server (pid $3)
# spent per request, in µs, is appended to the output as "cpu_us N".
run_wrk() {
    local before after out
    before=$(cpu_ticks "$3")
    out=$(wrk -t2 -c32 -d"${DURATION}s" --latency ${2:+-s "$2"} "$1")
    after=$(cpu_ticks "$3")
    echo "$out"
    echo "$out" | awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
        '/^ +[0-9]+ requests in/ {printf "cpu_us %.1f\n", t / hz * 1e6 / $1}'
}
field() { awk -v k="$2" '$1 == k {print $2}' "$1"; }
rps() { awk '/Requests\/sec/ {print $2}' "$1"; }

echo "==> wrk, ${DURATION}s each, alternating (keyward, Agent, keyward, Agent)"
AGENT_PID=$(pgrep -f "^$AGENT --config")
for round in 1 2; do
    run_wrk "$KW_URL" "$WORK/render.lua" "$KW_PID" > "$WORK/kw$round.txt"
    run_wrk "$AGENT_URL" "$WORK/agent.lua" "$AGENT_PID" > "$WORK/agent$round.txt"
done
run_wrk "$UNPLANNED_URL" "$WORK/render.lua" "$KW_PID" > "$WORK/unplanned.txt"
# keyward's HTTP layer alone (no token, no render): what the render adds is the difference.
run_wrk "http://127.0.0.1:$KW_PORT/healthz" "" "$KW_PID" > "$WORK/health.txt"
best() { for f in "$@"; do echo "$(rps "$f") $f"; done | sort -n | tail -1 | cut -d' ' -f2; }
KW=$(best "$WORK/kw1.txt" "$WORK/kw2.txt")
AG=$(best "$WORK/agent1.txt" "$WORK/agent2.txt")
KW_RPS=$(rps "$KW"); AG_RPS=$(rps "$AG")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
RATIO=$(ratio "$KW_RPS" "$AG_RPS")
METRICS=$(curl -s -H "X-Keyward-Token: $TOKEN" "http://127.0.0.1:$KW_PORT/metrics")
CALLS=$(echo "$METRICS" | awk '/^keyward_renders_total/ {s += $2} END {print s}')
PLAN_HITS=$(echo "$METRICS" | awk '/^keyward_render_plans_total\{outcome="hit"/ {s += $2} END {print s + 0}')
PLAN_RECORDED=$(echo "$METRICS" | awk '/^keyward_render_plans_total\{outcome="recorded"/ {s += $2} END {print s + 0}')
UPSTREAM=$(echo "$METRICS" | awk '/^keyward_upstream_calls_total\{operation="fetch/ {s += $2} END {print s + 0}')

echo "==> soak: keyward serve under wrk for ${SOAK}s"
RSS_START=$(rss_kib $KW_PID)
wrk -t2 -c32 -d"${SOAK}s" -s "$WORK/render.lua" "$KW_URL" > "$WORK/soak.txt"
RSS_END=$(rss_kib $KW_PID)

{
echo "# keyward serve vs the AWS Secrets Manager Agent"
echo
echo "Machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo). Produced by \`scripts/bench-serve.sh\`"
echo "(wrk -t2 -c32, keep-alive, loopback; ${DURATION} s runs alternating twice, the better of each kept; one moto)."
echo
echo "| | requests/s | p50 | p99 | server CPU per request |"
echo "|---|---|---|---|---|"
echo "| keyward serve: planned render of the 3-secret template (POST /v1/connectors/planned/render) | $KW_RPS | $(field "$KW" 50%) | $(field "$KW" 99%) | $(field "$KW" cpu_us) µs |"
echo "| Agent $AGENT_VERSION: one cached secret (GET /secretsmanager/get) | $AG_RPS | $(field "$AG" 50%) | $(field "$AG" 99%) | $(field "$AG" cpu_us) µs |"
echo "| ratio keyward planned / Agent | $RATIO× | | | |"
echo "| keyward serve: the same render, connector run every time (POST /v1/connectors/echo/render, warm instance) | $(rps "$WORK/unplanned.txt") | $(field "$WORK/unplanned.txt" 50%) | $(field "$WORK/unplanned.txt" 99%) | $(field "$WORK/unplanned.txt" cpu_us) µs |"
echo "| keyward serve: GET /healthz (its HTTP layer alone) | $(rps "$WORK/health.txt") | $(field "$WORK/health.txt" 50%) | $(field "$WORK/health.txt" 99%) | $(field "$WORK/health.txt" cpu_us) µs |"
echo "| ratio keyward planned render / GET /healthz | $(ratio "$KW_RPS" "$(rps "$WORK/health.txt")")× | | | |"
ADDS=$(awk -v a="$(field "$KW" cpu_us)" -v b="$(field "$WORK/health.txt" cpu_us)" 'BEGIN {printf "%.1f", a - b}')
echo
echo "Where the time goes: keyward's HTTP layer costs about what the Agent's whole request does;"
echo "the planned render adds ${ADDS} µs of server CPU per request over \`/healthz\` (token, policy,"
echo "cache, sealing, the egress check, JSON; the connector does not run: render plans), on two"
echo "cores shared with wrk. The render run every time adds the sandbox crossing on top (the"
echo "warm-instance row). About half of the server's CPU is kernel (loopback TCP writes, and"
echo "reschedule IPIs as wrk and the server share two cores); \`benches/PROFILE.md\` shows where a"
echo "planned render's own time goes."
echo
echo "Soak: ${SOAK} s at $(rps "$WORK/soak.txt") requests/s; keyward's resident memory $((RSS_START / 1024)) MiB at start, $((RSS_END / 1024)) MiB at end."
echo "Renders in the wrk runs: $CALLS, of which served by a plan: $PLAN_HITS (plans recorded: $PLAN_RECORDED); secret reads that reached Secrets Manager for them: $UPSTREAM (3 secrets, TTL 300 s)."
} | tee "$ROOT/benches/SERVE.md"
