#!/usr/bin/env bash
# The README's test command: install what is missing, build, run every test (GoogleTest and
# Bats, through CTest). Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh
scripts/build.sh "$@"
jobs=$(nproc 2>/dev/null || echo 2)
ctest --test-dir build --output-on-failure -j"$jobs"
echo "test.sh: done in $(( $(date +%s) - start )) s"
