#!/usr/bin/env bash
# Instructions per emit on each emit path, counted by callgrind: they do not drift with machine
# noise, so a regression shows. Installs valgrind when missing. Prints a Markdown table.
#
#   bash benches/callgrind.sh
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
echo "| case | instructions per emit |"
echo "|---|---:|"
for case in emit/0 emit/1 emit/10 emit/100 emit_async/subscribe emit_async/on_async; do
    small=$(count "$case" 1000)
    large=$(count "$case" 101000)
    echo "| \`$case\` | $(( (large - small) / 100000 )) |"
done
