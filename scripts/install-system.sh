#!/usr/bin/env bash
# Install what scripts/services.sh needs on this machine; idempotent (a second run only checks).
#   - apt packages when missing: redis-server, postgresql (and curl / java / maven if absent);
#     needs root (otherwise prints the exact command and fails)
#   - the Apache Kafka 3.9.1 broker jars, resolved from Maven Central with
#     scripts/services/kafka-pom.xml into ${PARLEY_CACHE_DIR:-$HOME/.cache/parley}/kafka-3.9.1/libs
#     (Maven's own cache, ~/.m2, is reused)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CACHE_DIR="${PARLEY_CACHE_DIR:-$HOME/.cache/parley}"
KAFKA_VERSION=3.9.1
KAFKA_HOME="$CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_POM="$SCRIPT_DIR/services/kafka-pom.xml"
PARLEY_PY="${PARLEY_PYTHON:-$REPO_ROOT/.venv/bin/python}"

say() { printf 'install-system: %s\n' "$*"; }
die() {
    printf 'install-system: ERROR: %s\n' "$*" >&2
    exit 1
}

dpkg_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

have_postgres_server() {
    compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null
}

# The apt packages this machine still lacks.
missing_packages() {
    local -a missing=()
    if ! dpkg_installed redis-server || ! command -v redis-server >/dev/null; then
        missing+=(redis-server)
    fi
    if ! dpkg_installed postgresql || ! have_postgres_server; then
        missing+=(postgresql)
    fi
    command -v curl >/dev/null || missing+=(curl)
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    # `parley visualize` lays graphs out with Graphviz; browser tests drive Debian's Chromium.
    command -v dot >/dev/null || missing+=(graphviz)
    command -v chromium >/dev/null || missing+=(chromium)
    printf '%s\n' "${missing[@]}"
}

install_apt_packages() {
    local -a missing
    mapfile -t missing < <(missing_packages | sed '/^$/d')
    if ((${#missing[@]} == 0)); then
        say "apt: redis-server, postgresql, curl, java, maven, graphviz and chromium already installed, skipping"
        return 0
    fi
    if [[ $EUID -ne 0 ]]; then
        die "missing apt packages: ${missing[*]}; as root run: apt-get update && apt-get install -y ${missing[*]}"
    fi
    command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
    say "apt: installing ${missing[*]} (apt-get update, then apt-get install -y)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install -y ${missing[*]} failed"
    say "apt: installed ${missing[*]}"
}

pom_checksum() { sha256sum "$KAFKA_POM" | cut -d' ' -f1; }

install_kafka_jars() {
    local stamp="$KAFKA_HOME/.complete" tmp
    [[ -f $KAFKA_POM ]] || die "missing $KAFKA_POM"
    if [[ -f $stamp && $(<"$stamp") == "$(pom_checksum)" && -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]]; then
        say "kafka: jars already in $KAFKA_LIBS, skipping"
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (apt-get install -y maven)"
    say "kafka: resolving Apache Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIBS"
    mkdir -p "$KAFKA_HOME"
    tmp="$KAFKA_HOME/libs.tmp"
    rm -rf "$tmp" "$stamp"
    # Maven runs on a copy of the pom inside the cache, so nothing (target/) lands in the repo.
    cp "$KAFKA_POM" "$KAFKA_HOME/pom.xml"
    if ! mvn -B -q -f "$KAFKA_HOME/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/mvn.log" 2>&1; then
        tail -n 40 "$KAFKA_HOME/mvn.log" >&2
        die "mvn dependency:copy-dependencies failed (log: $KAFKA_HOME/mvn.log)"
    fi
    [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "Maven finished but kafka_2.13-$KAFKA_VERSION.jar is missing"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    pom_checksum >"$stamp"
    say "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS"
}

check_venv() {
    if [[ -x $PARLEY_PY ]] && "$PARLEY_PY" -c 'import aiokafka, pytriton, tritonclient' 2>/dev/null; then
        say "python: $PARLEY_PY has aiokafka, pytriton and tritonclient"
    else
        say "python: WARNING $PARLEY_PY lacks the dev extras; scripts/services.sh needs them:" \
            "python -m venv .venv && .venv/bin/pip install -e '.[dev]'"
    fi
}

main() {
    install_apt_packages
    install_kafka_jars
    check_venv
}

main "$@"
