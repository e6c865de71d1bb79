#!/usr/bin/env bash
# A throwaway local PostgreSQL for tests and laptops.
#
#   local-postgres.sh start DATA_DIR [PORT]   initdb if needed, start, create db cxstream
#   local-postgres.sh stop  DATA_DIR [PORT]   stop (fast mode)
#   local-postgres.sh url   DATA_DIR [PORT]   print the SQLAlchemy URL
#
# Trust authentication, listening on 127.0.0.1 only, unix sockets in DATA_DIR.
# Installs Debian's postgresql package when no server binaries exist. Idempotent:
# start on a running server and stop on a stopped one succeed.
#
# PORT defaults to the one DATA_DIR's server last started on (DATA_DIR/port),
# else 55432. When PORT is in use, start exits with status 3 and says so, so a
# caller that picked a free port (the test fixtures) can pick another.
set -euo pipefail

PORT_IN_USE=3

usage() { echo "usage: $0 start|stop|url DATA_DIR [PORT]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
action=$1
data_dir=$(realpath -m "$2")
port=${3:-$(cat "$data_dir/port" 2>/dev/null || echo 55432)}
[[ $port =~ ^[0-9]+$ ]] || { echo "PORT must be a number, got '$port'" >&2; exit 2; }
cluster="$data_dir/cluster"
url() { echo "postgresql+psycopg://postgres@127.0.0.1:${port}/cxstream"; }

find_bin_dir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/pg_ctl" && -x "$dir/initdb" ]]; then echo "$dir"; return 0; fi
    done
    return 1
}

ensure_binaries() {
    if ! bin_dir=$(find_bin_dir); then
        echo "no PostgreSQL server found; installing Debian's postgresql package" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
        bin_dir=$(find_bin_dir) || { echo "postgresql install left no pg_ctl" >&2; exit 1; }
    fi
}

# The server refuses to run as root, so run its tools as the postgres user then.
as_postgres() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

is_running() { as_postgres "$bin_dir/pg_ctl" -D "$cluster" status >/dev/null 2>&1; }

start() {
    ensure_binaries
    mkdir -p "$data_dir"
    if [[ $(id -u) -eq 0 ]]; then chown postgres: "$data_dir"; fi
    if [[ ! -f "$cluster/PG_VERSION" ]]; then
        as_postgres "$bin_dir/initdb" -D "$cluster" -U postgres --auth=trust \
            --encoding=UTF8 --no-locale >"$data_dir/initdb.log"
        cat >"$cluster/pg_hba.conf" <<HBA
# Local test server: trust, but only on the unix socket and 127.0.0.1.
local all all trust
host  all all 127.0.0.1/32 trust
HBA
    fi
    if is_running; then
        # Already up: on the port it started on, whatever PORT says.
        port=$(cat "$data_dir/port" 2>/dev/null || echo "$port")
    else
        # Something listening there already (bash connects to it): refuse early.
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "port $port is in use" >&2
            exit "$PORT_IN_USE"
        fi
        local log="$data_dir/server.log" logged=0
        [[ -f $log ]] && logged=$(stat -c %s "$log")
        if ! as_postgres "$bin_dir/pg_ctl" -D "$cluster" -l "$log" -w -t 60 \
            -o "-p $port -k $data_dir -c listen_addresses=127.0.0.1" start >&2; then
            # Bound but not listening yet, or taken in the meantime: the server
            # log of this attempt says so.
            if tail -c +$((logged + 1)) "$log" 2>/dev/null | grep -q "Address already in use"; then
                echo "port $port is in use" >&2
                exit "$PORT_IN_USE"
            fi
            exit 1
        fi
        echo "$port" >"$data_dir/port"
    fi
    local psql=("$bin_dir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qtAX)
    if [[ -z $("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'cxstream'") ]]; then
        "${psql[@]}" -c "CREATE DATABASE cxstream" >&2
    fi
    url
}

stop() {
    ensure_binaries
    if [[ -f "$cluster/PG_VERSION" ]] && is_running; then
        as_postgres "$bin_dir/pg_ctl" -D "$cluster" -m fast -w stop >&2
    fi
}

case "$action" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *) usage ;;
esac
