#!/usr/bin/env bash
# bench/run.sh: pgshroud side by side with PostgreSQL and PgBouncer, in one interleaved run.
#
# Starts a throwaway PostgreSQL, PgBouncer (session mode, SCRAM auth file) and two pgshroud
# instances (pass-through, and with the `customers` rules), all on 127.0.0.1, runs pgbench
# against each in turn (every scenario, every target, round after round), measures pgshroud's
# memory with idle connections, and writes bench/RESULTS.md. Not part of `cargo test`.
#
#   bench/run.sh                       # defaults below
#   BENCH_DURATION=30 BENCH_ROUNDS=3 bench/run.sh
#
# Knobs (environment): BENCH_DURATION (seconds per pgbench run, 10), BENCH_ROUNDS (2),
# BENCH_SCALE (pgbench scale, 10), BENCH_CUSTOMERS (rows of the encrypted table, 10000),
# BENCH_IDLE_COUNTS (1000,10000; capped by `ulimit -n`), BENCH_RESULTS (output file),
# BENCH_SKIP_INSTALL=1, BENCH_SKIP_BUILD=1, BENCH_SKIP_IDLE=1, BENCH_ONLY (regex of scenario names to run),
# BENCH_VARIANT_BIN / BENCH_VARIANT_ENV (a second pass-through pgshroud, for A/B runs),
# BENCH_VARIANT_RULES=1 (that variant runs with the rules file and joins the rules scenarios).
# Run as root (PostgreSQL and PgBouncer then run as the `postgres` system user) or as a user
# that can run them directly.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-2}
SCALE=${BENCH_SCALE:-10}
CUSTOMERS=${BENCH_CUSTOMERS:-10000}
IDLE_COUNTS=${BENCH_IDLE_COUNTS:-1000,10000}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
ONLY=${BENCH_ONLY:-.}
COMMAND="bench/run.sh"
for var in BENCH_DURATION BENCH_ROUNDS BENCH_SCALE BENCH_CUSTOMERS BENCH_IDLE_COUNTS BENCH_ONLY; do
    [ -n "${!var:-}" ] && COMMAND="$var=${!var} $COMMAND"
done
PASSWORD=bench-secret
# A fixed benchmark key (base64 of bytes 0..31): never use it for real data.
MASTER_KEY="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. Programs: PostgreSQL server programs, psql, pgbench, pgbouncer, python3 (the report).
find_pg_bin_dir() {
    local dir initdb
    if initdb=$(command -v initdb 2>/dev/null); then
        dir=$(dirname "$(readlink -f "$initdb")")
        [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ] && { echo "$dir"; return 0; }
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5 -V -r); do
        [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
    done
    return 1
}

install_deps() {
    local missing=()
    find_pg_bin_dir >/dev/null || missing+=(postgresql)
    command -v psql >/dev/null || missing+=(postgresql-client)
    command -v pgbench >/dev/null || missing+=(postgresql-contrib)
    command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
    command -v python3 >/dev/null || missing+=(python3)
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo -E)
    # Debian's postgresql package would create and start a cluster on 5432: not wanted.
    if [ "$(id -u)" -eq 0 ] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        mkdir -p /etc/postgresql-common
        echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf
    fi
    log "apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}
[ "${BENCH_SKIP_INSTALL:-0}" = 1 ] || install_deps
PG_BIN=$(find_pg_bin_dir) || die "PostgreSQL server programs not found"
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

# Runs a server program as `postgres` when we are root (PostgreSQL and PgBouncer refuse root).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# ---------------------------------------------------------------------------------------------
# 2. Release build of pgshroud and the idle-connection tool.
# BENCH_SKIP_BUILD=1 uses the binaries already in the target directory (the machine is shared:
# a build just before a run would disturb the run others are making).
if [ "${BENCH_SKIP_BUILD:-0}" = 1 ]; then
    log "using the binaries already built (BENCH_SKIP_BUILD=1)"
else
    log "cargo build --release (pgshroud, idle-conns)"
    (cd "$ROOT" && cargo build --release --quiet -p pgshroud --bin pgshroud -p pgshroud-bench --bin idle-conns)
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PGSHROUD=$TARGET_DIR/release/pgshroud
IDLE_CONNS=$TARGET_DIR/release/idle-conns

