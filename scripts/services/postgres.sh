# shellcheck shell=bash
# PostgreSQL on 127.0.0.1:15432: user `parley`, database `parley`, trust auth on loopback
# (sourced by scripts/services.sh). When root, the server runs as the `postgres` OS user.

PG_PORT="${PARLEY_POSTGRES_PORT:-15432}"
PG_USER=parley
PG_DB=parley
PG_DEFAULT_URL="postgresql+asyncpg://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"
PG_ACTION=""
PG_PID=""
PG_BIN=""
PG_BASE=""

# Prints DATABASE_URL when the user pointed it somewhere other than the service these scripts run.
pg_external_url() {
    local url=${DATABASE_URL:-}
    case "$url" in
    "" | "$PG_DEFAULT_URL" | "postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB" | \
        "postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB") return 1 ;;
    esac
    printf '%s' "$url"
}

# libpq does not know driver suffixes: postgresql+asyncpg://... -> postgresql://...
pg_libpq_url() {
    local url=$1 scheme rest
    scheme=${url%%://*}
    rest=${url#*://}
    printf '%s://%s' "${scheme%%+*}" "$rest"
}

# The newest installed server: highest /usr/lib/postgresql/*/bin.
pg_find_bin() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n1)
    [[ -n $dir && -x $dir/pg_ctl ]] || return 1
    printf '%s' "$dir"
}

# Run a command as the OS user that owns the cluster (postgres when we are root).
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Where the cluster lives: under the state dir, unless the postgres OS user cannot reach it.
pg_base_dir() {
    if is_root && ! runuser -u postgres -- test -x "$STATE_DIR" 2>/dev/null; then
        printf '%s' "${PARLEY_POSTGRES_FALLBACK_DIR:-/var/lib/postgresql/parley-services-$PG_PORT}"
    else
        printf '%s' "$STATE_DIR/postgres"
    fi
}

pg_data() { printf '%s/data' "$PG_BASE"; }
pg_log() { printf '%s/postgres.log' "$PG_BASE"; }

pg_init_paths() {
    PG_BIN=$(pg_find_bin) || PG_BIN=""
    PG_BASE=$(pg_base_dir)
}

# The postmaster pid when the cluster in our data dir is running.
pg_live_pid() {
    local pidfile pid
    pidfile="$(pg_data)/postmaster.pid"
    [[ -f $pidfile ]] || return 1
    pid=$(head -n1 "$pidfile" 2>/dev/null || true)
    pid_matches "$pid" postgres || return 1
    printf '%s' "$pid"
}

pg_isready_local() {
    if [[ -n $PG_BIN ]]; then
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -t 2
    else
        pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -t 2
    fi
}

pg_isready_url() {
    local bin=pg_isready
    [[ -n $PG_BIN ]] && bin="$PG_BIN/pg_isready"
    "$bin" -q -d "$(pg_libpq_url "$1")" -t 3
}

pg_psql() {
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$@"
}

postgres_plan() {
    local url
    pg_init_paths
    if url=$(pg_external_url); then
        PG_ACTION=external
        return
    fi
    [[ -n $PG_BIN ]] || die postgres "no /usr/lib/postgresql/*/bin/pg_ctl; run scripts/install-system.sh"
    if is_root; then
        id postgres >/dev/null 2>&1 || die postgres "no 'postgres' OS user to run the server as (apt-get install -y postgresql creates it)"
    fi
    if PG_PID=$(pg_live_pid); then
        PG_ACTION=reuse
    elif port_answers 127.0.0.1 "$PG_PORT"; then
        PG_ACTION=foreign
    else
        PG_ACTION=start
    fi
}

# Write the settings we own into an included file, so they apply on every start.
pg_write_config() {
    local data=$1 conf
    conf="$data/postgresql.conf"
    if ! grep -q "^include_if_exists = 'parley.conf'" "$conf"; then
        printf "\n# Settings owned by scripts/services/postgres.sh\ninclude_if_exists = 'parley.conf'\n" >>"$conf"
    fi
    cat >"$data/parley.conf" <<CONF
# Written by scripts/services/postgres.sh on every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
synchronous_commit = off
max_connections = 200
logging_collector = off
CONF
    if is_root; then
        chown postgres: "$data/parley.conf"
    fi
}

