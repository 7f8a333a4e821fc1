# shellcheck shell=bash
# Triton Inference Server (the CPU build with the python backend shipped in the nvidia-pytriton
# wheel) on 127.0.0.1: HTTP 18000, gRPC 18001, metrics 18002; explicit model control, with the
# tiny `parley_health` model loaded at start (sourced by scripts/services.sh).
# Readiness is not strict: /v2/health/ready means "the server answers", whatever other models do
# (they are loaded and unloaded through the repository API); parley_health's readiness is checked
# on its own endpoint.

TRITON_HTTP_PORT="${PARLEY_TRITON_HTTP_PORT:-18000}"
TRITON_GRPC_PORT="${PARLEY_TRITON_GRPC_PORT:-18001}"
TRITON_METRICS_PORT="${PARLEY_TRITON_METRICS_PORT:-18002}"
TRITON_DEFAULT_URL="127.0.0.1:$TRITON_HTTP_PORT"
TRITON_DEFAULT_GRPC_URL="127.0.0.1:$TRITON_GRPC_PORT"
TRITON_DIR="$STATE_DIR/triton"
TRITON_LOG="$LOG_DIR/triton.log"
TRITON_HEALTH_MODEL=parley_health
TRITON_ACTION=""
TRITON_PID=""
TRITON_SITE=""
TRITON_PY_LIBDIR=""
TRITON_PY_VERSION=""
TRITON_HOME=""
TRITON_VENV_BIN=""

triton_external_url() {
    local url=${TRITON_URL:-}
    case "$url" in
    "" | "$TRITON_DEFAULT_URL" | "http://$TRITON_DEFAULT_URL") return 1 ;;
    esac
    printf '%s' "$url"
}

