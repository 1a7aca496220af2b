#!/usr/bin/env bash
# Runs every test: installs the Debian packages the tests use, then the whole workspace.
# Tests that need root skip loudly without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --workspace --all-targets --quiet
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
