#!/usr/bin/env bash
# The whole suite, unit and integration, against real services started here; afterwards it
# stops only the services that were not already running when it began.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

running_before=()
for name in kafka redis postgres triton; do
    if scripts/services.sh status "$name" >/dev/null 2>&1; then running_before+=("$name"); fi
done

stop_started() {
    local name to_stop=()
    for name in kafka redis postgres triton; do
        if [[ " ${running_before[*]-} " != *" $name "* ]]; then to_stop+=("$name"); fi
    done
    if ((${#to_stop[@]})); then scripts/services.sh down "${to_stop[@]}" || true; fi
}
trap stop_started EXIT

scripts/services.sh up
eval "$(scripts/services.sh env)"
mkdir -p test-artifacts
status=0
.venv/bin/python -m pytest --junitxml=test-artifacts/junit.xml "$@" || status=$?
exit "$status"
