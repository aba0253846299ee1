#!/usr/bin/env bash
# Checks the README's scripts where first users run them: from a clone in a private directory
# (mode 0700, like /root or a `mktemp -d` directory), from a path with spaces, and -- when run
# as root -- as an ordinary user with a private home and no sudo. In each checkout it runs
# `deploy/test.sh services`, checks that PostgreSQL answers SQL and the broker answers a Kafka
# metadata request, runs `deploy/test.sh stop`, and checks that nothing is left running or
# listening and that no private directory was opened up. deploy/test.sh runs it; it takes
# about half a minute.
#
# Needs PostgreSQL and the broker installed (deploy/test.sh installs them first). Ports:
# KEFU_CHECK_PG_PORT (56532), KEFU_CHECK_BROKER_PORT (59292).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_PORT="${KEFU_CHECK_PG_PORT:-56532}"
BROKER_PORT="${KEFU_CHECK_BROKER_PORT:-59292}"
CHECK_USER="kefu-check"
PYTHON="${KEFU_TEST_PYTHON:-$KEFU_HOME/venv/bin/python}"

fail() { die "check-scripts: $*"; }

for port in "$PG_PORT" "$BROKER_PORT"; do
  port_open "$port" && fail "port $port is taken; set KEFU_CHECK_PG_PORT / KEFU_CHECK_BROKER_PORT"
done
ensure_broker_installed
BROKER="$(broker_bin)"

base="$(mktemp -d)"
chmod 711 "$base" # the ordinary user of case 3 must reach its home inside
created_user=0
cleanup() {
  # Whatever happened, leave nothing running.
  for d in "$base"/*/kefu "$base"/*/*/kefu; do
    [ -f "$d/deploy/lib.sh" ] || continue
    (cd "$d" && KEFU_HOME="$d/.kefu" bash -c 'source deploy/lib.sh; stop_broker test; reset_postgres test' \
      >/dev/null 2>&1) || true
  done
  if [ "$created_user" = 1 ]; then
    pkill -u "$CHECK_USER" 2>/dev/null || true
    userdel -r "$CHECK_USER" >/dev/null 2>&1 || true
  fi
  rm -rf "$base"
}
trap cleanup EXIT

# clone_into DIR: the repository with the scripts as they are in this working tree.
clone_into() {
  local dest="$1"
  mkdir -p "$(dirname "$dest")"
  if git -C "$KEFU_ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    git clone -q "$KEFU_ROOT" "$dest"
  else
    mkdir -p "$dest"
  fi
  cp -a "$KEFU_ROOT/deploy/." "$dest/deploy/"
  # The broker as installed by a first run (the download itself is not what is checked here).
  mkdir -p "$dest/.kefu/bin"
  cp "$BROKER" "$dest/.kefu/bin/tansu"
}

kafka_answers() {
  if [ -x "$PYTHON" ]; then
    "$PYTHON" - "127.0.0.1:$BROKER_PORT" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=15)
assert md.brokers, "no broker in the metadata"
PY
  else
    port_open "$BROKER_PORT"
  fi
}

# check_checkout DIR [USER]: services up, both answer, stop, nothing left.
check_checkout() {
  local dir="$1" user="${2:-}"
  local run=(env)
  if [ -n "$user" ]; then run=(runuser -u "$user" -- env "PATH=/usr/local/bin:/usr/bin:/bin" "HOME=$(getent passwd "$user" | cut -d: -f6)"); fi
  local who="${user:-$(id -un)}"
  log "check-scripts: '$dir' as $who"
  local parent_mode; parent_mode="$(stat -c %a "$(dirname "$dir")")"
  local settings=("KEFU_TEST_PG_PORT=$PG_PORT" "KEFU_TEST_BROKER_PORT=$BROKER_PORT" "KEFU_TEST_PYTHON=/usr/bin/python3")
  (cd "$dir" && "${run[@]}" "${settings[@]}" bash deploy/test.sh services >"$base/services.log" 2>&1) \
    || { cat "$base/services.log" >&2; fail "deploy/test.sh services failed in '$dir' as $who"; }
  local answer
  answer="$("$(pg_bindir)/psql" -h 127.0.0.1 -p "$PG_PORT" -U kefu -d kefu -tAc 'SELECT 40 + 2')" \
    || fail "PostgreSQL started from '$dir' does not answer"
  [ "$answer" = 42 ] || fail "PostgreSQL answered '$answer'"
  kafka_answers || fail "the broker started from '$dir' does not answer a metadata request"
  grep -q "KEFU_TEST_DATABASE_URL=postgres://kefu@127.0.0.1:$PG_PORT/postgres" "$dir/.kefu/test/env" \
    || fail "no .kefu/test/env written in '$dir'"
  local pgdir=""
  [ -f "$dir/.kefu/test/pg-location" ] && pgdir="$(cat "$dir/.kefu/test/pg-location")"
  (cd "$dir" && "${run[@]}" bash deploy/test.sh stop >"$base/stop.log" 2>&1) \
    || { cat "$base/stop.log" >&2; fail "deploy/test.sh stop failed in '$dir' as $who"; }
  local i
  for i in $(seq 1 50); do
    port_open "$PG_PORT" || port_open "$BROKER_PORT" || break
    sleep 0.1
  done
  port_open "$PG_PORT" && fail "PostgreSQL still listens on $PG_PORT after stop"
  port_open "$BROKER_PORT" && fail "the broker still listens on $BROKER_PORT after stop"
  pgrep -f -- "$dir" >/dev/null && fail "processes of '$dir' are still running: $(pgrep -af -- "$dir")"
  if [ -n "$pgdir" ] && pgrep -f -- "$pgdir" >/dev/null; then fail "PostgreSQL of '$dir' is still running"; fi
  [ "$(stat -c %a "$(dirname "$dir")")" = "$parent_mode" ] || fail "the mode of $(dirname "$dir") was changed"
}

# 1. A private parent, as /root or a `mktemp -d` directory is.
mkdir -m 700 "$base/private"
clone_into "$base/private/kefu"
check_checkout "$base/private/kefu"

# 2. A path with spaces (inside a private directory too).
mkdir -m 700 "$base/a path with spaces"
clone_into "$base/a path with spaces/kefu"
check_checkout "$base/a path with spaces/kefu"

# 3. An ordinary user with a private home, PostgreSQL already installed, no sudo.
if [ "$(id -u)" -eq 0 ]; then
  id "$CHECK_USER" >/dev/null 2>&1 && userdel -r "$CHECK_USER" >/dev/null 2>&1
  mkdir -m 755 "$base/home"
  useradd --create-home --home-dir "$base/home/$CHECK_USER" --shell /bin/bash "$CHECK_USER"
  created_user=1
  chmod 700 "$base/home/$CHECK_USER"
  clone_into "$base/home/$CHECK_USER/kefu"
  chown -R "$CHECK_USER" "$base/home/$CHECK_USER/kefu"
  check_checkout "$base/home/$CHECK_USER/kefu" "$CHECK_USER"
fi

log "check-scripts: the scripts work from private checkouts and leave nothing running"
