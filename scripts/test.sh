#!/usr/bin/env bash
# Set up and run the whole test suite (needs root). Usage: sudo scripts/test.sh
# The vm tests run in `twinbox lab` on hosts whose KVM cannot run a standard guest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
echo "test: cargo fmt --check"
cargo fmt --all -- --check
echo "test: cargo clippy"
cargo clippy --quiet --all-targets --all-features -- -D warnings
echo "test: cargo test --release"
cargo test --release -- --test-threads="${TEST_THREADS:-4}"
