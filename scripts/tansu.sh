#!/usr/bin/env bash
# Prints the path of a tansu broker binary (a Kafka-compatible broker written in Rust, used by
# the Kafka integration tests), installing it from crates.io first when it is not cached:
# about 12 minutes on 2 cores, once per machine. The cache is $HOME/.cache/shopscore/tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

TANSU_VERSION=0.6.0
root="$HOME/.cache/shopscore/tools"
bin="$root/bin/tansu"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  echo "$bin"
  exit 0
fi
echo "scripts/tansu.sh: installing tansu $TANSU_VERSION (once per machine, ~12 min)..." >&2
CARGO_TARGET_DIR="$HOME/.cache/shopscore/tansu-target" \
  cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore --root "$root" >&2
echo "$bin"