triton_http_base() {
    local url=$1
    [[ $url == *://* ]] || url="http://$url"
    printf '%s' "${url%/}"
}

triton_http_ok() { # triton_http_ok BASE PATH
    curl -sf -o /dev/null --max-time 3 "$1$2"
}

triton_ready_local() {
    triton_http_ok "http://$TRITON_DEFAULT_URL" /v2/health/ready &&
        triton_http_ok "http://$TRITON_DEFAULT_URL" "/v2/models/$TRITON_HEALTH_MODEL/ready"
}

# Locate the tritonserver binary, the venv's site-packages and the libpython the stub must link.
triton_find_paths() {
    local info
    require_venv_python triton
    info=$("$PARLEY_PY" -c 'import sys, sysconfig
print(sysconfig.get_paths()["purelib"])
print(sysconfig.get_config_var("LIBDIR"))
print("%d.%d" % sys.version_info[:2])') || die triton "cannot query $PARLEY_PY"
    {
        read -r TRITON_SITE
        read -r TRITON_PY_LIBDIR
        read -r TRITON_PY_VERSION
    } <<<"$info"
    TRITON_HOME="$TRITON_SITE/pytriton/tritonserver"
    TRITON_VENV_BIN="$(dirname "$PARLEY_PY")"
    [[ -x $TRITON_VENV_BIN/python3 ]] || die triton "no python3 next to $PARLEY_PY (the python backend stub needs it on PATH)"
    [[ -x $TRITON_HOME/bin/tritonserver ]] ||
        die triton "no $TRITON_HOME/bin/tritonserver; install the dev extras (.venv/bin/pip install -e '.[dev]', nvidia-pytriton)"
    [[ -x $TRITON_HOME/python_backend_stubs/$TRITON_PY_VERSION/triton_python_backend_stub ]] ||
        die triton "pytriton ships no python backend stub for Python $TRITON_PY_VERSION"
}

triton_plan() {
    command -v curl >/dev/null || die triton "curl not found; run scripts/install-system.sh"
    if triton_external_url >/dev/null; then
        TRITON_ACTION=external
        return
    fi
    if TRITON_PID=$(read_live_pid triton tritonserver); then
        TRITON_ACTION=reuse
    elif port_answers 127.0.0.1 "$TRITON_HTTP_PORT"; then
        TRITON_ACTION=foreign
    else
        triton_find_paths
        TRITON_ACTION=start
    fi
}

# A copy of the wheel's backends with the python backend stub next to libtriton_python.so
# (quirk 1 in ENVIRONMENT.md); refreshed when the venv's copy changes.
triton_sync_backends() {
    local src="$TRITON_HOME/backends" dst="$TRITON_DIR/backends"
    local stub="$TRITON_HOME/python_backend_stubs/$TRITON_PY_VERSION/triton_python_backend_stub"
    if cmp -s "$stub" "$dst/python/triton_python_backend_stub" &&
        cmp -s "$src/python/libtriton_python.so" "$dst/python/libtriton_python.so"; then
        return 0
    fi
    rm -rf "$dst.tmp"
    cp -a "$src" "$dst.tmp"
    cp "$stub" "$dst.tmp/python/triton_python_backend_stub"
    chmod 755 "$dst.tmp/python/triton_python_backend_stub"
    rm -rf "$dst"
    mv "$dst.tmp" "$dst"
    say triton "prepared $dst (python backend + stub for Python $TRITON_PY_VERSION)"
}

# (Re)install the health model from scripts/services/triton into the model repository.
# Other models in the repository are left alone.
triton_install_model() {
    local src="$SERVICES_LIB_DIR/triton/$TRITON_HEALTH_MODEL" dst="$TRITON_DIR/models/$TRITON_HEALTH_MODEL"
    [[ -f $src/config.pbtxt ]] || die triton "missing $src/config.pbtxt"
    mkdir -p "$TRITON_DIR/models"
    rm -rf "$dst.tmp"
    cp -r "$src" "$dst.tmp"
    find "$dst.tmp" -name __pycache__ -type d -prune -exec rm -rf {} +
    rm -rf "$dst"
    mv "$dst.tmp" "$dst"
}

triton_start() {
    [[ $TRITON_ACTION == start ]] || return 0
    TRITON_STARTED_AT=$(now_us)
    mkdir -p "$TRITON_DIR"
    rotate_log "$TRITON_LOG"
    triton_sync_backends
    triton_install_model
    # Quirk 2 in ENVIRONMENT.md: the stub must link the pyenv libpython that matches the
    # standard library, and models import from the venv's site-packages. The stub's embedded
    # interpreter ignores PYTHONPATH (kept anyway) and finds its prefix by looking `python3` up
    # on PATH, so the venv's bin/ goes first: the stub then runs as the venv's interpreter
    # (its site-packages and .pth files, e.g. the editable parley install).
    TRITON_PID=$(launch_detached triton "$(pid_file triton)" "$TRITON_LOG" \
        env "PATH=$TRITON_VENV_BIN:$PATH" \
        "LD_LIBRARY_PATH=$TRITON_PY_LIBDIR:$TRITON_SITE/nvidia_pytriton.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "PYTHONPATH=$TRITON_SITE" \
        "$TRITON_HOME/bin/tritonserver" \
        --model-repository="$TRITON_DIR/models" \
        --model-control-mode=explicit \
        --load-model="$TRITON_HEALTH_MODEL" \
        --backend-directory="$TRITON_DIR/backends" \
        --http-address=127.0.0.1 --http-port="$TRITON_HTTP_PORT" \
        --grpc-address=127.0.0.1 --grpc-port="$TRITON_GRPC_PORT" \
        --metrics-address=127.0.0.1 --metrics-port="$TRITON_METRICS_PORT" \
        --allow-metrics=true --allow-gpu-metrics=false --pinned-memory-pool-byte-size=0 \
        --strict-readiness=false)
}

# When reusing a server on which the health model is not loaded, (re)install and load it.
triton_ensure_model_loaded() {
    local base="http://$TRITON_DEFAULT_URL"
    triton_http_ok "$base" "/v2/models/$TRITON_HEALTH_MODEL/ready" && return 0
    triton_install_model
    curl -sf -o /dev/null --max-time 60 -X POST "$base/v2/repository/models/$TRITON_HEALTH_MODEL/load" ||
        fail_with_log triton "could not load $TRITON_HEALTH_MODEL through the repository API" "$TRITON_LOG"
    say triton "loaded $TRITON_HEALTH_MODEL"
}

triton_await() {
    local url base
    case "$TRITON_ACTION" in
    external)
        url=$(triton_external_url)
        base=$(triton_http_base "$url")
        triton_http_ok "$base" /v2/health/ready ||
            die triton "TRITON_URL is set ($url) but $base/v2/health/ready does not answer 200"
        say triton "using TRITON_URL from the environment ($url), it is ready; not starting one"
        ;;
    reuse)
        await_ready triton "$TRITON_PID" "$READY_TIMEOUT" "$TRITON_LOG" \
            triton_http_ok "http://$TRITON_DEFAULT_URL" /v2/health/ready
        triton_ensure_model_loaded
        say triton "already running on $TRITON_DEFAULT_URL (pid $TRITON_PID), reusing"
        ;;
    foreign)
        triton_http_ok "http://$TRITON_DEFAULT_URL" /v2/health/ready ||
            die triton "something else listens on $TRITON_DEFAULT_URL and it is not a ready Triton"
        if ! triton_http_ok "http://$TRITON_DEFAULT_URL" "/v2/models/$TRITON_HEALTH_MODEL/ready"; then
            warn triton "the server on $TRITON_DEFAULT_URL (not started by these scripts) has no $TRITON_HEALTH_MODEL loaded"
        fi
        say triton "something already answers on $TRITON_DEFAULT_URL (not started by these scripts), reusing"
        ;;
    start)
        await_ready triton "$TRITON_PID" "$READY_TIMEOUT" "$TRITON_LOG" triton_ready_local
        say triton "started on $TRITON_DEFAULT_URL, gRPC $TRITON_DEFAULT_GRPC_URL (pid $TRITON_PID, model $TRITON_HEALTH_MODEL ready) in $(elapsed_since "$TRITON_STARTED_AT")s"
        ;;
    esac
}

