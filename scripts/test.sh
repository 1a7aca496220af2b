#!/usr/bin/env bash
# Runs every test: installs the Debian packages the tests use, then the whole workspace.
# Tests that need root skip loudly without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
# The test guest the launcher's end-to-end test boots (cached outside the repo; the first
# build compiles a small kernel, about 7 minutes on 2 cores).
if [ "$(id -u)" = 0 ]; then bash scripts/guest.sh >/dev/null; fi
cargo build --workspace --all-targets --quiet
if cargo nextest --version >/dev/null 2>&1; then
  # nextest keeps a passing test's stderr to itself: without root, show it, so the
  # `SKIP <test>: <why>` lines of the #[root_test] tests are seen (they are quick then).
  capture=()
  [ "$(id -u)" = 0 ] || capture=(--no-capture)
  cargo nextest run --workspace --no-fail-fast "${capture[@]}"
else
  cargo test --workspace --no-fail-fast
fi
