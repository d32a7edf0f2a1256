#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh machine, then runs
# every test (unit, integration over loopback, doc examples).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-features --all-targets
cargo test --all-features --doc
