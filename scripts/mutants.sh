#!/usr/bin/env bash
# Mutation testing (not run by CI: it takes minutes): cargo-mutants on the
# policy crate and on the template crate (grammar, expansion, compositions,
# encodings), each against its own unit tests.
# Prints caught/missed figures; the missed mutants are listed in
# target/mutants/<part>/mutants.out/missed.txt.
source "$(dirname "$0")/common.sh"

command -v cargo-mutants >/dev/null || cargo install --quiet --locked cargo-mutants

run() {
    local part="$1"; shift
    echo "==> cargo mutants: $part"
    mkdir -p "target/mutants/$part"
    # Exit codes 2 (some mutants missed) and 3 (some timed out, which is
    # a mutant made into an endless loop) are reported, not fatal.
    local status=0
    cargo mutants --no-shuffle --output "target/mutants/$part" "$@" || status=$?
    [ "$status" -eq 0 ] || [ "$status" -eq 2 ] || [ "$status" -eq 3 ] || exit "$status"
    local out="target/mutants/$part/mutants.out"
    echo "$part: caught $(wc -l < "$out/caught.txt"), missed $(wc -l < "$out/missed.txt"), \
unviable $(wc -l < "$out/unviable.txt"), timeout $(wc -l < "$out/timeout.txt")"
}

run policy -p keyward-policy
run template -p keyward-template
