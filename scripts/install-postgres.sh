#!/usr/bin/env bash
# Installs PostgreSQL's server programs (initdb, pg_ctl, postgres) and psql with apt-get,
# without creating or starting Debian's default "main" cluster: pgshroud's demo and tests
# start throwaway clusters of their own. Run by `pgshroud demo` (which embeds this file) and
# by scripts/install-test-deps.sh when initdb is missing. Needs root, or sudo.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

say() { printf 'install-postgres: %s\n' "$*" >&2; }

packages=(postgresql postgresql-client)
if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get on this system: install PostgreSQL's server programs yourself"
    say "(Fedora: dnf install postgresql-server; macOS: brew install postgresql), then run again"
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        say "installing needs root: run as root, or: apt-get install ${packages[*]}"
        exit 1
    fi
    sudo=(sudo)
fi
conf=/etc/postgresql-common/createcluster.conf
if [ ! -e "$conf" ]; then
    say "writing $conf (create_main_cluster = false): no system cluster on port 5432"
    "${sudo[@]}" mkdir -p "$(dirname "$conf")"
    echo 'create_main_cluster = false' | "${sudo[@]}" tee "$conf" >/dev/null
fi
say "${sudo[*]}${sudo:+ }apt-get update"
"${sudo[@]}" apt-get update -q
say "${sudo[*]}${sudo:+ }apt-get install ${packages[*]}"
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
