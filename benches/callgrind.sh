#!/usr/bin/env bash
# Instructions per emit on each emit path, counted by callgrind: they do not drift with machine
# noise, so a regression shows. Installs valgrind when missing. Prints a Markdown table.
#
#   bash benches/callgrind.sh          every emit path, as a table
#   bash benches/callgrind.sh check    the one-listener emit against the figure recorded in
#                                      benches/instructions.txt; fails when it grew by more
#                                      than 10% (what .ci/run does)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -q valgrind; else sudo apt-get install -y -q valgrind; fi
fi
cargo build -q --release -p tidings-benches --example emit-instructions
bin="${CARGO_TARGET_DIR:-target}/release/examples/emit-instructions"

# Instructions of a whole run of `n` emits.
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 \
        | sed -nE 's/.*Collected : ([0-9]+).*/\1/p'
}

# The difference between 1,000 and 101,000 emits, per emit: set-up and teardown cancel out.
per_emit() {
    local small large
    small=$(count "$1" 1000)
    large=$(count "$1" 101000)
    echo $(( (large - small) / 100000 ))
}

if [ "${1:-}" = "check" ]; then
    recorded=$(sed -nE 's/^emit\/1 ([0-9]+)$/\1/p' benches/instructions.txt)
    measured=$(per_emit emit/1)
    limit=$(( recorded + recorded / 10 ))
    echo "emit/1: $measured instructions per emit (recorded: $recorded, limit: $limit)"
    if [ "$measured" -gt "$limit" ]; then
        echo "the one-listener emit grew by more than 10% over benches/instructions.txt" >&2
        exit 1
    fi
    exit 0
fi

echo "| case | instructions per emit (per message for \`actor/*\`) |"
echo "|---|---:|"
for case in emit/0 emit/1 emit/10 emit/100 emit_async/subscribe emit_async/on_async actor/tell actor/ask; do
    echo "| \`$case\` | $(per_emit "$case") |"
done
