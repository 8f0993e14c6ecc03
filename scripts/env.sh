# shellcheck shell=bash
# Source me: `source scripts/env.sh`.
#
# Points cargo at one target directory shared by every clone on this machine, so a fresh
# clone reuses the compiled RocksDB and librdkafka (about 15 minutes to build from scratch).
# An already-set CARGO_TARGET_DIR wins. No `set -e` here: this file runs in the caller's shell.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shopscore/target}"

# rustup installs cargo here; a non-login shell may not have it on PATH yet.
if [ -d "$HOME/.cargo/bin" ]; then
  case ":$PATH:" in
    *":$HOME/.cargo/bin:"*) ;;
    *) export PATH="$HOME/.cargo/bin:$PATH" ;;
  esac
fi
