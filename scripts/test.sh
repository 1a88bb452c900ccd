#!/usr/bin/env bash
# The test command: installs what the tests need (PostgreSQL server programs, drivers), then
# runs every test of the workspace. Tests start their own throwaway PostgreSQL cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo test --workspace "$@"
