#!/usr/bin/env bash
# Runs psycopg's and asyncpg's own test suites straight against a throwaway PostgreSQL and
# through pgshroud (target/debug/pgshroud, built here), and fails on any test that fails only
# through the proxy. The suites are read from ../shared/testdata/suites (beside the checkout)
# unless --suites DIR says otherwise; see scripts/driver_suites.py --help for the parts.
#
#   scripts/driver-suites.sh                     # the protocol parts (what CI runs)
#   scripts/driver-suites.sh psycopg:copy        # one part
#   scripts/driver-suites.sh --all               # the whole suites (--slow: leak checks too)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p pgshroud --bin pgshroud
exec python3 scripts/driver_suites.py "$@"
