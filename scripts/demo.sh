#!/usr/bin/env bash
# Set up and run the demo on a fresh machine. Usage: sudo scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
tb=target/x86_64-unknown-linux-gnu/release/twinbox
echo "+ twinbox run --rm busybox echo hello"
"$tb" run --rm busybox echo hello
