# shellcheck shell=bash
# What tests/cluster/cluster.sh and tests/cluster/flux.sh share: detached
# processes with a log and a pid file under $dir, waiting, stopping. The caller
# sets $dir and defines log.

start() { # start NAME CMD...: a detached process with its own log and pid file
  local name=$1; shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$dir/pids/$name"
}

wait_for() { # wait_for SECONDS WHAT CMD...
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then
      log "timed out after ${secs}s waiting for $what; logs in $dir/logs"
      tail -n 20 "$dir"/logs/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

stop_all() { # stop_all: TERM every started process group, KILL what is left after 5 s, remove $dir
  local f pid
  for f in "$dir"/pids/*; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  for f in "$dir"/pids/*; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$dir"
}
