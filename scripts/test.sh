#!/usr/bin/env bash
# Set up and run the whole test suite (needs root). Usage: sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "test: cargo fmt --check"
cargo fmt --all -- --check
echo "test: cargo clippy"
cargo clippy --quiet --all-targets -- -D warnings
echo "test: cargo test"
cargo test --quiet -- --test-threads="${TEST_THREADS:-4}"
