#!/usr/bin/env bash
# Runs kefu locally, from a fresh Debian machine with the Rust toolchain: installs what is
# missing (PostgreSQL from Debian, the tansu broker), starts both privately on loopback,
# builds kefu and runs it (gateway, relay and projectors in one process) until Ctrl-C.
#
# Settings (environment):
#   KEFU_HTTP_ADDR       where GraphQL listens            (127.0.0.1:8080)
#   KEFU_PG_PORT         private PostgreSQL port           (55432)
#   KEFU_BROKER_PORT     private broker port               (59092)
#   KEFU_AUTH_MODE       dev (fixed local identity) or jwt (dev)
#   KEFU_BUILD_PROFILE   dev or release                    (dev)
#   KEFU_KEEP_SERVICES   1 = leave PostgreSQL and the broker running on exit
# Any other KEFU_* variable is passed to kefu (see README.md, "Configuration").
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT="${KEFU_PG_PORT:-55432}"
BROKER_PORT="${KEFU_BROKER_PORT:-59092}"
PROFILE="${KEFU_BUILD_PROFILE:-dev}"

ensure_build_tools
choose_target_dir
ensure_postgres_installed
ensure_broker_installed
start_postgres dev "$PG_PORT"
start_broker dev "$BROKER_PORT"
if [ "${KEFU_KEEP_SERVICES:-0}" != 1 ]; then
  trap 'stop_broker dev; stop_postgres dev' EXIT
fi

cd "$KEFU_ROOT"
log "building kefu ($PROFILE profile)"
cargo build --locked --profile "$PROFILE" -p kefu-cli --bin kefu
dir="$PROFILE"; [ "$PROFILE" = dev ] && dir=debug
bin="${CARGO_TARGET_DIR:-$KEFU_ROOT/target}/$dir/kefu"

export DATABASE_URL="${DATABASE_URL:-postgres://kefu@127.0.0.1:$PG_PORT/kefu}"
export KEFU_KAFKA_BROKERS="${KEFU_KAFKA_BROKERS:-127.0.0.1:$BROKER_PORT}"
export KEFU_HTTP_ADDR="${KEFU_HTTP_ADDR:-127.0.0.1:8080}"
export KEFU_AUTH_MODE="${KEFU_AUTH_MODE:-dev}"
# The local broker keeps its log in memory: after a restart kefu publishes the history
# again from PostgreSQL (docs/adr/0004-local-broker.md).
export KEFU_ON_LOST_LOG="${KEFU_ON_LOST_LOG:-republish}"

log "starting kefu (Ctrl-C stops kefu, the broker and PostgreSQL)"
"$bin" run
