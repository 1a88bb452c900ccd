#!/bin/bash
# stat.sh TARGET MODE [SECONDS] [CLIENTS]: pgbench -S -M MODE through one target of
# bench/probe/harness.sh (B = PgBouncer, A, V, C = the pgshrouds, or a relay shape of its
# RELAYS by name: tokio, epoll, uring) under
# `perf stat -e task-clock,context-switches,raw_syscalls:sys_enter` on its pid; prints TPS and
# the proxy's CPU, context switches and syscalls per transaction.
source ${PROBE_STATE:-/tmp/pgshroud-probe}/env
export PGHOST=127.0.0.1 PGUSER=bench PGPASSWORD=bench-secret PGDATABASE=bench
T=$1; MODE=$2; D=${3:-10}; C=${4:-16}
case $T in B) PORT=$B_PORT; PID=$BOUNCER_PID;; A) PORT=$A_PORT; PID=$A_PID;; V) PORT=$V_PORT; PID=$V_PID;; C) PORT=$C_PORT; PID=$C_PID;;
  *) port_var=RELAY_${T//-/_}_PORT; pid_var=RELAY_${T//-/_}_PID; PORT=${!port_var:?no target $T}; PID=${!pid_var};; esac
perf stat -e task-clock,context-switches,raw_syscalls:sys_enter -p $PID -o ${PROBE_STATE:-/tmp/pgshroud-probe}/perf.$T.$MODE.txt -- sleep $((D+1)) &
PP=$!
sleep 0.5
out=$(pgbench -n -S -M $MODE -c $C -j 2 -T $D -p $PORT 2>&1)
wait $PP
tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
awk -v tx=$tx -v tps=$tps -v t=$T -v m=$MODE '
/task-clock/ {gsub(",","",$1); cpu=$1}
/context-switches/ {gsub(",","",$1); cs=$1}
/raw_syscalls/ {gsub(",","",$1); sc=$1}
END {printf "%s %s tps=%.0f cpu_us/tx=%.2f cs/tx=%.2f syscalls/tx=%.2f\n", t, m, tps, cpu*1000/tx, cs/tx, sc/tx}' ${PROBE_STATE:-/tmp/pgshroud-probe}/perf.$T.$MODE.txt
