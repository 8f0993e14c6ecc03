#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine needs to build shopscore, and checks the Rust
# toolchain. Idempotent: apt runs only when a package is missing. One line per step.
#
#   clang, libclang-dev          rocksdb's bindgen needs libclang
#   build-essential, pkg-config,
#   cmake, zlib1g-dev,
#   libzstd-dev                  the bundled RocksDB and librdkafka C/C++ builds
#   libssl-dev                   librdkafka's TLS (rdkafka's `ssl` feature, system OpenSSL)
set -euo pipefail

packages=(build-essential pkg-config cmake clang libclang-dev zlib1g-dev libzstd-dev libssl-dev)
min_rust="1.88"

installed() {
  dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

if command -v dpkg >/dev/null 2>&1; then
  missing=()
  for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup: system packages ok (${packages[*]})"
  else
    echo "setup: installing ${missing[*]}"
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 || {
        echo "setup: need root to install ${missing[*]}: run as root or install sudo" >&2
        exit 1
      }
      sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    if ! { "${sudo[@]}" apt-get update -qq &&
      "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
      cat "$log" >&2
      echo "setup: apt-get failed to install ${missing[*]} (output above)" >&2
      exit 1
    fi
  fi
else
  echo "setup: not a Debian system; make sure these (or equivalents) are installed: ${packages[*]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found: install Rust >= $min_rust with rustup (https://rustup.rs), then source scripts/env.sh" >&2
  exit 1
fi
version="$(cargo --version)"
number="$(echo "$version" | awk '{print $2}')"
if [ "$(printf '%s\n%s\n' "$min_rust" "$number" | sort -V | head -n 1)" != "$min_rust" ]; then
  echo "setup: $version is too old: shopscore needs Rust >= $min_rust (rustup update)" >&2
  exit 1
fi
echo "setup: $version ok"

# A full build and test run needs a few GB in the target directory (RocksDB, librdkafka, the
# test executables); a full disk shows up much later as a linker crash ("Bus error", "No space
# left on device"), so say it up front. A warning, not a stop: the build may still fit.
target="${CARGO_TARGET_DIR:-target}"
existing="$target"
while [ ! -d "$existing" ]; do existing="$(dirname "$existing")"; done
free_kb="$(df -Pk "$existing" | awk 'NR == 2 {print $4}')"
if [ -n "$free_kb" ] && [ "$free_kb" -lt $((6 * 1024 * 1024)) ]; then
  echo "setup: warning: only $((free_kb / 1024)) MiB free on the disk of $target; a build from scratch needs ~6 GiB" >&2
else
  echo "setup: $((free_kb / 1024 / 1024)) GiB free for $target"
fi
