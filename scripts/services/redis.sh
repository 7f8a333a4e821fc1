# shellcheck shell=bash
# Redis on 127.0.0.1:16379, no persistence (sourced by scripts/services.sh).

REDIS_PORT="${PARLEY_REDIS_PORT:-16379}"
REDIS_DEFAULT_URL="redis://127.0.0.1:$REDIS_PORT/0"
REDIS_LOG="$LOG_DIR/redis.log"
REDIS_ACTION=""
REDIS_PID=""

# Prints REDIS_URL when the user pointed it somewhere other than the service these scripts run.
redis_external_url() {
    local url=${REDIS_URL:-}
    case "$url" in
    "" | "$REDIS_DEFAULT_URL" | "redis://127.0.0.1:$REDIS_PORT" | "redis://127.0.0.1:$REDIS_PORT/") return 1 ;;
    esac
    printf '%s' "$url"
}

redis_ping_local() { [[ $(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }
redis_ping_url() { [[ $(timeout 3 redis-cli --no-auth-warning -u "$1" ping 2>/dev/null) == PONG ]]; }

redis_plan() {
    local url
    command -v redis-cli >/dev/null || die redis "redis-cli not found; run scripts/install-system.sh"
    if url=$(redis_external_url); then
        REDIS_ACTION=external
        return
    fi
    if REDIS_PID=$(read_live_pid redis "redis-server 127.0.0.1:$REDIS_PORT"); then
        REDIS_ACTION=reuse
    elif port_answers 127.0.0.1 "$REDIS_PORT"; then
        REDIS_ACTION=foreign
    else
        command -v redis-server >/dev/null || die redis "redis-server not found; run scripts/install-system.sh"
        REDIS_ACTION=start
    fi
}

redis_start() {
    [[ $REDIS_ACTION == start ]] || return 0
    mkdir -p "$STATE_DIR/redis"
    rotate_log "$REDIS_LOG"
    REDIS_STARTED_AT=$(now_us)
    REDIS_PID=$(launch_detached redis "$(pid_file redis)" "$REDIS_LOG" \
        redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --save "" --appendonly no --dir "$STATE_DIR/redis" --logfile "" --daemonize no)
}

redis_await() {
    local url
    case "$REDIS_ACTION" in
    external)
        url=$(redis_external_url)
        redis_ping_url "$url" || die redis "REDIS_URL is set ($(mask_url "$url")) but it does not answer PING"
        say redis "using REDIS_URL from the environment ($(mask_url "$url")), it answers PING; not starting one"
        ;;
    reuse)
        await_ready redis "$REDIS_PID" "$READY_TIMEOUT" "$REDIS_LOG" redis_ping_local
        say redis "already running on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID), reusing"
        ;;
    foreign)
        redis_ping_local || die redis "something else listens on 127.0.0.1:$REDIS_PORT and it is not Redis"
        say redis "something already answers PING on 127.0.0.1:$REDIS_PORT (not started by these scripts), reusing"
        ;;
    start)
        await_ready redis "$REDIS_PID" "$READY_TIMEOUT" "$REDIS_LOG" redis_ping_local
        say redis "started on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID) in $(elapsed_since "$REDIS_STARTED_AT")s"
        ;;
    esac
}

redis_down() {
    local pid
    if pid=$(read_live_pid redis "redis-server 127.0.0.1:$REDIS_PORT"); then
        stop_pid redis "$pid" 30
        rm -f "$(pid_file redis)"
        say redis "stopped (pid $pid)"
    else
        rm -f "$(pid_file redis)"
        say redis "not running (nothing started by these scripts), nothing to stop"
    fi
}

redis_status() {
    local pid url
    if url=$(redis_external_url); then
        if redis_ping_url "$url"; then
            say redis "running (external, REDIS_URL=$(mask_url "$url"))"
        else
            say redis "NOT answering (external, REDIS_URL=$(mask_url "$url"))"
            return 1
        fi
    elif pid=$(read_live_pid redis "redis-server 127.0.0.1:$REDIS_PORT") && redis_ping_local; then
        say redis "running on 127.0.0.1:$REDIS_PORT (pid $pid)"
    elif redis_ping_local; then
        say redis "running on 127.0.0.1:$REDIS_PORT (not started by these scripts)"
    else
        say redis "stopped"
        return 1
    fi
}

redis_env() {
    local url
    if url=$(redis_external_url); then
        printf 'export REDIS_URL=%q\n' "$url"
    elif port_answers 127.0.0.1 "$REDIS_PORT"; then
        printf 'export REDIS_URL=%s\n' "$REDIS_DEFAULT_URL"
    else
        printf '# redis: not running (run make services-up)\n'
    fi
}

redis_logs() { printf '%s\n' "$REDIS_LOG"; }
