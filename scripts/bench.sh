#!/usr/bin/env bash
# The benchmarks: criterion (warm renders, keyward vs the peer, one
# process), then bench-report (throughput, cold reads, cold start, memory),
# which prints one table with the ratios and writes benches/RESULTS.md.
source "$(dirname "$0")/common.sh"

ensure_wasm_target
ensure_moto
cargo bench -p keyward-benches --bench render -- --noplot
cargo run --release -p keyward-benches --bin bench-report
