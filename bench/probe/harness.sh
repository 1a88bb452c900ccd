#!/bin/bash
# Profiling harness (issue 25, the relay notes in bench/RESULTS.md): a throwaway PostgreSQL
# (pgbench scale 10), PgBouncer (session mode) and three pass-through pgshrouds that stay up
# while you measure them with bench/probe/stat.sh, perf record or strace:
#   A = $BIN_A, V = $BIN_B (with $ENV_B / $ARGS_B), C = $BIN_C (default $BIN_A, $ENV_C / $ARGS_C).
# PROBE_RULES="A V C" (any of them) runs those with bench/run.sh's rules file (`customers`
# protected, guarded by `pgshroud setup`): pgbench -S then measures a rules instance on
# statements that touch no protected table (the pre-filter).
# RELAYS="tokio tokio-split epoll uring" (any of them) also starts $RELAY_BIN (bench's
# relay-shapes, a bare byte relay: no protocol, logins go through to PostgreSQL) once per
# shape; stat.sh measures one by its shape's name as TARGET.
# Ports and pids go to $PROBE_STATE/env; it stops (and cleans up) once $PROBE_STATE/stop exists.
# Run as root on a Debian-like machine (PostgreSQL 15 server programs, pgbouncer).
set -euo pipefail
STATE=${PROBE_STATE:-/tmp/pgshroud-probe}; rm -rf $STATE; mkdir -p $STATE
PASSWORD=bench-secret
PG_BIN=/usr/lib/postgresql/15/bin
as_pg() { runuser -u postgres -- "$@"; }
WORK=$(mktemp -d /tmp/relay-bench.XXXXXX); chmod 755 $WORK; chown postgres: $WORK
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$WORK/pgbouncer.pid" ] && kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null || true
  as_pg $PG_BIN/pg_ctl -D $WORK/data -m immediate stop >/dev/null 2>&1 || true
  rm -rf $WORK
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PG_PORT=$(free_port); B_PORT=$(free_port); A_PORT=$(free_port); V_PORT=$(free_port)
echo "$PASSWORD" > $WORK/pwfile; chown postgres: $WORK/pwfile
as_pg $PG_BIN/initdb -D $WORK/data -U postgres --pwfile=$WORK/pwfile --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
cat >> $WORK/data/postgresql.conf <<EOC
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
EOC
as_pg $PG_BIN/pg_ctl -D $WORK/data -l $WORK/postgres.log -w start >/dev/null
as_pg psql -h $WORK -p $PG_PORT -U postgres -qAtX -c "CREATE ROLE bench LOGIN PASSWORD '$PASSWORD'" -c "CREATE DATABASE bench OWNER bench"
export PGHOST=127.0.0.1 PGUSER=bench PGPASSWORD=$PASSWORD PGDATABASE=bench
pgbench -i -q -s 10 -p $PG_PORT >/dev/null 2>&1
MASTER_KEY="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
cat > $WORK/rules.toml <<'EOR'
[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "age"
  type = "int4"
EOR
rules_for() { case " ${PROBE_RULES:-} " in *" $1 "*) echo "--rules $WORK/rules.toml";; esac; }
if [ -n "${PROBE_RULES:-}" ]; then
  psql -p $PG_PORT -qAtX -v ON_ERROR_STOP=1 -c "CREATE TABLE customers (id bigserial PRIMARY KEY, email bytea, age bytea, name text)"
  $BIN_A setup --upstream-url "postgres://bench@127.0.0.1:$PG_PORT/bench?sslmode=disable" --rules $WORK/rules.toml > $WORK/setup.log
fi
export PGSHROUD_MASTER_KEY=$MASTER_KEY
SECRET=$(as_pg psql -h $WORK -p $PG_PORT -U postgres -qAtX -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'bench'")
printf '"bench" "%s"\n' "$SECRET" > $WORK/userlist.txt
cat > $WORK/pgbouncer.ini <<EOC
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $B_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 64
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOC
chown postgres: $WORK/userlist.txt $WORK/pgbouncer.ini
as_pg /usr/sbin/pgbouncer -d -q $WORK/pgbouncer.ini
UP="postgres://127.0.0.1:$PG_PORT?sslmode=disable"
$BIN_A serve --upstream "$UP" --listen 127.0.0.1:$A_PORT --admin-listen off --log-level warn $(rules_for A) > $WORK/a.log 2>&1 &
PIDS+=($!); A_PID=$!
env ${ENV_B:-} $BIN_B serve --upstream "$UP" --listen 127.0.0.1:$V_PORT --admin-listen off --log-level warn $(rules_for V) ${ARGS_B:-} > $WORK/b.log 2>&1 &
PIDS+=($!); V_PID=$!
C_PORT=$(free_port)
env ${ENV_C:-} ${BIN_C:-$BIN_A} serve --upstream "$UP" --listen 127.0.0.1:$C_PORT --admin-listen off --log-level warn $(rules_for C) ${ARGS_C:-} > $WORK/c.log 2>&1 &
PIDS+=($!); C_PID=$!
RELAY_ENV=""
for shape in ${RELAYS:-}; do
  port=$(free_port)
  ${RELAY_BIN:?RELAY_BIN is required with RELAYS} --shape $shape --listen 127.0.0.1:$port --upstream 127.0.0.1:$PG_PORT > $WORK/relay-$shape.log 2>&1 &
  PIDS+=($!)
  var=${shape//-/_}
  RELAY_ENV="$RELAY_ENV RELAY_${var}_PORT=$port RELAY_${var}_PID=$!"
done
sleep 2
echo "PG_PORT=$PG_PORT B_PORT=$B_PORT A_PORT=$A_PORT V_PORT=$V_PORT A_PID=$A_PID V_PID=$V_PID C_PORT=$C_PORT C_PID=$C_PID BOUNCER_PID=$(cat $WORK/pgbouncer.pid)$RELAY_ENV" > $STATE/env
while [ ! -f $STATE/stop ]; do sleep 1; done
