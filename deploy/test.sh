#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing (PostgreSQL from
# Debian, the tansu broker), starts both privately on loopback, runs formatting, lints, the
# domain purity check and every test, then stops them.
#
#   deploy/test.sh            everything (what CI runs)
#   deploy/test.sh services   only start the test services and write .kefu/test/env, so that
#                             `cargo test -p ...` works by hand afterwards
#   deploy/test.sh stop       stop the test services
#
# Ports: KEFU_TEST_PG_PORT (56432), KEFU_TEST_BROKER_PORT (59192).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT="${KEFU_TEST_PG_PORT:-56432}"
BROKER_PORT="${KEFU_TEST_BROKER_PORT:-59192}"
mode="${1:-all}"

stop_all() { stop_broker test; stop_postgres test; }

if [ "$mode" = stop ]; then stop_all; exit 0; fi
case "$mode" in all | services) ;; *) die "unknown mode '$mode': use no argument, 'services' or 'stop'" ;; esac

ensure_postgres_installed
ensure_broker_installed
# KEFU_TEST_PYTHON: a Python with deploy/python-requirements.txt installed (made when unset).
if [ -z "${KEFU_TEST_PYTHON:-}" ]; then
  ensure_python_venv
  KEFU_TEST_PYTHON="$KEFU_HOME/venv/bin/python"
fi

# A clean slate every time: a fresh cluster and an empty broker.
stop_broker test
reset_postgres test
rm -rf "$KEFU_HOME/test"
start_postgres test "$PG_PORT" fast
start_broker test "$BROKER_PORT"

export KEFU_TEST_DATABASE_URL="postgres://kefu@127.0.0.1:$PG_PORT/postgres"
export KEFU_TEST_BROKERS="127.0.0.1:$BROKER_PORT"
export KEFU_TEST_PYTHON
cat >"$KEFU_HOME/test/env" <<ENV
KEFU_TEST_DATABASE_URL=$KEFU_TEST_DATABASE_URL
KEFU_TEST_BROKERS=$KEFU_TEST_BROKERS
KEFU_TEST_PYTHON=$KEFU_TEST_PYTHON
ENV

if [ "$mode" = services ]; then
  log "test services are up; settings written to $KEFU_HOME/test/env"
  cat "$KEFU_HOME/test/env"
  exit 0
fi

trap 'stop_all' EXIT
cd "$KEFU_ROOT"
ensure_build_tools
choose_target_dir

log "the deploy scripts from private checkouts (deploy/check-scripts.sh)"
bash "$KEFU_ROOT/deploy/check-scripts.sh"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "the domain crate does no I/O"
impure="$(cargo tree -p kefu-domain -e normal --prefix none --locked | awk '{print $1}' \
  | grep -E '^(sqlx.*|rdkafka.*|tokio.*|mio|hyper.*|reqwest|axum.*|async-graphql.*)$' | sort -u || true)"
if [ -n "$impure" ]; then die "kefu-domain depends on I/O crates: $impure"; fi

log "building kefu for the black-box tests"
cargo build --locked -p kefu-cli --bin kefu
export KEFU_BIN="${CARGO_TARGET_DIR:-$KEFU_ROOT/target}/debug/kefu"

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast --profile ci
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
log "all tests passed"