# ---------------------------------------------------------------------------------------------
# 3. A throwaway directory, cleaned up (servers stopped by their own pids) on any exit.
WORK=$(mktemp -d /tmp/pgshroud-bench.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/pgbouncer.pid" ] && kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null || true
    [ -f "$WORK/data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
    if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    local i
    for i in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on port $1"
}

PG_PORT=$(free_port); BOUNCER_PORT=$(free_port); PASS_PORT=$(free_port); ENC_PORT=$(free_port)

# ---------------------------------------------------------------------------------------------
# 4. PostgreSQL: SCRAM over TCP, durability off (we measure proxies, not the disk).
log "initdb and start PostgreSQL on 127.0.0.1:$PG_PORT"
echo "$PASSWORD" > "$WORK/pwfile"
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/pwfile"
as_pg "$PG_BIN/initdb" -D "$WORK/data" -U postgres --pwfile="$WORK/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >"$WORK/initdb.log"
cat >> "$WORK/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
EOF
as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
export PGHOST=127.0.0.1 PGUSER=bench PGPASSWORD=$PASSWORD PGDATABASE=bench
psql_admin() { as_pg psql -h "$WORK" -p "$PG_PORT" -U postgres -d "${DB:-postgres}" -qAtX -v ON_ERROR_STOP=1 "$@"; }
psql_admin -c "CREATE ROLE bench LOGIN PASSWORD '$PASSWORD'" -c "CREATE DATABASE bench OWNER bench"

log "pgbench -i -s $SCALE"
pgbench -i -q -s "$SCALE" -p "$PG_PORT" >"$WORK/pgbench-init.log" 2>&1

# The encrypted scenario's tables: `customers` (email, age stored as bytea ciphertext,
# written through pgshroud) and a plaintext copy `plain_customers` with the same rows.
psql -p "$PG_PORT" -qAtX -v ON_ERROR_STOP=1 <<'EOF'
CREATE TABLE customers (id bigserial PRIMARY KEY, email bytea, age bytea, name text);
CREATE INDEX customers_email ON customers (email);
CREATE TABLE plain_customers (id bigserial PRIMARY KEY, email text, age int4, name text);
CREATE INDEX plain_customers_email ON plain_customers (email);
EOF
cat > "$WORK/rules.toml" <<'EOF'
[[tables]]
name = "public.customers"
  [[tables.columns]]
  name = "email"
  type = "text"
  [[tables.columns]]
  name = "age"
  type = "int4"
EOF
# pgbench cannot build strings, so an "email" is the 19-digit number 10^18 + i (as text).
EMAIL_BASE=1000000000000000000
# (Printed as "1" and 18 zero-padded digits: awk's integers may be 32-bit.)
awk -v n="$CUSTOMERS" 'BEGIN { for (i = 1; i <= n; i++) printf "1%018d\t%d\tCustomer %d\n", i, 18 + i % 70, i }' > "$WORK/customers.tsv"
psql -p "$PG_PORT" -qAtX -v ON_ERROR_STOP=1 -c "\\copy plain_customers (email, age, name) FROM '$WORK/customers.tsv'"

# Scripts: a point lookup by email and an insert (the transaction), per table.
for table in customers plain_customers; do
    cat > "$WORK/$table.sql" <<EOF
\\set id $EMAIL_BASE + random(1, $CUSTOMERS)
\\set nid 2000000000000000000 + random(1, 1000000000000)
\\set age random(18, 90)
SELECT id, email, age, name FROM $table WHERE email = :id;
INSERT INTO $table (email, age, name) VALUES (:nid, :age, 'bench');
EOF
    # Simple protocol: pgbench pastes the value into the text, so the email is quoted (a
    # string literal, as applications write it).
    cat > "$WORK/${table}_simple.sql" <<EOF
\\set id $EMAIL_BASE + random(1, $CUSTOMERS)
\\set nid 2000000000000000000 + random(1, 1000000000000)
\\set age random(18, 90)
SELECT id, email, age, name FROM $table WHERE email = ':id';
INSERT INTO $table (email, age, name) VALUES (':nid', :age, 'bench');
EOF
done

# ---------------------------------------------------------------------------------------------
# 5. PgBouncer: session mode, SCRAM secret of `bench` in its auth file.
log "start PgBouncer on 127.0.0.1:$BOUNCER_PORT"
SECRET=$(psql_admin -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'bench'")
printf '"bench" "%s"\n' "$SECRET" > "$WORK/userlist.txt"
cat > "$WORK/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 64
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
EOF
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/userlist.txt" "$WORK/pgbouncer.ini"
as_pg "$PGBOUNCER" -d -q "$WORK/pgbouncer.ini"
wait_port "$BOUNCER_PORT"

# ---------------------------------------------------------------------------------------------
# 6. pgshroud: pass-through (no rules) and protected (customers rules). The protected
# columns get their guard first (pgshroud writes to no unguarded column).
log "install the guard on customers (pgshroud setup)"
"$PGSHROUD" setup --upstream-url "postgres://$PGUSER@127.0.0.1:$PG_PORT/$PGDATABASE?sslmode=disable" \
    --rules "$WORK/rules.toml" >"$WORK/setup.log" || die "pgshroud setup failed: $(cat "$WORK/setup.log")"
log "start pgshroud on 127.0.0.1:$PASS_PORT (pass-through) and :$ENC_PORT (rules)"
UPSTREAM="postgres://127.0.0.1:$PG_PORT?sslmode=disable"
"$PGSHROUD" serve --upstream "$UPSTREAM" --listen "127.0.0.1:$PASS_PORT" --admin-listen off \
    --log-level warn >"$WORK/pgshroud-pass.log" 2>&1 &
PIDS+=($!); PASS_PID=$!
PGSHROUD_MASTER_KEY=$MASTER_KEY "$PGSHROUD" serve --upstream "$UPSTREAM" --listen "127.0.0.1:$ENC_PORT" \
    --admin-listen off --log-level warn --rules "$WORK/rules.toml" >"$WORK/pgshroud-enc.log" 2>&1 &
PIDS+=($!); ENC_PID=$!
# A second pass-through instance: the scale-out scenario splits its clients over the two
# (issue 25: pgshroud keeps no shared state; several instances behind one address).
PASS2_PORT=$(free_port)
"$PGSHROUD" serve --upstream "$UPSTREAM" --listen "127.0.0.1:$PASS2_PORT" --admin-listen off \
    --log-level warn >"$WORK/pgshroud-pass2.log" 2>&1 &
PIDS+=($!); PASS2_PID=$!
wait_port "$PASS_PORT"; wait_port "$ENC_PORT"; wait_port "$PASS2_PORT"
# An optional third pass-through pgshroud for A/B experiments inside the same interleaved
# run: another binary (BENCH_VARIANT_BIN) and/or extra environment (BENCH_VARIANT_ENV, e.g.
# TOKIO_WORKER_THREADS=1). It joins every scenario the pass-through pgshroud runs.
VARIANT_PORT=""; VARIANT_PID=""
if [ -n "${BENCH_VARIANT_BIN:-}${BENCH_VARIANT_ENV:-}" ]; then
    VARIANT_PORT=$(free_port)
    log "start pgshroud variant (${BENCH_VARIANT_BIN:-same binary} ${BENCH_VARIANT_ENV:-}) on :$VARIANT_PORT"
    VARIANT_RULES=()
    [ "${BENCH_VARIANT_RULES:-0}" = 1 ] && VARIANT_RULES=(--rules "$WORK/rules.toml")
    # shellcheck disable=SC2086
    env ${BENCH_VARIANT_ENV:-} PGSHROUD_MASTER_KEY=$MASTER_KEY "${BENCH_VARIANT_BIN:-$PGSHROUD}" serve \
        --upstream "$UPSTREAM" --listen "127.0.0.1:$VARIANT_PORT" --admin-listen off --log-level warn \
        "${VARIANT_RULES[@]}" >"$WORK/pgshroud-variant.log" 2>&1 &
    PIDS+=($!); VARIANT_PID=$!
    wait_port "$VARIANT_PORT"
fi

log "load $CUSTOMERS customers through pgshroud (COPY, encrypted on the way)"
psql -p "$ENC_PORT" -qAtX -v ON_ERROR_STOP=1 -c "\\copy customers (email, age, name) FROM '$WORK/customers.tsv'"
DB=bench psql_admin -c "VACUUM ANALYZE" -c "CHECKPOINT"
# Sanity: the encrypted lookup finds its row through pgshroud, and the stored value is not
# the plaintext.
found=$(psql -p "$ENC_PORT" -qAtX -c "SELECT age FROM customers WHERE email = '$((EMAIL_BASE + 7))'")
[ "$found" = "$((18 + 7 % 70))" ] || die "encrypted lookup through pgshroud returned '$found'"
stored=$(psql -p "$PG_PORT" -qAtX -c "SELECT substr(encode(email, 'hex'), 1, 2) FROM customers LIMIT 1")
[ "$stored" = "02" ] || die "customers.email is not stored as an envelope ('$stored')"

# ---------------------------------------------------------------------------------------------
# 7. The runs. Scenario: name|pgbench arguments|targets. Targets: direct, pgbouncer, pgshroud
# (pass-through), pgshroud-enc (rules). Every round runs every scenario on every target, the
# target order rotating per round, so slow drifts in machine load hit all of them alike.
# pgshroud-enc on the pgbench tables measures what a rules file costs statements that name
# no protected table (the pre-filter and the protected session's tracking).
SCENARIOS=(
    "select-simple-c1|-S -M simple -c 1 -j 1|direct pgbouncer pgshroud"
    "select-extended-c1|-S -M extended -c 1 -j 1|direct pgbouncer pgshroud"
    "select-prepared-c1|-S -M prepared -c 1 -j 1|direct pgbouncer pgshroud"
    "select-simple-c16|-S -M simple -c 16 -j 2|direct pgbouncer pgshroud pgshroud-enc"
    "select-extended-c16|-S -M extended -c 16 -j 2|direct pgbouncer pgshroud pgshroud-enc"
    "select-prepared-c16|-S -M prepared -c 16 -j 2|direct pgbouncer pgshroud pgshroud-enc"
    "tpcb-c16|-M simple -c 16 -j 2|direct pgbouncer pgshroud"
    "customers-plain-prepared-c16|-M prepared -c 16 -j 2 -f WORK/plain_customers.sql|direct pgbouncer pgshroud"
    "customers-encrypted-prepared-c16|-M prepared -c 16 -j 2 -f WORK/customers.sql|pgshroud-enc"
    "customers-plain-simple-c16|-M simple -c 16 -j 2 -f WORK/plain_customers_simple.sql|direct pgbouncer pgshroud"
    "customers-encrypted-simple-c16|-M simple -c 16 -j 2 -f WORK/customers_simple.sql|pgshroud-enc"
    # pgshroud-x2: two pass-through instances, each with half the clients (two pgbench at once).
    "scale-out-select-extended-c16|-S -M extended -c 16 -j 2|pgbouncer pgshroud pgshroud-x2"
)
# CPU time (user + system, clock ticks) a proxy has used so far; empty for direct runs.
pid_of() {
    case $1 in
        pgbouncer) cat "$WORK/pgbouncer.pid" ;; pgshroud) echo "$PASS_PID" ;;
        pgshroud-enc) echo "$ENC_PID" ;; pgshroud-variant) echo "$VARIANT_PID" ;;
        pgshroud-x2) echo "$PASS_PID $PASS2_PID" ;;
    esac
}
cpu_ticks() {
    local pids pid total=0
    pids=$(pid_of "$1")
    [ -n "$pids" ] || return 0
    for pid in $pids; do
        [ -r "/proc/$pid/stat" ] || return 0
        # Fields 14 and 15 after the ")" that ends the command name.
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)
port_of() {
    case $1 in
        direct) echo "$PG_PORT" ;; pgbouncer) echo "$BOUNCER_PORT" ;;
        pgshroud) echo "$PASS_PORT" ;; pgshroud-enc) echo "$ENC_PORT" ;;
        pgshroud-variant) echo "$VARIANT_PORT" ;;
    esac
}

