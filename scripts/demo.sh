#!/usr/bin/env bash
# The README's "run it": builds shopscore, generates sample events (once), runs the pipeline
# in file mode on them from fresh state, and prints a short summary.
#
# Each run starts over: it removes out/ and data/state/ (its own output and state) first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/env.sh
source scripts/env.sh
bash scripts/setup.sh
cargo build --release

bin="$CARGO_TARGET_DIR/release/shopscore"
sample="data/sample/events.jsonl"

if [ ! -s "$sample" ]; then
  mkdir -p "$(dirname "$sample")"
  "$bin" gen --out "$sample"
  [ -s "$sample" ] || { echo "demo: shopscore gen did not write $sample" >&2; exit 1; }
  echo "demo: generated $sample ($(wc -l <"$sample") events)"
fi

rm -rf out data/state
"$bin" run --input "$sample" --output out --data-dir data/state
[ -s out/snapshots.jsonl ] || { echo "demo: shopscore run wrote no out/snapshots.jsonl" >&2; exit 1; }

echo "demo: outputs"
wc -l out/*.jsonl
echo "demo: first snapshot"
head -n 1 out/snapshots.jsonl
