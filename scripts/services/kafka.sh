# shellcheck shell=bash
# Apache Kafka 3.9.1 in KRaft mode, one combined broker/controller node on 127.0.0.1:19092
# (controller 127.0.0.1:19093), run from the jars scripts/install-system.sh resolved with Maven
# (sourced by scripts/services.sh).

KAFKA_VERSION=3.9.1
KAFKA_PORT="${PARLEY_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${PARLEY_KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_DEFAULT_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
KAFKA_HEAP_OPTS="${PARLEY_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
KAFKA_DIR="$STATE_DIR/kafka"
KAFKA_LOG="$LOG_DIR/kafka.log"
KAFKA_STDOUT="$LOG_DIR/kafka.stdout.log"
KAFKA_ACTION=""
KAFKA_PID=""

kafka_external_bootstrap() {
    local servers=${KAFKA_BOOTSTRAP_SERVERS:-}
    case "$servers" in
    "" | "$KAFKA_DEFAULT_BOOTSTRAP") return 1 ;;
    esac
    printf '%s' "$servers"
}

# kafka_metadata_ok BOOTSTRAP TIMEOUT [PID]: a real metadata round trip through aiokafka.
kafka_metadata_ok() {
    local bootstrap=$1 timeout=$2 pid=${3:-0}
    "$PARLEY_PY" "$SERVICES_LIB_DIR/kafka_ready.py" --bootstrap "$bootstrap" --timeout "$timeout" --pid "$pid"
}

kafka_java() {
    java -cp "$KAFKA_LIBS/*" "$@"
}

kafka_plan() {
    local servers
    require_venv_python kafka
    if servers=$(kafka_external_bootstrap); then
        KAFKA_ACTION=external
        return
    fi
    if KAFKA_PID=$(read_live_pid kafka kafka.Kafka); then
        KAFKA_ACTION=reuse
    elif port_answers 127.0.0.1 "$KAFKA_PORT"; then
        KAFKA_ACTION=foreign
    else
        command -v java >/dev/null || die kafka "java not found; run scripts/install-system.sh"
        [[ -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]] ||
            die kafka "Kafka jars missing in $KAFKA_LIBS; run scripts/install-system.sh"
        KAFKA_ACTION=start
    fi
}

kafka_write_config() {
    mkdir -p "$KAFKA_DIR/data"
    cat >"$KAFKA_DIR/server.properties" <<PROPS
# Written by scripts/services/kafka.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=104857600
PROPS
    cat >"$KAFKA_DIR/log4j.properties" <<LOG4J
# Written by scripts/services/kafka.sh: INFO and above to $KAFKA_LOG.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$KAFKA_LOG
log4j.appender.file.Append=true
log4j.appender.file.MaxFileSize=50MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.clients=WARN
LOG4J
    cat >"$KAFKA_DIR/tools-log4j.properties" <<LOG4J
# Written by scripts/services/kafka.sh: the storage tool logs warnings to stderr only.
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
LOG4J
}

# Format the KRaft log directory once (a meta.properties there means it was formatted).
kafka_format_once() {
    local cluster_id out
    [[ -f $KAFKA_DIR/data/meta.properties ]] && return 0
    cluster_id=$(kafka_java -Dlog4j.configuration="file:$KAFKA_DIR/tools-log4j.properties" \
        kafka.tools.StorageTool random-uuid 2>>"$KAFKA_STDOUT") ||
        fail_with_log kafka "StorageTool random-uuid failed" "$KAFKA_STDOUT"
    out=$(kafka_java -Dlog4j.configuration="file:$KAFKA_DIR/tools-log4j.properties" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" 2>&1) || {
        printf '%s\n' "$out" >>"$KAFKA_STDOUT"
        fail_with_log kafka "StorageTool format failed" "$KAFKA_STDOUT"
    }
    say kafka "formatted a new KRaft log directory (cluster id $cluster_id)"
}

kafka_start() {
    [[ $KAFKA_ACTION == start ]] || return 0
    local -a heap
    KAFKA_STARTED_AT=$(now_us)
    mkdir -p "$KAFKA_DIR"
    rotate_log "$KAFKA_LOG"
    rotate_log "$KAFKA_STDOUT"
    kafka_write_config
    kafka_format_once
    read -r -a heap <<<"$KAFKA_HEAP_OPTS"
    KAFKA_PID=$(launch_detached kafka "$(pid_file kafka)" "$KAFKA_STDOUT" \
        java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" -Dkafka.logs.dir="$LOG_DIR" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties")
}

kafka_log_says_started() { grep -q 'Kafka Server started' "$KAFKA_LOG"; }

# Remaining seconds of the overall readiness budget that began at STARTED_AT.
kafka_remaining() {
    local left=$((READY_TIMEOUT - ($(now_us) - $1) / 1000000))
    ((left < 5)) && left=5
    printf '%s' "$left"
}