RAW=$WORK/raw.tsv
: > "$RAW"
mkdir -p "$WORK/logs"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# One pgbench run; appends `scenario target round tps latency_avg_ms p99_ms cpu_us_per_tx`
# to $RAW (the last is the proxy's own CPU time per transaction; `-` for direct runs).
run_one() {
    local scenario=$1 args=$2 target=$3 round=$4 port out prefix tps lat p99 cpu0 cpu1 cpu processed
    port=$(port_of "$target")
    cpu0=$(cpu_ticks "$target")
    args=${args//WORK\//$WORK/}
    prefix=$WORK/logs/$scenario.$target.$round
    if [ "$target" = pgshroud-x2 ]; then
        # Half the clients and threads to each instance, at once; their figures are summed.
        local half=${args/-c 16 -j 2/-c 8 -j 1} out2 st=0
        # shellcheck disable=SC2086
        (cd "$WORK/logs" && pgbench -n -p "$PASS2_PORT" -T "$DURATION" $half -l --log-prefix="$prefix.b" >"$prefix.b.out" 2>&1) &
        local second=$!
        # shellcheck disable=SC2086
        out=$(cd "$WORK/logs" && pgbench -n -p "$PASS_PORT" -T "$DURATION" $half -l --log-prefix="$prefix.a" 2>&1) || st=1
        wait "$second" || st=1
        out2=$(cat "$prefix.b.out"); rm -f "$prefix.b.out"
        if [ "$st" != 0 ]; then
            log "FAILED: $scenario on $target: $(tail -3 <<<"$out$out2")"
            printf '%s\t%s\t%s\tfail\tfail\tfail\t-\n' "$scenario" "$target" "$round" >> "$RAW"
            return 0
        fi
        # One report of the sums (TPS and transactions) and the mean latency.
        out=$(printf '%s\n%s\n' "$out" "$out2" | awk '
            /^tps = .*without initial/ { tps += $3 }
            /^number of transactions actually processed:/ { n += $6 }
            /^latency average = / { lat += $4; k++ }
            END { printf "tps = %f (without initial connection time)\nnumber of transactions actually processed: %d\nlatency average = %.3f ms\n", tps, n, lat / k }')
    # shellcheck disable=SC2086
    elif ! out=$(cd "$WORK/logs" && pgbench -n -p "$port" -T "$DURATION" $args -l --log-prefix="$prefix" 2>&1); then
        log "FAILED: $scenario on $target: $(tail -3 <<<"$out")"
        printf '%s\t%s\t%s\tfail\tfail\tfail\t-\n' "$scenario" "$target" "$round" >> "$RAW"
        return 0
    fi
    cpu1=$(cpu_ticks "$target")
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
    processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    cpu=-
    if [ -n "$cpu0" ] && [ -n "$cpu1" ] && [ "${processed:-0}" -gt 0 ]; then
        cpu=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$processed" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    fi
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
    # Per-transaction log: third column is the latency in microseconds.
    p99=$(cat "$prefix".* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.3f", v[i]/1000}')
    rm -f "$prefix".*
    log "$scenario round $round $target: tps=$tps avg=${lat}ms p99=${p99}ms proxy_cpu=${cpu}us/tx"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$target" "$round" "$tps" "$lat" "$p99" "$cpu" >> "$RAW"
}

for round in $(seq 1 "$ROUNDS"); do
    for entry in "${SCENARIOS[@]}"; do
        IFS='|' read -r scenario args targets <<<"$entry"
        [[ $scenario =~ $ONLY ]] || continue
        # The variant joins the targets it stands in for: pass-through, or (BENCH_VARIANT_RULES=1)
        # the rules instance.
        joins=" pgshroud "; [ "${BENCH_VARIANT_RULES:-0}" = 1 ] && joins=" pgshroud-enc "
        [ -n "$VARIANT_PORT" ] && [[ " $targets " == *"$joins"* ]] && targets="$targets pgshroud-variant"
        read -r -a list <<<"$targets"
        n=${#list[@]}
        for i in $(seq 0 $((n - 1))); do
            run_one "$scenario" "$args" "${list[$(((i + round - 1) % n))]}" "$round"
        done
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# 8. Idle connections: pgshroud's RSS holding N logged-in idle clients (stub upstream).
IDLE=$WORK/idle.txt
: > "$IDLE"
if [ "${BENCH_SKIP_IDLE:-0}" != 1 ]; then
    # pgshroud needs two descriptors per session (client + upstream); cap at what
    # `ulimit -n` allows once raised as far as the hard limit lets us.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    limit=$(ulimit -n)
    cap=$(((limit - 64) / 2))
    counts=$(tr ',' '\n' <<<"$IDLE_COUNTS" | awk -v cap="$cap" '{ print ($1 > cap ? cap : $1) }' | paste -sd, -)
    log "idle connections: $counts (ulimit -n $limit)"
    "$IDLE_CONNS" --pgshroud "$PGSHROUD" --counts "$counts" > "$IDLE" || log "idle-connection test failed"
    echo "nofile $limit" >> "$IDLE"
fi

# ---------------------------------------------------------------------------------------------
# 9. The report.
versions() {
    echo "- pgshroud: $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- proxy rules bench || echo ' (with uncommitted changes)'), $(rustc --version)"
    echo "- PostgreSQL: $("$PG_BIN/postgres" --version | sed 's/^postgres (PostgreSQL) //')"
    echo "- PgBouncer: $("$PGBOUNCER" --version | head -1)"
    echo "- pgbench: $(pgbench --version)"
}
MACHINE="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, Linux $(uname -r)"
python3 "$ROOT/bench/report.py" --raw "$RAW" --idle "$IDLE" --out "$RESULTS" \
    --command "$COMMAND" --machine "$MACHINE" --versions "$(versions)" \
    --duration "$DURATION" --rounds "$ROUNDS" --scale "$SCALE" --customers "$CUSTOMERS" \
    --load "$LOAD_START -> $LOAD_END" \
    --variant "${BENCH_VARIANT_BIN:+binary $BENCH_VARIANT_BIN }${BENCH_VARIANT_ENV:-}"
cat "$RESULTS"
