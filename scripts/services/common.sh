# shellcheck shell=bash
# shellcheck disable=SC2034 # settings used by the service modules that source this file
# Shared settings and helpers for scripts/services.sh (sourced, never run directly).
#
# Everything these scripts start lives on loopback, and all their state (data directories, logs,
# pid files, the Triton model repository) lives under PARLEY_STATE_DIR.

SERVICES_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SERVICES_LIB_DIR/../.." && pwd)"

STATE_DIR="${PARLEY_STATE_DIR:-$REPO_ROOT/.parley/services}"
CACHE_DIR="${PARLEY_CACHE_DIR:-$HOME/.cache/parley}"
LOG_DIR="$STATE_DIR/logs"
PID_DIR="$STATE_DIR/pids"
# The project's virtualenv: aiokafka for the Kafka readiness probe, pytriton for tritonserver.
PARLEY_PY="${PARLEY_PYTHON:-$REPO_ROOT/.venv/bin/python}"
# Overall readiness timeout per service (seconds) and the poll interval.
READY_TIMEOUT="${PARLEY_SERVICES_TIMEOUT:-120}"
POLL_INTERVAL="0.25"

ALL_SERVICES=(kafka redis postgres triton)

say() { # say NAME MESSAGE...
    local name=$1
    shift
    printf '%s: %s\n' "$name" "$*"
}

warn() {
    local name=$1
    shift
    printf '%s: WARNING: %s\n' "$name" "$*" >&2
}

die() {
    local name=$1
    shift
    printf '%s: ERROR: %s\n' "$name" "$*" >&2
    exit 1
}

is_root() { [[ $EUID -eq 0 ]]; }

# Microseconds since the epoch (bash 5 EPOCHREALTIME; locale-proof).
now_us() { printf '%s' "${EPOCHREALTIME//[.,]/}"; }

# Seconds (one decimal) elapsed since a now_us value.
elapsed_since() {
    local us=$(($(now_us) - $1))
    printf '%d.%d' $((us / 1000000)) $(((us % 1000000) / 100000))
}

# Hide a password in a URL before printing it: scheme://user:***@host/...
mask_url() {
    # shellcheck disable=SC2001 # a regex with groups is clearer than parameter expansion here
    sed -E 's#^([a-zA-Z0-9+.-]+://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"
}

# True when PID is a live (non-zombie) process.
pid_alive() {
    local pid=$1 stat
    [[ -n $pid && $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# True when PID is alive and its command line contains PATTERN (guards against pid reuse).
pid_matches() {
    local pid=$1 pattern=$2 cmdline
    pid_alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$pattern"* ]]
}

pid_file() { printf '%s/%s.pid' "$PID_DIR" "$1"; }

# Print the pid recorded for NAME when that process is alive and looks like PATTERN.
read_live_pid() {
    local name=$1 pattern=$2 file pid
    file=$(pid_file "$name")
    [[ -f $file ]] || return 1
    pid=$(head -n1 "$file" 2>/dev/null || true)
    if pid_matches "$pid" "$pattern"; then
        printf '%s' "$pid"
        return 0
    fi
    return 1
}

# True when something accepts TCP connections on HOST PORT.
port_answers() {
    local host=$1 port=$2
    # shellcheck disable=SC2016 # $1 and $2 are for the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

ensure_state_dirs() {
    mkdir -p "$STATE_DIR" "$LOG_DIR" "$PID_DIR"
}

# Keep the previous run's log as FILE.1 so a fresh start never matches an old readiness line.
rotate_log() {
    local file=$1
    if [[ -s $file ]]; then
        mv -f "$file" "$file.1"
    fi
    : >"$file"
}

# Print why NAME failed and the last 40 lines of its log(s), then exit non-zero.
fail_with_log() {
    local name=$1 reason=$2 file
    shift 2
    printf '%s: ERROR: %s\n' "$name" "$reason" >&2
    for file in "$@"; do
        if [[ -s $file ]]; then
            printf '%s: ---- last 40 lines of %s ----\n' "$name" "$file" >&2
            tail -n 40 "$file" >&2
            printf '%s: ---- end of %s ----\n' "$name" "$file" >&2
        fi
    done
    exit 1
}

# await_ready NAME PID TIMEOUT LOGFILES(colon-separated) CHECK-COMMAND...
# Polls CHECK-COMMAND every POLL_INTERVAL seconds until it succeeds; fails (with the log tails)
# when PID (if non-empty) dies or TIMEOUT seconds pass.
await_ready() {
    local name=$1 pid=$2 timeout=$3 logs=$4 deadline
    shift 4
    local -a log_files
    IFS=: read -r -a log_files <<<"$logs"
    deadline=$(($(now_us) + timeout * 1000000))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if [[ -n $pid ]] && ! pid_alive "$pid"; then
            fail_with_log "$name" "process $pid exited before it was ready" "${log_files[@]}"
        fi
        if (($(now_us) >= deadline)); then
            fail_with_log "$name" "not ready after ${timeout}s" "${log_files[@]}"
        fi
        sleep "$POLL_INTERVAL"
    done
}

# Send SIGTERM to PID, wait up to TIMEOUT seconds for it to exit, then SIGKILL.
stop_pid() {
    local name=$1 pid=$2 timeout=${3:-30} deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$(($(now_us) + timeout * 1000000))
    while pid_alive "$pid"; do
        if (($(now_us) >= deadline)); then
            warn "$name" "pid $pid still alive after ${timeout}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
    done
}

# Launch a long-lived daemon detached from this shell (own session, immune to SIGHUP, stdin from
# /dev/null, output appended to LOGFILE, the services lock fd closed). The daemon itself writes its
# pid to PIDFILE just before exec'ing COMMAND, so the pid is right even when setsid has to fork.
# usage: launch_detached NAME PIDFILE LOGFILE COMMAND...   (prints the pid)
launch_detached() {
    local name=$1 pidfile=$2 log=$3 pid="" deadline
    shift 3
    rm -f "$pidfile"
    # shellcheck disable=SC2016 # $$, $0 and $@ are for the inner shell
    nohup setsid bash -c 'echo "$$" >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' \
        "$pidfile" "$@" </dev/null >>"$log" 2>&1 9>&- &
    deadline=$(($(now_us) + 10 * 1000000))
    until [[ -s $pidfile ]]; do
        if (($(now_us) >= deadline)); then
            fail_with_log "$name" "the process did not record its pid in $pidfile" "$log"
        fi
        sleep 0.05
    done
    pid=$(<"$pidfile")
    printf '%s' "$pid"
}

require_venv_python() {
    local name=$1
    [[ -x $PARLEY_PY ]] || die "$name" "no Python at $PARLEY_PY; create the virtualenv first" \
        "(python -m venv .venv && .venv/bin/pip install -e '.[dev]') or set PARLEY_PYTHON"
}
