#!/usr/bin/env bash
# run.sh -- the local runner behind `make run` / `make stop`: the whole Tether
# suite on one machine, on loopback, with the default ports of docs/operations.md.
#
#   deploy/local/run.sh start    dev secrets, Redis (AOF), busd, replayd,
#                                sessiond, mediad (those built), gateway, and a
#                                supervisor that restarts a daemon that exits
#                                or stops answering /healthz (as a kubelet
#                                would), with backoff; returns to the shell
#   deploy/local/run.sh stop     supervisor first, then the daemons (SIGTERM,
#                                SIGKILL after a deadline), then our Redis
#   deploy/local/run.sh status   what runs
#
# State lives in run/ (git-ignored): run/dev-secret (JWT), run/bus-secret
# (the bus's CURVE secret, given to every daemon), run/logs/<name>.log,
# run/pids/<name>.pid, run/redis/ (Redis data). TETHER_* variables in the
# environment are passed through (TETHER_REDIS also picks the Redis port);
# each daemon's HTTP address can be moved with TETHER_<NAME>_HTTP, e.g.
# TETHER_GATEWAY_HTTP=127.0.0.1:8081.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
RUN=$ROOT/run
LOGS=$RUN/logs
PIDS=$RUN/pids
BIN=$ROOT/${TETHER_BUILD:-build}/bin
SECRET_FILE=$RUN/dev-secret
BUS_SECRET_FILE=$RUN/bus-secret
ORDER=(busd replayd sessiond mediad gateway)
STOP_DEADLINE_S=${TETHER_STOP_DEADLINE_S:-15}
HEALTH_EVERY_S=5        # liveness probe period
HEALTH_FAILS=3          # consecutive failures before a restart
BACKOFF_MAX_S=30
STABLE_S=60             # a daemon up this long gets its backoff reset

declare -A DEFAULT_HTTP=(
  [gateway]=127.0.0.1:8080 [busd]=127.0.0.1:9100 [replayd]=127.0.0.1:9101
  [sessiond]=127.0.0.1:9102 [mediad]=127.0.0.1:9103
)

say() { printf '%s\n' "$*"; }
log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

http_addr() {
  local var="TETHER_${1^^}_HTTP"
  echo "${!var:-${DEFAULT_HTTP[$1]}}"
}

# http_status host:port path -> prints the HTTP status code (000 if none)
http_status() {
  local hp=$1 path=$2
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$hp$path" 2>/dev/null || true
    return
  fi
  # shellcheck disable=SC2016  # the inner script expands its own arguments
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$1" >&3
    read -r _ code _ <&3 && echo "$code"' _ "$hp" "$path" 2>/dev/null || echo 000
}

