#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Start and stop the real local services the integration tests use: Kafka, Redis, PostgreSQL and
# Triton, on loopback only, with their state under ${PARLEY_STATE_DIR:-<repo>/.parley/services}.
#
#   scripts/services.sh up [kafka redis postgres triton]    start (default: all four), await ready
#   scripts/services.sh down [names]                       stop what these scripts started
#   scripts/services.sh status [names]                     one line each; exit 3 if any is down
#   scripts/services.sh env                                export lines for the running services
#   scripts/services.sh logs NAME [-f]                     last 200 lines of NAME's log (-f: follow)
#
# A service whose URL is already set in the environment (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL,
# DATABASE_URL, TRITON_URL) to something other than the defaults below is used as is, not started.
# Defaults: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092  REDIS_URL=redis://127.0.0.1:16379/0
#           DATABASE_URL=postgresql+asyncpg://parley@127.0.0.1:15432/parley
#           TRITON_URL=127.0.0.1:18000  TRITON_GRPC_URL=127.0.0.1:18001 (metrics on 18002)
# Prerequisites: scripts/install-system.sh (apt packages, Kafka jars) and the .venv (dev extras).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=services/common.sh
source "$SCRIPT_DIR/services/common.sh"
# shellcheck source=services/kafka.sh
source "$SCRIPT_DIR/services/kafka.sh"
# shellcheck source=services/redis.sh
source "$SCRIPT_DIR/services/redis.sh"
# shellcheck source=services/postgres.sh
source "$SCRIPT_DIR/services/postgres.sh"
# shellcheck source=services/triton.sh
source "$SCRIPT_DIR/services/triton.sh"

usage() {
    sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

# Validate service names into SELECTED (all four when none given).
SELECTED=()
select_services() {
    local name
    SELECTED=()
    if (($# == 0)); then
        SELECTED=("${ALL_SERVICES[@]}")
        return
    fi
    for name in "$@"; do
        in_list "$name" "${ALL_SERVICES[@]}" || die services "unknown service '$name' (known: ${ALL_SERVICES[*]})"
        in_list "$name" "${SELECTED[@]}" || SELECTED+=("$name")
    done
}

in_list() { # in_list NEEDLE ITEMS...
    local needle=$1 item
    shift
    for item in "$@"; do
        [[ $item == "$needle" ]] && return 0
    done
    return 1
}

# Serialise up/down so two concurrent runs do not both start a service.
take_lock() {
    ensure_state_dirs
    exec 9>"$STATE_DIR/.lock"
    if ! flock -n 9; then
        say services "another scripts/services.sh up/down is running; waiting for it"
        flock -w 300 9 || die services "timed out waiting for $STATE_DIR/.lock"
    fi
}

cmd_up() {
    local -a names
    local name begin
    select_services "$@"
    names=("${SELECTED[@]}")
    begin=$(now_us)
    take_lock
    # Check everything first, so a missing prerequisite fails before anything starts.
    for name in "${names[@]}"; do "${name}_plan"; done
    # Launch the slow ones first so they boot in parallel (postgres's start waits for it), then
    # await each one's real readiness, quickest first.
    for name in kafka triton postgres redis; do
        if in_list "$name" "${names[@]}"; then "${name}_start"; fi
    done
    for name in redis postgres triton kafka; do
        if in_list "$name" "${names[@]}"; then "${name}_await"; fi
    done
    say services "up: ${names[*]} ready in $(elapsed_since "$begin")s (state in $STATE_DIR)"
}

cmd_down() {
    local -a names
    local name
    select_services "$@"
    names=("${SELECTED[@]}")
    if [[ ! -d $STATE_DIR ]]; then
        say services "nothing to stop ($STATE_DIR does not exist)"
        return 0
    fi
    take_lock
    for name in "${names[@]}"; do "${name}_down"; done
}

cmd_status() {
    local -a names
    local name rc=0
    select_services "$@"
    names=("${SELECTED[@]}")
    for name in "${names[@]}"; do
        "${name}_status" || rc=3
    done
    return "$rc"
}

cmd_env() {
    local name
    for name in "${ALL_SERVICES[@]}"; do "${name}_env"; done
}

cmd_logs() {
    local name=${1:-} follow=${2:-} file
    local -a files
    [[ -n $name ]] || die services "usage: scripts/services.sh logs NAME [-f]  (NAME: ${ALL_SERVICES[*]})"
    select_services "$name"
    mapfile -t files < <("${name}_logs")
    if [[ $follow == -f ]]; then
        exec tail -n 50 -F "${files[@]}"
    fi
    for file in "${files[@]}"; do
        if [[ -f $file ]]; then
            printf '==> %s <==\n' "$file"
            tail -n "${PARLEY_LOG_LINES:-200}" "$file"
        else
            printf '==> %s (no log yet) <==\n' "$file"
        fi
    done
}

main() {
    local cmd=${1:-}
    (($# > 0)) && shift
    case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env ;;
    logs) cmd_logs "$@" ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
