#!/usr/bin/env bash
# Set up everything on a fresh machine (packages, twinbox, the guest kernel) and show
# the side-by-side comparison of the two isolation models on the built-in busybox image.
# Usage: sudo scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
tb=target/x86_64-unknown-linux-gnu/release/twinbox
echo "+ twinbox compare busybox echo hello"
exec "$tb" compare busybox echo hello