# pid_alive <pid> [name]: running, not a zombie, and (if given) the right program
pid_alive() {
  local pid=$1 name=${2:-}
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 1
  [ -z "$name" ] || tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

built() { [ -x "$BIN/$1" ]; }

# ---- Redis -----------------------------------------------------------------------
redis_port() {
  local url=${TETHER_REDIS:-redis://127.0.0.1:6379/0} hp
  hp=${url#redis://}; hp=${hp%%/*}; hp=${hp##*@}
  case $hp in *:*) echo "${hp##*:}" ;; *) echo 6379 ;; esac
}

redis_host() {
  local url=${TETHER_REDIS:-redis://127.0.0.1:6379/0} hp
  hp=${url#redis://}; hp=${hp%%/*}; hp=${hp##*@}
  echo "${hp%:*}"
}

redis_ping() {
  local host=$1 port=$2
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(timeout 2 redis-cli -h "$host" -p "$port" ping 2>/dev/null)" = PONG ]
  else
    # shellcheck disable=SC2016  # the inner script expands its own arguments
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && read -r r <&3 && [ "${r%$'"'\r'"'}" = "+PONG" ]' _ "$host" "$port" 2>/dev/null
  fi
}

start_redis() {
  local host port
  case ${TETHER_REDIS:-redis://} in
    redis://*@*|rediss://*|redis+sentinel://*)
      say "redis:    TETHER_REDIS uses AUTH, TLS or Sentinel: not started or checked here"
      return ;;
  esac
  host=$(redis_host) port=$(redis_port)
  if redis_ping "$host" "$port"; then
    if pid_alive "$(pid_of redis)" redis-server; then
      say "redis:    ours, already running on $host:$port (pid $(pid_of redis))"
    else
      rm -f "$PIDS/redis.pid"
      say "redis:    reusing the Redis already answering on $host:$port (not started here; make stop leaves it running)"
    fi
    return
  fi
  case $host in
    127.0.0.1|localhost) ;;
    *) say "redis:    $host:$port does not answer and is not local: start it, or set TETHER_REDIS" >&2; exit 1 ;;
  esac
  command -v redis-server >/dev/null || { say "redis-server not installed (make bootstrap)" >&2; exit 1; }
  mkdir -p "$RUN/redis"
  setsid redis-server --port "$port" --bind 127.0.0.1 --dir "$RUN/redis" \
    --appendonly yes --maxmemory-policy noeviction --daemonize no --logfile "$LOGS/redis.log" </dev/null >/dev/null 2>&1 &
  echo $! >"$PIDS/redis.pid"
  local deadline=$((SECONDS + 10))
  until redis_ping 127.0.0.1 "$port"; do
    if ! pid_alive "$(pid_of redis)"; then
      say "redis-server exited; see $LOGS/redis.log:" >&2; tail -5 "$LOGS/redis.log" >&2; exit 1
    fi
    [ $SECONDS -lt $deadline ] || { say "redis-server not answering after 10 s" >&2; exit 1; }
    sleep 0.1
  done
  say "redis:    started on 127.0.0.1:$port (appendonly, data in run/redis, pid $(pid_of redis))"
}

# ---- daemons (run by the supervisor) --------------------------------------------
launch() {
  local d=$1 secret=${TETHER_JWT_SECRET:-}
  log "supervisor: starting $d (TETHER_HTTP=$(http_addr "$d"))"
  # Every daemon gets the bus secret (CURVE), unless the environment brings one.
  if [ -z "${TETHER_BUS_SECRET:-}" ] && [ -z "${TETHER_BUS_SECRET_FILE:-}" ]; then
    export TETHER_BUS_SECRET_FILE=$BUS_SECRET_FILE
  fi
  # Only the gateway checks tokens, so only it gets the secret.
  [ "$d" = gateway ] && [ -z "$secret" ] && secret=$(cat "$SECRET_FILE")
  if [ "$d" = gateway ]; then
    # The web console from web/, and its dev-only token endpoint (local runner only).
    TETHER_HTTP=$(http_addr "$d") TETHER_JWT_SECRET=$secret \
      TETHER_WEB_ROOT=${TETHER_WEB_ROOT:-$ROOT/web} TETHER_DEV_TOKENS=${TETHER_DEV_TOKENS:-1} \
      setsid "$BIN/$d" </dev/null >>"$LOGS/$d.log" 2>&1 &
  else
    TETHER_HTTP=$(http_addr "$d") setsid "$BIN/$d" </dev/null >>"$LOGS/$d.log" 2>&1 &
  fi
  echo $! >"$PIDS/$d.pid"
}

supervise() {
  set +e          # the supervisor must outlive any failing command
  echo $$ >"$PIDS/supervisor.pid"
  trap 'log "supervisor: stopping (daemons keep running)"; rm -f "$PIDS/supervisor.pid"; exit 0' TERM INT
  declare -A backoff next_start started fails last_probe restarts
  local d now pid
  for d in "${ORDER[@]}"; do
    built "$d" || continue
    backoff[$d]=1; next_start[$d]=0; fails[$d]=0; last_probe[$d]=0
    restarts[$d]=$(cat "$PIDS/$d.restarts" 2>/dev/null || echo 0)
    if pid_alive "$(pid_of "$d")" "$d"; then
      log "supervisor: adopting running $d (pid $(pid_of "$d"))"
      started[$d]=$SECONDS
    else
      launch "$d"; started[$d]=$SECONDS
    fi
  done
  log "supervisor: watching ${!backoff[*]}"
  while :; do
    now=$SECONDS
    for d in "${!backoff[@]}"; do
      pid=$(pid_of "$d")
      if [ -n "$pid" ] && pid_alive "$pid"; then
        if [ $((now - started[$d])) -ge $STABLE_S ]; then backoff[$d]=1; fi
        if [ $((now - last_probe[$d])) -ge $HEALTH_EVERY_S ] && [ $((now - started[$d])) -ge $HEALTH_EVERY_S ]; then
          last_probe[$d]=$now
          if [ "$(http_status "$(http_addr "$d")" /healthz)" = 200 ]; then
            fails[$d]=0
          else
            fails[$d]=$((fails[$d] + 1))
            log "supervisor: $d /healthz failed (${fails[$d]}/$HEALTH_FAILS)"
            if [ "${fails[$d]}" -ge $HEALTH_FAILS ]; then
              log "supervisor: $d unhealthy, killing pid $pid"
              kill -KILL "$pid" 2>/dev/null || true
            fi
          fi
        fi
        continue
      fi
      # Not running: reap it if it is our child, then restart after the backoff.
      if [ -n "$pid" ]; then
        local status=0
        wait "$pid" 2>/dev/null || status=$?
        log "supervisor: $d (pid $pid) exited (status $status); restart in ${backoff[$d]} s"
        : >"$PIDS/$d.pid"
        next_start[$d]=$((now + backoff[$d]))
        backoff[$d]=$((backoff[$d] * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : backoff[$d] * 2))
      fi
      if [ "$now" -ge "${next_start[$d]}" ]; then
        restarts[$d]=$((restarts[$d] + 1)); echo "${restarts[$d]}" >"$PIDS/$d.restarts"
        launch "$d"; started[$d]=$now; fails[$d]=0
      fi
    done
    sleep 1 &       # the supervisor's tick (a runner, not a test: a plain period)
    wait $! || true
  done
}

# ---- commands ----------------------------------------------------------------------
cmd_start() {
  mkdir -p "$LOGS" "$PIDS"
  if pid_alive "$(pid_of supervisor)" run.sh; then
    say "already running (supervisor pid $(pid_of supervisor)):"
    cmd_status
    return 0
  fi
  if ! built gateway; then
    say "build/bin/gateway is not built: run make first" >&2
    exit 1
  fi
  if [ ! -s "$SECRET_FILE" ]; then
    (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SECRET_FILE")
    chmod 600 "$SECRET_FILE"
    say "secret:   generated run/dev-secret (HS256, mode 600)"
  fi
  if [ ! -s "$BUS_SECRET_FILE" ]; then
    (umask 077; head -c 32 /dev/urandom | base64 >"$BUS_SECRET_FILE")
    chmod 600 "$BUS_SECRET_FILE"
    say "secret:   generated run/bus-secret (bus CURVE keys, mode 600)"
  fi
  start_redis
  setsid bash "$0" __supervise </dev/null >>"$LOGS/supervisor.log" 2>&1 &
  local deadline=$((SECONDS + 20)) d waiting
  while :; do
    waiting=()
    for d in "${ORDER[@]}"; do
      built "$d" || continue
      [ "$(http_status "$(http_addr "$d")" /healthz)" = 200 ] || waiting+=("$d")
    done
    [ ${#waiting[@]} -eq 0 ] && break
    if [ $SECONDS -ge $deadline ]; then
      say "not healthy after 20 s: ${waiting[*]} (the supervisor keeps trying; logs in run/logs/)" >&2
      for d in "${waiting[@]}"; do say "--- $d:" >&2; tail -5 "$LOGS/$d.log" 2>/dev/null >&2 || true; done
      break
    fi
    sleep 0.2
  done
  cmd_status
  local gw
  gw=$(http_addr gateway)
  cat <<EOF

Tether is running (logs: run/logs/, pids: run/pids/).
  HTTP:       http://$gw/
  WebSocket:  ws://$gw/ws
  A token:    build/bin/tether token alice     (signed with run/dev-secret)
  Stop:       make stop
EOF
}

stop_pid() {       # stop_pid <name> <pid> <deadline-seconds>
  local name=$1 pid=$2 deadline=$((SECONDS + $3))
  kill -TERM "$pid" 2>/dev/null || return 0
  while pid_alive "$pid"; do
    if [ $SECONDS -ge $deadline ]; then
      say "$name: still running after $3 s, SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
}

cmd_stop() {
  local pid d pids=() names=()
  pid=$(pid_of supervisor)
  if pid_alive "$pid" run.sh; then
    stop_pid supervisor "$pid" 5
    say "supervisor stopped"
  fi
  rm -f "$PIDS/supervisor.pid"
  # SIGTERM every daemon at once (gateway drains), then wait for them all.
  for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
    d=${ORDER[$i]}
    pid=$(pid_of "$d")
    if pid_alive "$pid" "$d"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$d")
    fi
    rm -f "$PIDS/$d.pid" "$PIDS/$d.restarts"
  done
  local deadline=$((SECONDS + STOP_DEADLINE_S)) k
  for k in "${!pids[@]}"; do
    while pid_alive "${pids[$k]}"; do
      if [ $SECONDS -ge $deadline ]; then
        say "${names[$k]}: still running after ${STOP_DEADLINE_S} s, SIGKILL"
        kill -KILL "${pids[$k]}" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
    say "${names[$k]} stopped"
  done
  pid=$(pid_of redis)
  if pid_alive "$pid" redis-server; then
    stop_pid redis "$pid" 10
    say "redis stopped (data kept in run/redis)"
  fi
  rm -f "$PIDS/redis.pid"
  [ ${#pids[@]} -gt 0 ] || say "no daemons were running"
}

cmd_status() {
  local d pid hp code line
  pid=$(pid_of supervisor)
  if pid_alive "$pid" run.sh; then say "supervisor: running (pid $pid)"; else say "supervisor: not running"; fi
  for d in "${ORDER[@]}"; do
    if ! built "$d"; then
      printf '%-10s not built\n' "$d:"
      continue
    fi
    pid=$(pid_of "$d") hp=$(http_addr "$d")
    if pid_alive "$pid" "$d"; then
      code=$(http_status "$hp" /healthz); line="running (pid $pid), http $hp, /healthz $code"
      [ "$code" = 200 ] && line+=", /readyz $(http_status "$hp" /readyz)"
    else
      line="not running"
    fi
    local r; r=$(cat "$PIDS/$d.restarts" 2>/dev/null || echo 0)
    [ "$r" -gt 0 ] && line+=", restarts $r"
    printf '%-10s %s\n' "$d:" "$line"
  done
  pid=$(pid_of redis)
  if pid_alive "$pid" redis-server; then
    say "redis:     running (pid $pid), port $(redis_port), ours"
  elif redis_ping "$(redis_host)" "$(redis_port)"; then
    say "redis:     answering on $(redis_host):$(redis_port), not started by us"
  else
    say "redis:     not running"
  fi
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  __supervise) supervise ;;
  *) say "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