kafka_await() {
    local servers
    case "$KAFKA_ACTION" in
    external)
        servers=$(kafka_external_bootstrap)
        kafka_metadata_ok "$servers" 15 >/dev/null ||
            die kafka "KAFKA_BOOTSTRAP_SERVERS is set ($servers) but no metadata comes back from it"
        say kafka "using KAFKA_BOOTSTRAP_SERVERS from the environment ($servers), it answers; not starting one"
        ;;
    reuse)
        kafka_metadata_ok "$KAFKA_DEFAULT_BOOTSTRAP" "$READY_TIMEOUT" "$KAFKA_PID" >/dev/null 2>&1 ||
            fail_with_log kafka "running (pid $KAFKA_PID) but no metadata after ${READY_TIMEOUT}s" "$KAFKA_LOG" "$KAFKA_STDOUT"
        say kafka "already running on $KAFKA_DEFAULT_BOOTSTRAP (pid $KAFKA_PID), reusing"
        ;;
    foreign)
        kafka_metadata_ok "$KAFKA_DEFAULT_BOOTSTRAP" 15 >/dev/null 2>&1 ||
            die kafka "something else listens on $KAFKA_DEFAULT_BOOTSTRAP and it does not answer as Kafka"
        say kafka "something already answers on $KAFKA_DEFAULT_BOOTSTRAP (not started by these scripts), reusing"
        ;;
    start)
        await_ready kafka "$KAFKA_PID" "$READY_TIMEOUT" "$KAFKA_LOG:$KAFKA_STDOUT" kafka_log_says_started
        local rc=0
        kafka_metadata_ok "$KAFKA_DEFAULT_BOOTSTRAP" "$(kafka_remaining "$KAFKA_STARTED_AT")" "$KAFKA_PID" \
            >/dev/null 2>>"$KAFKA_STDOUT" || rc=$?
        if ((rc == 2)); then
            fail_with_log kafka "process $KAFKA_PID exited before it answered metadata" "$KAFKA_LOG" "$KAFKA_STDOUT"
        elif ((rc != 0)); then
            fail_with_log kafka "no metadata from $KAFKA_DEFAULT_BOOTSTRAP within ${READY_TIMEOUT}s" "$KAFKA_LOG" "$KAFKA_STDOUT"
        fi
        say kafka "started on $KAFKA_DEFAULT_BOOTSTRAP (pid $KAFKA_PID) in $(elapsed_since "$KAFKA_STARTED_AT")s"
        ;;
    esac
}

kafka_down() {
    local pid
    if pid=$(read_live_pid kafka kafka.Kafka); then
        # A controlled shutdown of a single node takes a few seconds.
        stop_pid kafka "$pid" 60
        rm -f "$(pid_file kafka)"
        say kafka "stopped (pid $pid)"
    else
        rm -f "$(pid_file kafka)"
        say kafka "not running (nothing started by these scripts), nothing to stop"
    fi
}

kafka_status() {
    local pid servers
    if servers=$(kafka_external_bootstrap); then
        if kafka_metadata_ok "$servers" 5 >/dev/null 2>&1; then
            say kafka "running (external, KAFKA_BOOTSTRAP_SERVERS=$servers)"
        else
            say kafka "NOT answering (external, KAFKA_BOOTSTRAP_SERVERS=$servers)"
            return 1
        fi
    elif pid=$(read_live_pid kafka kafka.Kafka) && port_answers 127.0.0.1 "$KAFKA_PORT"; then
        say kafka "running on $KAFKA_DEFAULT_BOOTSTRAP (pid $pid)"
    elif port_answers 127.0.0.1 "$KAFKA_PORT"; then
        say kafka "something listens on $KAFKA_DEFAULT_BOOTSTRAP (not started by these scripts)"
    elif pid=$(read_live_pid kafka kafka.Kafka); then
        say kafka "starting or hung (pid $pid, $KAFKA_DEFAULT_BOOTSTRAP not answering)"
        return 1
    else
        say kafka "stopped"
        return 1
    fi
}

kafka_env() {
    local servers
    if servers=$(kafka_external_bootstrap); then
        printf 'export KAFKA_BOOTSTRAP_SERVERS=%q\n' "$servers"
    elif port_answers 127.0.0.1 "$KAFKA_PORT"; then
        printf 'export KAFKA_BOOTSTRAP_SERVERS=%s\n' "$KAFKA_DEFAULT_BOOTSTRAP"
    else
        printf '# kafka: not running (run make services-up)\n'
    fi
}

kafka_logs() { printf '%s\n%s\n' "$KAFKA_LOG" "$KAFKA_STDOUT"; }