triton_down() {
    local pid
    if pid=$(read_live_pid triton tritonserver); then
        stop_pid triton "$pid" 30
        rm -f "$(pid_file triton)"
        say triton "stopped (pid $pid)"
    else
        rm -f "$(pid_file triton)"
        say triton "not running (nothing started by these scripts), nothing to stop"
    fi
}

triton_status() {
    local pid="" url owner
    if url=$(triton_external_url); then
        if triton_http_ok "$(triton_http_base "$url")" /v2/health/ready; then
            say triton "running (external, TRITON_URL=$url)"
        else
            say triton "NOT ready (external, TRITON_URL=$url)"
            return 1
        fi
        return 0
    fi
    pid=$(read_live_pid triton tritonserver) || pid=""
    if triton_http_ok "http://$TRITON_DEFAULT_URL" /v2/health/ready; then
        owner=${pid:+pid $pid}
        owner=${owner:-not started by these scripts}
        if triton_http_ok "http://$TRITON_DEFAULT_URL" "/v2/models/$TRITON_HEALTH_MODEL/ready"; then
            say triton "running on $TRITON_DEFAULT_URL, gRPC $TRITON_DEFAULT_GRPC_URL, metrics 127.0.0.1:$TRITON_METRICS_PORT ($owner, $TRITON_HEALTH_MODEL ready)"
        else
            say triton "running on $TRITON_DEFAULT_URL ($owner) but $TRITON_HEALTH_MODEL is NOT ready (scripts/services.sh up triton loads it)"
            return 1
        fi
    elif [[ -n $pid ]]; then
        say triton "starting or hung (pid $pid, $TRITON_DEFAULT_URL not ready)"
        return 1
    else
        say triton "stopped"
        return 1
    fi
}

triton_env() {
    local url
    if url=$(triton_external_url); then
        printf 'export TRITON_URL=%q\n' "$url"
        if [[ -n ${TRITON_GRPC_URL:-} ]]; then
            printf 'export TRITON_GRPC_URL=%q\n' "$TRITON_GRPC_URL"
        else
            printf '# triton: TRITON_URL is external and TRITON_GRPC_URL is not set\n'
        fi
    elif port_answers 127.0.0.1 "$TRITON_HTTP_PORT"; then
        printf 'export TRITON_URL=%s\n' "$TRITON_DEFAULT_URL"
        printf 'export TRITON_GRPC_URL=%s\n' "$TRITON_DEFAULT_GRPC_URL"
        printf 'export TRITON_MODEL_REPOSITORY=%q\n' "$TRITON_DIR/models"
    else
        printf '# triton: not running (run make services-up)\n'
    fi
}

triton_logs() { printf '%s\n' "$TRITON_LOG"; }
