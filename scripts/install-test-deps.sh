#!/usr/bin/env bash
# Installs what pgshroud's integration tests need: PostgreSQL server programs (initdb, pg_ctl,
# postgres; the tests start their own throwaway cluster), psql, pgbench, python3 with the
# packages the driver tests use, and rsyslog (the syslog collector of the audit tests). Idempotent: when everything is present it changes nothing.
# Written for Debian 12 run as root (CI); elsewhere it uses sudo for apt-get if it must.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Python packages for driver tests (pip names). ADD NEW ONES HERE, e.g. PIP_PACKAGES=(psycopg).
# The ORM matrix (integration-tests/orm/) pins its ORMs: SQLAlchemy 2 (with greenlet for its
# asyncio extension) and Django 5.2. moto's server (moto_server) is the local AWS KMS the KMS
# tests (integration-tests/tests/kms.rs) talk to. The drivers' own suites (scripts/driver-suites.sh) install
# theirs into a venv of their own, from integration-tests/suites/requirements.txt.
PIP_PACKAGES=(pyyaml kubernetes-validate==1.37.0 'psycopg[binary]' cryptography asyncpg 'moto[server]'
    sqlalchemy==2.0.58 greenlet==3.5.6 django==5.2.19)
# ---------------------------------------------------------------------------------------------

export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

# Same search order as integration-tests/src/cluster.rs: $PGSHROUD_PG_BIN_DIR, PATH,
# `pg_config --bindir`, /usr/lib/postgresql/*/bin (newest first). Prints the directory.
has_server_programs() { [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

find_pg_bin_dir() {
    local dir initdb
    if [ -n "${PGSHROUD_PG_BIN_DIR:-}" ] && has_server_programs "$PGSHROUD_PG_BIN_DIR"; then
        echo "$PGSHROUD_PG_BIN_DIR"; return 0
    fi
    if initdb=$(command -v initdb 2>/dev/null); then
        dir=$(dirname "$(readlink -f "$initdb")")
        if has_server_programs "$dir"; then echo "$dir"; return 0; fi
        dir=$(dirname "$initdb")
        if has_server_programs "$dir"; then echo "$dir"; return 0; fi
    fi
    if dir=$(pg_config --bindir 2>/dev/null) && has_server_programs "$dir"; then
        echo "$dir"; return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r); do
        if has_server_programs "$dir"; then echo "$dir"; return 0; fi
    done
    return 1
}

# A program in PATH or in the server's bin directory.
have_program() { command -v "$1" >/dev/null 2>&1 || { [ -n "${PG_BIN_DIR:-}" ] && [ -x "$PG_BIN_DIR/$1" ]; }; }

APT_UPDATED=no
apt_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { log "need root (or sudo) to install: $*"; exit 1; }
        sudo=(sudo -E)
    fi
    command -v apt-get >/dev/null 2>&1 || { log "no apt-get: install these yourself: $*"; exit 1; }
    if [ "$APT_UPDATED" = no ]; then
        "${sudo[@]}" apt-get update -q
        APT_UPDATED=yes
    fi
    log "apt-get install $*"
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
}

# 1. PostgreSQL server programs, psql, pgbench (Debian ships pgbench with the server package).
# scripts/install-postgres.sh is shared with `pgshroud demo`; it keeps Debian from creating and
# starting a "main" cluster on port 5432, which the tests never use.
PG_BIN_DIR=$(find_pg_bin_dir || true)
if [ -z "$PG_BIN_DIR" ] || ! have_program psql || ! have_program pgbench; then
    log "PostgreSQL's server programs are missing: scripts/install-postgres.sh"
    "$(dirname "$0")/install-postgres.sh"
    PG_BIN_DIR=$(find_pg_bin_dir || true)
fi
[ -n "$PG_BIN_DIR" ] || { log "PostgreSQL server programs still missing after install"; exit 1; }
for program in psql pgbench; do
    have_program "$program" || { log "$program still missing after install"; exit 1; }
done
log "PostgreSQL programs: $PG_BIN_DIR ($("$PG_BIN_DIR/postgres" --version))"

# 2. The `postgres` system user the tests run the server as when they run as root.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    log "creating system user postgres"
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

# 3. python3, and pip plus PIP_PACKAGES when any are listed.
# libclang and protoc: pg_query (PostgreSQL's own grammar) needs them to build.
"$(dirname "$0")/install-build-deps.sh"

have_program python3 || apt_install python3
if [ "${#PIP_PACKAGES[@]}" -gt 0 ]; then
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    missing=()
    for package in "${PIP_PACKAGES[@]}"; do
        name="${package%%[\[=<>]*}"  # pip show knows the bare name only
        python3 -m pip show -q "$name" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        pip_flags=(--quiet --disable-pip-version-check)
        # Debian's own python3 refuses system-wide pip installs (PEP 668) without this flag.
        if python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
            pip_flags+=(--break-system-packages)
        fi
        log "pip install ${missing[*]}"
        python3 -m pip install "${pip_flags[@]}" "${missing[@]}"
    fi
fi
log "python: $(python3 --version 2>&1)"

# 4. node-postgres for the driver tests and Sequelize for the ORM matrix (versions pinned in
# each folder's package-lock.json).
have_program node || apt_install nodejs npm
tests_dir="$(cd "$(dirname "$0")/.." && pwd)/integration-tests"
for dir in "$tests_dir/drivers:pg" "$tests_dir/orm:sequelize"; do
    folder="${dir%%:*}" package="${dir##*:}"
    if [ ! -d "$folder/node_modules/$package" ]; then
        log "npm ci in $folder"
        (cd "$folder" && npm ci --no-audit --no-fund --loglevel=error)
    fi
done

# 4a. The drivers' own suites (scripts/driver-suites.sh) make a venv (python3 -m venv, Debian
# package python3-venv) and run psycopg's pure-Python implementation on libpq (libpq5).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
ldconfig -p 2>/dev/null | grep 'libpq\.so\.5' >/dev/null || apt_install libpq5  # no -q: grep must read all, or pipefail sees SIGPIPE

# 4b. pgjdbc (Debian's libpostgresql-jdbc-java) and a JDK to compile its driver check.
have_program javac || apt_install default-jdk-headless
[ -f /usr/share/java/postgresql.jar ] || apt_install libpostgresql-jdbc-java

# 5. Operations tests: promtool and prometheus (Debian package `prometheus`) check the metrics
# text, alert rules and scrape config, and scrape a running proxy.
if ! have_program promtool || ! have_program prometheus; then
    apt_install prometheus
fi

# 6. Audit syslog tests: rsyslogd plays the SIEM's collector (on loopback, started by the tests
# with a private config), over TCP and over TLS (its gnutls driver, package rsyslog-gnutls).
if ! command -v rsyslogd >/dev/null 2>&1 && [ ! -x /usr/sbin/rsyslogd ] \
    || ! dpkg-query -W -f='${Status}' rsyslog-gnutls 2>/dev/null | grep -q 'ok installed'; then
    apt_install rsyslog rsyslog-gnutls
fi
