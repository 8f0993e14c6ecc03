#!/usr/bin/env bash
# Usage: prune.sh ARTIFACTS_JSON
#
# Keeps the target directory shared by every clone on this machine (scripts/env.sh) from
# growing without bound. Cargo never deletes what an older build left: after a dependency or
# profile change, every test executable (each links RocksDB) and the old RocksDB archive and
# build directory stay behind under new names. That filled this machine's disk once (session
# 8), and the CI run failed in the linker with "No space left on device".
#
# ARTIFACTS_JSON is the stdout of the build that was just run with
# `--message-format=json-render-diagnostics`: every unit of that build, fresh or not, with its
# files. Removed, in `release/` only:
#   - executables and .rlib archives in deps/ that this build does not list and that are not
#     hard-linked to an uplifted file (old test binaries, an old RocksDB archive);
#   - build-script directories in build/ larger than 100 MiB that this build does not list
#     (an old RocksDB build);
#   - older incremental-compilation directories of our own crates (see below).
# Anything removed by mistake is rebuilt by cargo, which checks that its outputs exist.
set -euo pipefail

json="${1:?usage: prune.sh ARTIFACTS_JSON}"
release="${CARGO_TARGET_DIR:?CARGO_TARGET_DIR is not set; source scripts/env.sh}/release"
[ -d "$release/deps" ] || exit 0

keep="$(mktemp)"
trap 'rm -f "$keep" "$keep.inc"' EXIT
{
  grep -o '"filenames":\[[^]]*\]' "$json" | grep -o '"/[^"]*"' | tr -d '"'
  grep -o '"executable":"[^"]*"' "$json" | sed 's/^"executable":"//; s/"$//'
  grep -o '"out_dir":"[^"]*"' "$json" | sed 's/^"out_dir":"//; s/"$//; s#/out$##'
} | sort -u >"$keep"

if [ ! -s "$keep" ]; then
  echo "prune: $json lists no artifacts; nothing removed" >&2
  exit 0
fi

# The build directories in use: those holding a listed file, and the listed run directories.
dirs="$(sed -n "s#^\($release/build/[^/]*\).*#\1#p" "$keep" | sort -u)"

freed=0
count=0
remove() {
  local size
  size="$(du -sk "$1" | cut -f1)"
  rm -rf -- "$1"
  freed=$((freed + size))
  count=$((count + 1))
}

for f in "$release"/deps/*; do
  [ -f "$f" ] || continue
  grep -qxF -- "$f" "$keep" && continue
  # A second link means cargo uplifted this file (target/release/shopscore, libshopscore.rlib)
  # and lists it under that name.
  [ "$(stat -c %h "$f")" -eq 1 ] || continue
  case "${f##*/}" in
    *.rlib) remove "$f" ;;
    *.*) ;;
    *) [ -x "$f" ] && remove "$f" ;;
  esac
done

for d in "$release"/build/*/; do
  d="${d%/}"
  grep -qxF -- "$d" <<<"$dirs" && continue
  [ "$(du -sm "$d" | cut -f1)" -gt 100 ] && remove "$d"
done

# Incremental-compilation directories are named after the crate, not after the unit, so the
# current ones cannot be told from the list: of each crate's directories keep the newest, twice
# as many as this build has units of that crate (check mode, clippy's, has its own).
inc="$release/incremental"
if [ -d "$inc" ]; then
  grep -o '"target":{[^}]*}' "$json" | grep -o '"name":"[^"]*"' | sed 's/^"name":"//; s/"$//' |
    tr - _ | sort | uniq -c | while read -r units name; do
    { ls -1dt "$inc/$name"-*/ 2>/dev/null || true; } | tail -n +$((2 * units + 1))
  done >"$keep.inc"
  while IFS= read -r d; do
    [ -n "$d" ] && remove "${d%/}"
  done <"$keep.inc"
fi

echo "prune: removed $count stale build outputs, $((freed / 1024)) MiB, from $release"
