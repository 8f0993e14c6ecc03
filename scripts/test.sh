#!/usr/bin/env bash
# The README's test command: builds every target in release mode and runs all tests (unit,
# integration, doc). Extra arguments go to `cargo test` (e.g. a test-name filter).
# Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/env.sh
source scripts/env.sh
bash scripts/setup.sh

# Tests must not see the caller's configuration overrides.
while IFS= read -r var; do
  unset "$var"
done < <(compgen -e | grep '^SHOPSCORE__' || true)

cargo build --release --all-targets

# ---- Test Kafka broker (tansu) ------------------------------------------------------------
# TODO(kafka issue): start a throwaway tansu broker here before the tests, export its address
# for the Kafka integration tests, and stop it when this script exits, e.g.:
#   tansu broker ... & tansu_pid=$!
#   trap 'kill "$tansu_pid"' EXIT
#   export SHOPSCORE_TEST_BROKERS=localhost:9092
# -------------------------------------------------------------------------------------------

cargo test --release "$@"
