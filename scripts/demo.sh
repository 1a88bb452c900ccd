#!/usr/bin/env bash
# The README's first command on a fresh machine (Rust and a C compiler only): installs the
# build tools pg_query needs (libclang, protoc) when missing, then builds and runs the demo,
# which installs PostgreSQL itself if it must.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh
exec cargo run --release -p pgshroud -- demo "$@"
