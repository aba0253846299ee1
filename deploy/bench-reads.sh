#!/usr/bin/env bash
# Reads of agent desktops beside plain SQL, in one run on one machine: a private PostgreSQL,
# the broker, release builds of kefu and kefu-bench; `kefu run` serves GraphQL while
# `kefu-bench reads` files customers with complaints through it, waits for the read models,
# then reads the customer 360 and the complaint backlog's first page (20 complaints with their
# customers) through GraphQL and the same data in plain SQL, interleaved, at each client count.
#
# Every run prints one JSON line; they are kept in .kefu/bench/reads-<time>.jsonl and
# summarised at the end with GraphQL's throughput as a ratio to plain SQL's.
#
#   deploy/bench-reads.sh [--customers N (300)] [--clients 1,50,200] [--seconds S (5)]
#
# Ports: KEFU_BENCH_PG_PORT (57432), KEFU_BENCH_BROKER_PORT (59392), KEFU_BENCH_HTTP_PORT (58080).
# KEFU_BENCH_DB_CONNECTIONS (20): the gateway's pool, and the plain-SQL baseline's.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT="${KEFU_BENCH_PG_PORT:-57432}"
BROKER_PORT="${KEFU_BENCH_BROKER_PORT:-59392}"
HTTP_PORT="${KEFU_BENCH_HTTP_PORT:-58080}"
CONNECTIONS="${KEFU_BENCH_DB_CONNECTIONS:-20}"
CUSTOMERS=300
CLIENTS=1,50,200
SECONDS_EACH=5
while [ $# -gt 0 ]; do
  case "$1" in
    --customers) CUSTOMERS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    *) die "unknown argument $1 (use --customers N, --clients A,B,C, --seconds S)" ;;
  esac
done
for n in "$CUSTOMERS" "$SECONDS_EACH" "$CONNECTIONS"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "'$n' is not a positive whole number"
done
[[ "$CLIENTS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--clients takes counts separated by commas, e.g. 1,50,200"

ensure_build_tools
choose_target_dir
ensure_postgres_installed
ensure_broker_installed
TARGET="${CARGO_TARGET_DIR:-$KEFU_ROOT/target}"

log "building kefu and kefu-bench (release)"
build_bench_binaries

start_postgres bench "$PG_PORT"
start_broker bench "$BROKER_PORT"
kefu_pid=""
cleanup() {
  if [ -n "$kefu_pid" ]; then kill "$kefu_pid" 2>/dev/null || true; wait "$kefu_pid" 2>/dev/null || true; fi
  stop_broker bench
  stop_postgres bench
}
trap cleanup EXIT

PSQL="$(pg_bindir)/psql"
SERVER="postgres://kefu@127.0.0.1:$PG_PORT"
sql() { "$PSQL" -h 127.0.0.1 -p "$PG_PORT" -U kefu -d postgres -qtAc "$1"; }
sql "DROP DATABASE IF EXISTS bench_reads WITH (FORCE)" && sql "CREATE DATABASE bench_reads"
PG_PID="$(head -n1 "$(pg_data_dir bench)/postmaster.pid")"

wait_for_port_free "$HTTP_PORT"
DATABASE_URL="$SERVER/bench_reads" KEFU_KAFKA_BROKERS="127.0.0.1:$BROKER_PORT" \
  KEFU_KAFKA_TOPIC="bench.reads.$(date +%s)" KEFU_HTTP_ADDR="127.0.0.1:$HTTP_PORT" KEFU_AUTH_MODE=dev \
  KEFU_DB_MAX_CONNECTIONS="$CONNECTIONS" RUST_LOG=warn \
  "$TARGET/release/kefu" run >"$KEFU_HOME/bench/kefu-reads.log" 2>&1 &
kefu_pid=$!
wait_for_gateway "$HTTP_PORT" "$kefu_pid" "$KEFU_HOME/bench/kefu-reads.log"

results="$KEFU_HOME/bench/reads-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
mkdir -p "$(dirname "$results")"
"$TARGET/release/kefu-bench" reads --url "http://127.0.0.1:$HTTP_PORT/graphql" \
  --database-url "$SERVER/bench_reads" --customers "$CUSTOMERS" --clients "$CLIENTS" --seconds "$SECONDS_EACH" \
  --sql-connections "$CONNECTIONS" --postgres-pid "$PG_PID" --gateway-pid "$kefu_pid" \
  | grep '^{' | tee "$results"

log "results: $results"
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sql = {(r["read"], r["clients"]): r for r in rows if r["system"] == "plain SQL"}
print(f"{'read':<40} {'clients':>7} {'system':<15} {'queries/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'÷ SQL':>6}")
for r in rows:
    base = sql.get((r["read"], r["clients"]))
    ratio = f"{r['queries_per_s'] / base['queries_per_s']:.2f}" if base and r is not base else ""
    print(f"{r['read']:<40} {r['clients']:>7} {r['system']:<15} {r['queries_per_s']:>9.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {ratio:>6}")
PY
