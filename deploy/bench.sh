#!/usr/bin/env bash
# The write path beside its peers, in one run on one machine: a private PostgreSQL with fsync
# on (the test cluster's figures mean nothing for durability-bound work), the broker, release
# builds of kefu-bench, kefu and the two peer programs in ../shared/anchors (cqrs-es, esrs);
# then rounds that interleave, on the peers' workload (M complaints, each filed, acknowledged
# and resolved, C concurrent clients):
#
#   cqrs-es  ·  kefu (command service, in process)  ·  esrs  ·  kefu (GraphQL over HTTP
#   against `kefu run`, relay and projectors working beside it)
#
# Every run prints one JSON line; they are kept in .kefu/bench/results-<time>.jsonl and
# summarised at the end with each kefu figure as a ratio to the peers' in the same round.
#
#   deploy/bench.sh [--complaints M (20000)] [--concurrency C (32)] [--rounds R (2)]
#
# Ports: KEFU_BENCH_PG_PORT (57432), KEFU_BENCH_BROKER_PORT (59392), KEFU_BENCH_HTTP_PORT (58080).
# KEFU_ANCHORS: where the peer programs are (../shared/anchors).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT="${KEFU_BENCH_PG_PORT:-57432}"
BROKER_PORT="${KEFU_BENCH_BROKER_PORT:-59392}"
HTTP_PORT="${KEFU_BENCH_HTTP_PORT:-58080}"
ANCHORS="${KEFU_ANCHORS:-$KEFU_ROOT/../shared/anchors}"
COMPLAINTS=20000
CONCURRENCY=32
ROUNDS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --complaints) COMPLAINTS="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    *) die "unknown argument $1 (use --complaints M, --concurrency C, --rounds R)" ;;
  esac
done
for n in "$COMPLAINTS" "$CONCURRENCY" "$ROUNDS"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "'$n' is not a positive whole number"
done
[ -f "$ANCHORS/cqrs-es-bench/Cargo.toml" ] && [ -f "$ANCHORS/esrs-bench/Cargo.toml" ] \
  || die "the peer programs are not in $ANCHORS (set KEFU_ANCHORS)"

ensure_build_tools
choose_target_dir
ensure_postgres_installed
ensure_broker_installed
TARGET="${CARGO_TARGET_DIR:-$KEFU_ROOT/target}"

log "building kefu, kefu-bench and the peers (release)"
build_bench_binaries
for peer in cqrs-es-bench esrs-bench; do
  cargo build --release --quiet --manifest-path "$ANCHORS/$peer/Cargo.toml" --target-dir "$TARGET/anchors"
done

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
[ "$(sql 'SHOW fsync')" = on ] || die "the bench cluster runs with fsync off; delete $(pg_data_dir bench) and run again"
fresh_db() { sql "DROP DATABASE IF EXISTS $1 WITH (FORCE)" && sql "CREATE DATABASE $1"; }
PG_PID="$(head -n1 "$(pg_data_dir bench)/postmaster.pid")"

results="$KEFU_HOME/bench/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
mkdir -p "$(dirname "$results")"
: >"$results"
record() { local round="$1"; shift; "$@" | while read -r line; do
  case "$line" in \{*) printf '%s\n' "$line" | python3 -c "import json,sys; d=json.load(sys.stdin); d['round']=$round; print(json.dumps(d))" | tee -a "$results" ;; esac
done; }

for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS: $COMPLAINTS complaints × 3 commands, $CONCURRENCY clients"
  fresh_db bench_cqrs
  record "$round" "$TARGET/anchors/release/cqrs-es-bench" --database-url "$SERVER/bench_cqrs" \
    --complaints "$COMPLAINTS" --concurrency "$CONCURRENCY"
  record "$round" env KEFU_TEST_DATABASE_URL="$SERVER/postgres" "$TARGET/release/kefu-bench" peers \
    --complaints "$COMPLAINTS" --concurrency "$CONCURRENCY" --postgres-pid "$PG_PID"
  fresh_db bench_esrs
  record "$round" "$TARGET/anchors/release/esrs-bench" --database-url "$SERVER/bench_esrs" \
    --complaints "$COMPLAINTS" --concurrency "$CONCURRENCY"

  # GraphQL against `kefu run` (gateway, relay, projectors and automations in one process).
  fresh_db bench_kefu
  stop_broker bench
  start_broker bench "$BROKER_PORT"
  wait_for_port_free "$HTTP_PORT"
  DATABASE_URL="$SERVER/bench_kefu" KEFU_KAFKA_BROKERS="127.0.0.1:$BROKER_PORT" \
    KEFU_KAFKA_TOPIC="bench.events.$round" KEFU_HTTP_ADDR="127.0.0.1:$HTTP_PORT" KEFU_AUTH_MODE=dev \
    KEFU_DB_MAX_CONNECTIONS=$((CONCURRENCY + 8)) RUST_LOG=warn \
    "$TARGET/release/kefu" run >"$KEFU_HOME/bench/kefu-run.log" 2>&1 &
  kefu_pid=$!
  wait_for_gateway "$HTTP_PORT" "$kefu_pid" "$KEFU_HOME/bench/kefu-run.log"
  record "$round" "$TARGET/release/kefu-bench" peers-graphql --url "http://127.0.0.1:$HTTP_PORT/graphql" \
    --gateway-pid "$kefu_pid" --gateway "kefu run" --complaints "$COMPLAINTS" --concurrency "$CONCURRENCY" \
    --postgres-pid "$PG_PID" --visible-every 10
  kill "$kefu_pid"; wait "$kefu_pid" 2>/dev/null || true; kefu_pid=""
done

log "results: $results"
python3 - "$results" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by_round = collections.defaultdict(dict)
for r in rows:
    by_round[r["round"]][r["system"]] = r
print(f"{'round':>5}  {'system':<38} {'commands/s':>10} {'p50 ms':>7} {'p99 ms':>7}  {'÷ cqrs-es':>9} {'÷ esrs':>7}")
for rnd, systems in sorted(by_round.items()):
    cq = next((v for k, v in systems.items() if k.startswith("cqrs-es")), None)
    es = next((v for k, v in systems.items() if k.startswith("esrs")), None)
    for name, r in systems.items():
        ratio = lambda peer: f"{r['commands_per_s'] / peer['commands_per_s']:.2f}" if peer else "-"
        print(f"{rnd:>5}  {name:<38} {r['commands_per_s']:>10.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}  {ratio(cq):>9} {ratio(es):>7}")
for rnd, systems in sorted(by_round.items()):
    for name, r in systems.items():
        if "visible" in r:
            v = r["visible"]
            print(f"{rnd:>5}  {name:<38} mutation to visible in the read model: p50 {v['p50_ms']:.1f} ms, "
                  f"p99 {v['p99_ms']:.1f} ms, max {v['max_ms']:.1f} ms over {v['samples']} resolutions")
PY
