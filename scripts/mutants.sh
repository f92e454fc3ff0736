#!/usr/bin/env bash
# Mutation testing (not run by CI: it takes minutes): cargo-mutants on the
# policy crate and on the template engine, each against its own unit tests.
# Prints caught/missed figures; the missed mutants are listed in
# target/mutants/<part>/mutants.out/missed.txt.
source "$(dirname "$0")/common.sh"

command -v cargo-mutants >/dev/null || cargo install --quiet --locked cargo-mutants

run() {
    local part="$1"; shift
    echo "==> cargo mutants: $part"
    mkdir -p "target/mutants/$part"
    # Exit code 2 means some mutants were missed: reported, not fatal.
    cargo mutants --no-shuffle --output "target/mutants/$part" "$@" || [ $? -eq 2 ]
    local out="target/mutants/$part/mutants.out"
    echo "$part: caught $(wc -l < "$out/caught.txt"), missed $(wc -l < "$out/missed.txt"), \
unviable $(wc -l < "$out/unviable.txt"), timeout $(wc -l < "$out/timeout.txt")"
}

run policy -p keyward-policy
run template -p keyward-guest -f 'guest/src/template/*.rs'