postgres_start() {
    [[ $PG_ACTION == start ]] || return 0
    local data log
    data=$(pg_data)
    log=$(pg_log)
    PG_STARTED_AT=$(now_us)
    if [[ $PG_BASE != "$STATE_DIR/postgres" ]]; then
        say postgres "the postgres OS user cannot reach $STATE_DIR; keeping the cluster in $PG_BASE instead"
    fi
    mkdir -p "$PG_BASE"
    if is_root; then
        chown postgres: "$PG_BASE"
        chmod 700 "$PG_BASE"
    fi
    if [[ ! -f $data/PG_VERSION ]]; then
        rm -rf "$data"
        as_pg "$PG_BIN/initdb" -D "$data" -U "$PG_USER" --auth-local=trust --auth-host=trust \
            -E UTF8 --no-locale --no-sync >"$LOG_DIR/postgres-initdb.log" 2>&1 ||
            fail_with_log postgres "initdb failed" "$LOG_DIR/postgres-initdb.log"
        say postgres "initialised a new cluster in $data ($("$PG_BIN/postgres" --version))"
    fi
    pg_write_config "$data"
    if [[ -s $log ]]; then
        as_pg mv -f "$log" "$log.1"
    fi
    # pg_ctl -w waits until the server accepts connections (or has died / timed out).
    as_pg "$PG_BIN/pg_ctl" start -D "$data" -l "$log" -w -t "$READY_TIMEOUT" -s 9>&- ||
        fail_with_log postgres "pg_ctl start failed" "$log"
    PG_PID=$(pg_live_pid) || fail_with_log postgres "the server is not running after pg_ctl start" "$log"
}

pg_ensure_database() {
    local exists
    exists=$(pg_psql -d postgres -tAc "select 1 from pg_database where datname = '$PG_DB'") ||
        fail_with_log postgres "cannot query the server as $PG_USER" "$(pg_log)"
    if [[ $exists != 1 ]]; then
        pg_psql -d postgres -c "create database $PG_DB owner $PG_USER" >/dev/null ||
            fail_with_log postgres "could not create database $PG_DB" "$(pg_log)"
        say postgres "created database $PG_DB"
    fi
}

postgres_await() {
    local url
    case "$PG_ACTION" in
    external)
        url=$(pg_external_url)
        pg_isready_url "$url" || die postgres "DATABASE_URL is set ($(mask_url "$url")) but pg_isready gets no answer"
        say postgres "using DATABASE_URL from the environment ($(mask_url "$url")), it answers; not starting one"
        ;;
    reuse)
        await_ready postgres "$PG_PID" "$READY_TIMEOUT" "$(pg_log)" pg_isready_local
        pg_ensure_database
        say postgres "already running on 127.0.0.1:$PG_PORT (pid $PG_PID), reusing"
        ;;
    foreign)
        pg_isready_local || die postgres "something else listens on 127.0.0.1:$PG_PORT and it is not PostgreSQL"
        say postgres "something already answers on 127.0.0.1:$PG_PORT (not started by these scripts), reusing"
        ;;
    start)
        await_ready postgres "$PG_PID" "$READY_TIMEOUT" "$(pg_log)" pg_isready_local
        pg_ensure_database
        say postgres "started on 127.0.0.1:$PG_PORT (pid $PG_PID) in $(elapsed_since "$PG_STARTED_AT")s"
        ;;
    esac
}

postgres_down() {
    local pid
    pg_init_paths
    if pid=$(pg_live_pid); then
        as_pg "$PG_BIN/pg_ctl" stop -D "$(pg_data)" -m fast -w -t 60 -s 9>&- ||
            stop_pid postgres "$pid" 30
        say postgres "stopped (pid $pid)"
    else
        say postgres "not running (nothing started by these scripts), nothing to stop"
    fi
}

postgres_status() {
    local pid url
    pg_init_paths
    if url=$(pg_external_url); then
        if pg_isready_url "$url"; then
            say postgres "running (external, DATABASE_URL=$(mask_url "$url"))"
        else
            say postgres "NOT answering (external, DATABASE_URL=$(mask_url "$url"))"
            return 1
        fi
    elif pid=$(pg_live_pid) && pg_isready_local; then
        say postgres "running on 127.0.0.1:$PG_PORT (pid $pid, data $(pg_data))"
    elif pg_isready_local; then
        say postgres "running on 127.0.0.1:$PG_PORT (not started by these scripts)"
    else
        say postgres "stopped"
        return 1
    fi
}

postgres_env() {
    local url
    if url=$(pg_external_url); then
        printf 'export DATABASE_URL=%q\n' "$url"
    elif port_answers 127.0.0.1 "$PG_PORT"; then
        printf 'export DATABASE_URL=%s\n' "$PG_DEFAULT_URL"
    else
        printf '# postgres: not running (run make services-up)\n'
    fi
}

postgres_logs() {
    pg_init_paths
    pg_log
    printf '\n'
}
