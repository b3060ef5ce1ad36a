#!/usr/bin/env bash
# Siesta's proxy against nginx and HAProxy, in front of the same backend, on loopback.
#
#   benches/proxy.sh            (run by `make bench`; needs nginx, haproxy, wrk,
#                                h2load, openssl, python3: tests/deps.sh)
#
# BENCH_PARTS (default "http1 https h2 held held-peer upload") picks what runs:
#   http1  wrk -> {nginx, haproxy, siesta} -> backend, HTTP/1.1 keep-alive;
#          "counted" is Siesta on a route with a namespace (every request is
#          recorded as activity)
#   https  the same with TLS terminated by each proxy (a self-signed cert)
#   h2     h2load -> proxy, HTTP/2 by prior knowledge (h2c); HTTP/1.1 upstream
#   held   requests held for 10 sleeping namespaces (needs the local cluster):
#          RSS of a fresh Siesta and kernel socket memory per held request,
#          HTTP/1.1 and HTTP/2, without and with bodies (benches/hold.py)
#   held-peer  after each held line, the same requests held by a fresh nginx
#          (benches/nginx-held.conf: limit_req's delay, the nginx way to make a
#          request wait before it is proxied), and Siesta's RSS over nginx's
#   upload forwarded request bodies (BENCH_UPLOADS of BENCH_UPLOAD_MIB MiB)
#          through a fresh Siesta to benches/sink.py, which reads each whole:
#          HTTP/1.1, one HTTP/2 stream at a time, and 8 streams on one
#          connection (h2load -d); what the HTTP/2 windows allow
# The load parts run as phases (each BENCH_SECS, default 5 s, after a 2 s
# warm-up) in ROUNDS rounds (default 9). The phases run back to back in each
# round, in the opposite order the next round, so that a slower or faster
# stretch of the machine hits every proxy alike. Every round gives its own
# ratios (Siesta over each peer); the report is the best round of each phase
# and the median of those ratios (see below). "direct" (wrk -> backend) opens
# each round: the latency baseline for the added p99.
#
# Fairness: the backend is nginx `return 200` (1 worker). Every proxy gets
# WORKERS (SIESTA_THREADS, default 1) workers: nginx `worker_processes`,
# HAProxy `nbthread`, Siesta `--workers`; on a machine of two cores or more
# the proxy under test has the last core to itself (taskset) while the load
# and the backend share the others, so that the measure is of the proxy, not
# of where the scheduler happened to put three busy processes
# (SIESTA_BENCH_PIN=0: no pinning, everything shares every core). Both peers
# keep upstream connections alive (benches/nginx.conf, benches/haproxy.cfg),
# log nothing, set the same X-Forwarded-* headers, and no proxy limits
# requests per connection.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECS:-5}
rounds=${ROUNDS:-9}
conns=${BENCH_CONNS:-64}
h2_conns=${BENCH_H2_CONNS:-8}     # h2load -c; times -m: as many requests in flight as wrk's
h2_streams=${BENCH_H2_STREAMS:-8} # h2load -m
held=${BENCH_HELD:-10000}
body=${BENCH_HELD_BODY:-65536}
parts=" ${BENCH_PARTS:-http1 https h2 held held-peer upload} "
workers=${SIESTA_THREADS:-1}
target=${CARGO_TARGET_DIR:-target}
siesta=${SIESTA_BIN:-$target/release/siesta}
[ -x "$siesta" ] || cargo build --release --locked --bin siesta
nginx=$(command -v nginx || echo /usr/sbin/nginx)
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
want() { [[ $parts == *" $1 "* ]]; }
need=("$nginx" "$haproxy" wrk python3 curl openssl)
{ want h2 || want upload; } && need+=(h2load)
for tool in "${need[@]}"; do command -v "$tool" >/dev/null || { echo "missing $tool (tests/deps.sh installs it)" >&2; exit 1; }; done
dir=$(mktemp -d /tmp/siesta-proxy-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
log() { printf '[bench] %s\n' "$*" >&2; }
# The proxies on the last core, the load (wrk, h2load, backend, held clients) on the rest.
cores=$(nproc); on_proxy=(); on_load=(); placement="sharing $cores cores with the load and the backend"
if [ "${SIESTA_BENCH_PIN:-1}" != 0 ] && [ "$cores" -ge 2 ] && command -v taskset >/dev/null; then
  on_proxy=(taskset -c $((cores - 1))); on_load=(taskset -c 0-$((cores - 2)))
  placement="pinned to core $((cores - 1)); the load and the backend on cores 0-$((cores - 2))"
fi

# --- the processes ----------------------------------------------------------

declare -A conf=([DIR]=$dir [WORKERS]=$workers [BACKEND_PORT]=$(port) [SINK_PORT]=$(port))
declare -A http_port tls_port h2c_port # each proxy's: HTTP/1.1, HTTPS, h2c
render() { # render TEMPLATE OUT: every @NAME@ replaced by conf[NAME]
  local text k
  text=$(<"$1")
  for k in "${!conf[@]}"; do text=${text//@$k@/${conf[$k]}}; done
  if [[ $text =~ @[A-Z_]+@ ]]; then log "$1: nothing fills ${BASH_REMATCH[0]}"; exit 1; fi
  printf '%s\n' "$text" >"$2"
}

make_cert() { # a self-signed certificate for 127.0.0.1, PEM: cert.pem, key.pem, and both in one for HAProxy
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  cat "$dir/cert.pem" "$dir/key.pem" >"$dir/cert+key.pem"
}

write_routes() { # routes.yaml: plain, counted (an awake namespace) and held0-9 (sleeping ones)
  local b="'http://127.0.0.1:${conf[BACKEND_PORT]}'" i
  {
    echo "routes:"
    echo "  - {host: plain.bench.test, upstream: $b}"
    echo "  - {host: counted.bench.test, upstream: $b, namespace: proxy-bench-awake}"
    for i in $(seq 0 9); do echo "  - {host: held$i.bench.test, upstream: $b, namespace: proxy-bench-held-$i}"; done
    echo "  - {host: upload.bench.test, upstream: 'http://127.0.0.1:${conf[SINK_PORT]}'}"
  } >"$dir/routes.yaml"
}

answers() { # answers CURL-ARGS...: true once the URL answers 200 (10 s at most)
  for _ in $(seq 100); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 -H 'Host: plain.bench.test' "$@" 2>/dev/null)" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}

peer_config() { # peer_config NAME TEMPLATE: NAME's three ports, and TEMPLATE rendered into $dir/NAME.conf
  http_port[$1]=$(port) tls_port[$1]=$(port) h2c_port[$1]=$(port)
  conf[HTTP_PORT]=${http_port[$1]} conf[TLS_PORT]=${tls_port[$1]} conf[H2C_PORT]=${h2c_port[$1]}
  render "$2" "$dir/$1.conf"
}

peer_answers() { # peer_answers NAME LOG: NAME answers on its three ports, or the bench stops with LOG
  answers "http://127.0.0.1:${http_port[$1]}/" && answers "https://127.0.0.1:${tls_port[$1]}/" &&
    answers --http2-prior-knowledge "http://127.0.0.1:${h2c_port[$1]}/" && return 0
  log "$1 does not answer"; cat "$2" >&2; exit 1
}

start_backend_and_peers() { # the backend, nginx and HAProxy; the peers' pids in $nginx_pids (workers) and $haproxy_pid
  mkdir -p "$dir/tmp"
  cat >"$dir/backend.conf" <<CONF
worker_processes 1; daemon off; pid $dir/backend.pid; error_log $dir/error.log warn;
events { worker_connections 16384; }
http { access_log off; client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp;
  server { listen 127.0.0.1:${conf[BACKEND_PORT]}; keepalive_requests 1000000;
    location / { return 200 "ok\n"; } } }
CONF
  peer_config nginx benches/nginx.conf
  peer_config haproxy benches/haproxy.cfg
  "$haproxy" -c -q -f "$dir/haproxy.conf" || { log "haproxy rejects its configuration"; exit 1; }
  "${on_load[@]}" "$nginx" -e "$dir/error.log" -p "$dir" -c "$dir/backend.conf" & pids+=($!)
  "${on_proxy[@]}" "$nginx" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" & pids+=($!)
  local nginx_master=$!
  "${on_proxy[@]}" "$haproxy" -db -f "$dir/haproxy.conf" 2>"$dir/haproxy.log" & pids+=($!)
  haproxy_pid=$!
  peer_answers nginx "$dir/error.log"
  peer_answers haproxy "$dir/haproxy.log"
  nginx_pids=$(pgrep -P "$nginx_master" | tr '\n' ' ')
}

start_siesta() { # start_siesta PORT ADMIN-PORT [ARGS...]: a Siesta proxy, ready; its pid in $started
  local port=$1 admin=$2
  shift 2
  SIESTA_LOG=warn TOKIO_WORKER_THREADS=1 "${on_proxy[@]}" "$siesta" proxy --workers "$workers" --listen "127.0.0.1:$port" \
    --admin-listen "127.0.0.1:$admin" --routes "$dir/routes.yaml" "$@" 2>>"$dir/siesta.log" & pids+=($!)
  started=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  cat "$dir/siesta.log" >&2
  exit 1
}

stop() { # stop PID: SIGTERM, then SIGKILL after 5 s
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# --- load phases --------------------------------------------------------------

# Each phase: its client (wrk or h2), URL, Host, and the pids of the proxy measured.
declare -A tool url host of
phase_def() { tool[$1]=$2 url[$1]=$3 host[$1]=$4 of[$1]=${5:-}; }

rss_kib() { local p s=0; for p in "$@"; do s=$((s + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$s"; }
# CPU time (user + system, in clock ticks) of processes and all their threads.
cpu_ticks() { local p s=0; for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$s"; }
hz=$(getconf CLK_TCK)
to_us() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else if (v ~ /s$/) print n*1000000; else print n }'; }

load() { # load NAME SECS: NAME's client for SECS seconds; output in $dir/NAME.out (and .log: h2load's per-request log)
  local name=$1 s=$2
  case ${tool[$name]} in
    wrk) "${on_load[@]}" timeout $((s + 30)) wrk -t1 -c"$conns" -d"${s}s" --latency -H "Host: ${host[$name]}" "${url[$name]}" ;;
    h2) rm -f "$dir/$name.log"
      "${on_load[@]}" timeout $((s + 30)) h2load -t1 -c"$h2_conns" -m"$h2_streams" -D"$s" --log-file="$dir/$name.log" \
        -H ":authority: ${host[$name]}" "${url[$name]}" ;;
  esac >"$dir/$name.out"
}

# `result_TOOL NAME`: "REQ/S P99-US REQUESTS" of the phase just run, or fail on an error answer.
result_wrk() {
  local out=$dir/$1.out
  if grep -q "Non-2xx" "$out"; then log "$1: non-2xx answers"; cat "$out" >&2; exit 1; fi
  echo "$(awk '/Requests\/sec/ {print $2}' "$out") $(to_us "$(awk '$1=="99%" {print $2}' "$out")") $(awk '/requests in/ {print $1}' "$out")"
}
result_h2() {
  local out=$dir/$1.out done bad
  done=$(awk '/^requests:/ {print $6}' "$out")
  bad=$(awk '/^requests:/ {n += $10 + $12 + $14} /^status codes:/ {n += $5 + $7 + $9} END {print n + 0}' "$out")
  if [ "${done:-0}" = 0 ] || [ "$bad" != 0 ]; then log "$1: failed or non-2xx answers"; cat "$out" >&2; exit 1; fi
  # the log's third column: microseconds until the end of each answer
  echo "$(awk '/^finished in/ {print $4}' "$out") $(sort -n -k3,3 "$dir/$1.log" | awk '{v[NR]=$3} END {i=int(NR*0.99); print v[i < 1 ? 1 : i]}') $done"
}

declare -A rps p99 peak cpu
phase() { # phase NAME: a 2 s warm-up, then BENCH_SECS measured
  local name=$1 max=0 r t0=0 t1=0 r_now p_now n_req c_now=""
  local -a ps
  read -ra ps <<<"${of[$name]}"
  load "$name" 2
  [ ${#ps[@]} -gt 0 ] && t0=$(cpu_ticks "${ps[@]}")
  load "$name" "$secs" &
  local client=$!
  while kill -0 "$client" 2>/dev/null; do
    if [ ${#ps[@]} -gt 0 ]; then r=$(rss_kib "${ps[@]}"); [ "$r" -gt "$max" ] && max=$r; fi
    sleep 0.5
  done
  wait "$client" || { log "$name: the load client failed"; cat "$dir/$name.out" >&2; exit 1; }
  [ ${#ps[@]} -gt 0 ] && t1=$(cpu_ticks "${ps[@]}")
  local res
  res=$("result_${tool[$name]}" "$name")
  read -r r_now p_now n_req <<<"$res"
  rps[$name]="${rps[$name]:-} $r_now"
  p99[$name]="${p99[$name]:-} $p_now"
  # CPU microseconds per request: what the proxy itself spends, whatever the
  # other processes on the machine leave it (req/s move with them).
  if [ ${#ps[@]} -gt 0 ] && [ "${n_req:-0}" -gt 0 ]; then
    c_now=$(awk -v a="$t0" -v b="$t1" -v n="$n_req" -v hz="$hz" 'BEGIN { printf "%.2f", (b-a)*1000000/hz/n }')
    cpu[$name]="${cpu[$name]:-} $c_now"
  fi
  [ "$max" -gt "${peak[$name]:-0}" ] && peak[$name]=$max
  log "$name: $r_now req/s, p99 ${p_now} us${c_now:+, peak RSS $max KiB, $c_now us CPU per request}"
}

rounds_of() { # rounds_of PHASE...: ROUNDS rounds, "direct" first, the phases in alternating order
  local i p order
  for i in $(seq "$rounds"); do
    order=("$@")
    if [ $((i % 2)) -eq 0 ]; then order=(); for p in "$@"; do order=("$p" "${order[@]}"); done; fi
    log "round $i/$rounds"
    if want http1 || want https; then phase direct; fi
    for p in "${order[@]}"; do phase "$p"; done
  done
}

# --- the report -----------------------------------------------------------------

# Two estimates, both robust to a round disturbed by other load (on a shared
# machine a disturbance only ever slows a phase down):
# - best of the rounds: each phase's highest req/s, lowest p99 and lowest CPU
#   per request, as the audit bench takes the fastest of its passes;
# - the median of the rounds' own ratios, each from phases run back to back.
med() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk -v f="$2" '{v[NR]=$1} END {printf f, (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
most() { tr ' ' '\n' <<<"$1" | grep . | sort -g | tail -n1; }
least() { tr ' ' '\n' <<<"$1" | grep . | sort -g | head -n1; }
# One value per round, from the lists of two or three phases:
# `per_round AWK-EXPR A B [C]` (a, b, c: that round's figures).
per_round() {
  paste -d' ' <(tr ' ' '\n' <<<"$2" | grep .) <(tr ' ' '\n' <<<"$3" | grep .) <(tr ' ' '\n' <<<"${4:-}" | grep . || yes 0 | head -n "$rounds") |
    awk "{a=\$1; b=\$2; c=\$3; printf \"%.2f \", $1}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b <= 0) print "n/a"; else printf "%.2f", a/b }'; }
added() { awk -v p="$1" -v d="$2" 'BEGIN { a = p - d; print (a < 1 ? 1 : a) }'; }
lat() { # lat PHASE [DIRECT]: best p99 of PHASE, less DIRECT's when given (the added p99)
  if [ -n "${2:-}" ]; then added "$(least "${p99[$1]}")" "$(least "${p99[$2]}")"; else least "${p99[$1]}"; fi
}

phase_line() { # phase_line LABEL PHASE [DIRECT]
  local l
  l=$(printf '%-17s %s req/s, p99 %s us' "$1:" "$(most "${rps[$2]}")" "$(least "${p99[$2]}")")
  [ -n "${3:-}" ] && [ "$2" != "$3" ] && l+=" (+$(lat "$2" "$3"))"
  [ -n "${cpu[$2]:-}" ] && l+=", $(least "${cpu[$2]}") us CPU per request, peak RSS ${peak[$2]} KiB"
  echo "$l"
}

versus() { # versus LABEL SIESTA PEER [DIRECT]: best-round ratios, then the median and each round's
  local p="p99" r_lat
  if [ -n "${4:-}" ]; then
    p="added p99"
    r_lat=$(per_round '(a-c < 1 ? 1 : a-c)/((b-c) < 1 ? 1 : (b-c))' "${p99[$2]}" "${p99[$3]}" "${p99[$4]}")
  else
    r_lat=$(per_round 'a/b' "${p99[$2]}" "${p99[$3]}")
  fi
  local r_rps r_cpu
  r_rps=$(per_round 'a/b' "${rps[$2]}" "${rps[$3]}")
  r_cpu=$(per_round 'a/b' "${cpu[$2]}" "${cpu[$3]}")
  printf '%-17s throughput %sx, %s %sx, CPU per request %sx (best rounds)\n' "vs $1:" \
    "$(ratio "$(most "${rps[$2]}")" "$(most "${rps[$3]}")")" "$p" "$(ratio "$(lat "$2" "${4:-}")" "$(lat "$3" "${4:-}")")" \
    "$(ratio "$(least "${cpu[$2]}")" "$(least "${cpu[$3]}")")"
  printf '%-17s median %sx: %s\n' "  throughput" "$(med "$r_rps" "%.2f")" "$r_rps" "  $p" "$(med "$r_lat" "%.2f")" "$r_lat" \
    "  CPU" "$(med "$r_cpu" "%.2f")" "$r_cpu"
}

versus_faster() { # versus_faster SIESTA NGINX HAPROXY [DIRECT]: against the peer of the higher best-round req/s
  local fast=$2 name=nginx low_cpu
  if awk -v n="$(most "${rps[$2]}")" -v h="$(most "${rps[$3]}")" 'BEGIN { exit !(h > n) }'; then fast=$3 name=haproxy; fi
  low_cpu=$(printf '%s\n' "$(least "${cpu[$2]}")" "$(least "${cpu[$3]}")" | sort -g | head -n1)
  printf '%-17s throughput %sx (target >= 1.0), %s %sx (target <= 1.1), CPU per request %sx the lower of the two (target < 1.0)\n' \
    "vs the faster ($name):" "$(ratio "$(most "${rps[$1]}")" "$(most "${rps[$fast]}")")" "${4:+added }p99" \
    "$(ratio "$(lat "$1" "${4:-}")" "$(lat "$fast" "${4:-}")")" "$(ratio "$(least "${cpu[$1]}")" "$low_cpu")"
}

report_group() { # report_group TITLE SIESTA NGINX HAPROXY [DIRECT]
  echo "-- $1"
  [ -n "${5:-}" ] && phase_line "direct backend" "$5"
  phase_line nginx "$3" "${5:-}"
  phase_line haproxy "$4" "${5:-}"
  phase_line siesta "$2" "${5:-}"
  versus nginx "$2" "$3" "${5:-}"
  versus haproxy "$2" "$4" "${5:-}"
  versus_faster "$2" "$3" "$4" "${5:-}"
}

report_http1_extra() { # counted route: activity cost and peak RSS
  local s c r_cost
  s=$(most "${rps[siesta]}"); c=$(most "${rps[counted]}")
  r_cost=$(per_round '(a-b)*100/a' "${rps[siesta]}" "${rps[counted]}")
  phase_line "siesta counted" counted direct
  echo "peak RSS:         $(awk -v k="${peak[counted]}" -v l="${peak[siesta]}" 'BEGIN { m = k > l ? k : l; printf "%.1f", m/1024 }') MiB (target <= 30)"
  echo "activity cost:    $(awk -v s="$s" -v c="$c" 'BEGIN { printf "%.1f", (s-c)*100/s }')% of throughput (target <= 5); median of the rounds' $(med "$r_cost" "%.1f")%: $r_cost"
}

# --- held requests ----------------------------------------------------------------

held_ns() { echo proxy-bench-awake; seq -f 'proxy-bench-held-%g' 0 9; }
make_namespaces() { # proxy-bench-awake awake, proxy-bench-held-0..9 asleep (no controller runs: they stay asleep)
  local since ns
  since=$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%SZ)
  for ns in $(held_ns); do
    kubectl delete namespace "$ns" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
    kubectl create namespace "$ns" >/dev/null
    local state=asleep; [ "$ns" = proxy-bench-awake ] && state=awake
    kubectl annotate namespace "$ns" "siesta.dev/state=$state" "siesta.dev/state-since=$since" >/dev/null
  done
}

held_now() { curl -s "127.0.0.1:$1/metrics" | awk '/^siesta_proxy_held_requests/ {s+=$2} END {print s+0}'; }
tcp_pages() { awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") print $(i+1) }' /proc/net/sockstat; }
page_kib=$(( $(getconf PAGESIZE) / 1024 ))

held_config() { # an admin config raising the held-body budget to what BENCH_HELD bodies reserve, if this binary has one
  printf 'proxy:\n  maxHeldBodyBytes: %s\n' $((held * 65536)) >"$dir/held-config.yaml"
  if "$siesta" check-config "$dir/held-config.yaml" >/dev/null 2>&1; then
    held_args=(--config "$dir/held-config.yaml"); budget="maxHeldBodyBytes $((held * 65536))"
  else
    held_args=(); budget="no held-body budget in this binary"
  fi
}

start_nginx_held() { # start_nginx_held: a fresh nginx that holds every request (benches/nginx-held.conf); ports in $held_http, $held_h2c, worker in $started
  held_http=$(port) held_h2c=$(port)
  conf[HTTP_PORT]=$held_http conf[H2C_PORT]=$held_h2c
  render benches/nginx-held.conf "$dir/nginx-held.conf"
  "${on_proxy[@]}" "$nginx" -e "$dir/error.log" -p "$dir" -c "$dir/nginx-held.conf" & pids+=($!)
  held_master=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$held_h2c") 2>/dev/null && break; sleep 0.1; done
  started=$(pgrep -P "$held_master" | head -n1)
  [ -n "$started" ] || { log "nginx (held) did not start"; cat "$dir/error.log" >&2; exit 1; }
}

held_phase() { # held_phase PROXY LABEL MODE ARGS...: benches/hold.py MODE PORT REQUESTS ARGS against a fresh PROXY (siesta or nginx)
  local kind=$1 label=$2 mode=$3 port admin
  shift 3
  # until the kernel's count settles after the last phase's sockets (10 s at most)
  local m=-1
  for _ in $(seq 20); do [ "$(tcp_pages)" = "$m" ] && break; m=$(tcp_pages); sleep 0.5; done
  if [ "$kind" = siesta ]; then
    port=$(port); admin=$(port)
    start_siesta "$port" "$admin" "${held_args[@]}"
  else
    start_nginx_held
    port=$held_http; [ "$mode" = h2 ] && port=$held_h2c
  fi
  local proxy=$started rss0 mem0 rss1 mem1 now=0 last=-1 stable=0
  sleep 1
  rss0=$(rss_kib "$proxy"); mem0=$(tcp_pages)
  LIFETIME=300 "${on_load[@]}" python3 benches/hold.py "$mode" "$port" "$held" "$@" >"$dir/hold.out" 2>&1 & pids+=($!)
  local client=$!
  for _ in $(seq 600); do grep -q '^sent' "$dir/hold.out" && break; kill -0 "$client" 2>/dev/null || break; sleep 0.2; done
  # Siesta: until every request is held, or the count stays put for 2 s (some
  # refused); nginx, which counts nothing: until its RSS stays put for 2 s. 60 s at most.
  for _ in $(seq 300); do
    if [ "$kind" = siesta ]; then now=$(held_now "$admin"); else now=$(rss_kib "$proxy"); fi
    if [ "$kind" = siesta ] && [ "$now" -ge "$held" ]; then break; fi
    if [ "$now" = "$last" ]; then stable=$((stable + 1)); [ "$stable" -ge 10 ] && break; else stable=0; fi
    last=$now
    sleep 0.2
  done
  sleep 1
  rss1=$(rss_kib "$proxy"); mem1=$(tcp_pages)
  if [ "$kind" = siesta ]; then now=$(held_now "$admin"); else now=$held; fi
  stop "$client"
  if [ "$kind" = siesta ]; then stop "$proxy"; else stop "$held_master"; fi
  local sent
  sent=$(tail -n1 "$dir/hold.out")
  if [[ $sent != *requests=* ]]; then log "$label: benches/hold.py failed"; cat "$dir/hold.out" >&2; return 0; fi
  [ "$kind" = siesta ] && siesta_per=$(awk -v a="$rss0" -v b="$rss1" -v n="$now" 'BEGIN { print (b-a)/(n > 0 ? n : 1) }')
  awk -v k="$kind" -v l="$label" -v n="$now" -v a="$rss0" -v b="$rss1" -v m0="$mem0" -v m1="$mem1" -v pk="$page_kib" -v s="$sent" -v sp="${siesta_per:-0}" 'BEGIN {
    split(s, kv, " "); for (i in kv) { split(kv[i], x, "="); c[x[1]] = x[2] }
    # nginx lets the first request through (limit_req delays those after it)
    if (k != "siesta") n = c["requests"] - c["answered"] - c["refused_streams"]
    d = n > 0 ? n : 1; per = (b-a)/d; ratio = per > 0 ? sp/per : 0
    if (k == "siesta") name = l ":"; else name = "  nginx, the same (limit_req):"
    printf "%-36s %d held of %d on %d connections (answered %d, closed %d, streams refused %d), body sent %.1f KiB each;\n", name, n, c["requests"], c["connections"], c["answered"], c["closed"], c["refused_streams"], c["body_bytes"] / 1024 / (c["requests"] > 0 ? c["requests"] : 1)
    printf "%-36s RSS %d -> %d KiB: %.2f KiB, kernel TCP %d -> %d pages: %.2f KiB per held request", "", a, b, per, m0, m1, (m1-m0)*pk/d
    if (k == "siesta") printf " (targets <= 4)\n"; else printf "; Siesta/nginx RSS %.2fx\n", ratio
  }'
}

held_pair() { # held_pair LABEL MODE ARGS...: the same held requests on a fresh Siesta, then on a fresh nginx
  held_phase siesta "$@"
  want held-peer && held_phase nginx "$@"
  return 0
}

held_part() { # every held measurement, each on a fresh proxy
  local s=$((held / 10))
  held_config
  echo "-- held ($held requests for 10 sleeping namespaces; RSS of a fresh proxy, $placement; kernel: /proc/net/sockstat, both ends; $budget)"
  held_pair "HTTP/1.1, no body" h1 0
  held_pair "HTTP/2, $s streams/conn, no body" h2 "$s" 0
  held_pair "HTTP/1.1, $((body / 1024)) KiB body" h1 "$body"
  held_pair "HTTP/2, 1 stream/conn, body" h2 1 "$body"
  held_pair "HTTP/2, $s streams/conn, body" h2 "$s" "$body"
}

# --- uploads -----------------------------------------------------------------------

upload_part() { # forwarded bodies through a fresh Siesta to benches/sink.py: MiB/s by protocol
  local mib=${BENCH_UPLOAD_MIB:-8} n=${BENCH_UPLOADS:-24} sink=${conf[SINK_PORT]} port admin proxy how out
  LIFETIME=600 "${on_load[@]}" python3 benches/sink.py "$sink" & pids+=($!)
  local sink_pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$sink") 2>/dev/null && break; sleep 0.1; done
  head -c $((mib * 1048576)) /dev/zero >"$dir/upload.bin"
  port=$(port); admin=$(port)
  start_siesta "$port" "$admin"; proxy=$started
  echo "-- uploads ($n bodies of $mib MiB each, one after another or 8 at once, through Siesta to a backend that reads each whole)"
  for how in "--h1 -c1 -m1" "-c1 -m1" "-c1 -m8"; do
    out=$("${on_load[@]}" timeout 300 h2load -t1 $how -n "$n" -d "$dir/upload.bin" -H ':authority: upload.bench.test' "http://127.0.0.1:$port/" 2>&1) || true
    awk -v how="$how" -v mib="$mib" -v n="$n" '
      /^finished in/ { secs = $3 + 0; if ($3 ~ /ms,$/) secs /= 1000; else if ($3 ~ /us,$/) secs /= 1000000 }
      /^status codes:/ { ok = $3 + 0 }
      END { label = how ~ /--h1/ ? "HTTP/1.1" : (how ~ /-m8/ ? "HTTP/2, 8 streams on 1 connection" : "HTTP/2, 1 stream at a time")
            if (ok != n || secs <= 0) { printf "%-36s failed (%d of %d answered 2xx)\n", label ":", ok, n; exit }
            printf "%-36s %.0f MiB/s (%d x %d MiB in %.2f s)\n", label ":", n * mib / secs, n, mib, secs }' <<<"$out"
  done
  stop "$proxy"
  stop "$sink_pid"
}

# --- main ------------------------------------------------------------------------

make_cert
write_routes
start_backend_and_peers
cluster=false
if [ -z "${KUBECONFIG:-}" ] && [ -f /tmp/siesta-cluster/kubeconfig ]; then eval "$(tests/cluster/cluster.sh env)"; fi
if [ -n "${KUBECONFIG:-}" ] && kubectl get --raw /readyz >/dev/null 2>&1; then cluster=true; fi
$cluster && make_namespaces
b=${conf[BACKEND_PORT]}
phase_def direct wrk "http://127.0.0.1:$b/" plain.bench.test
order=()
if want http1 || want h2; then
  siesta_port=$(port)
  start_siesta "$siesta_port" "$(port)"; siesta_pid=$started
fi
if want http1; then
  phase_def nginx wrk "http://127.0.0.1:${http_port[nginx]}/" plain.bench.test "$nginx_pids"
  phase_def haproxy wrk "http://127.0.0.1:${http_port[haproxy]}/" plain.bench.test "$haproxy_pid"
  phase_def siesta wrk "http://127.0.0.1:$siesta_port/" plain.bench.test "$siesta_pid"
  phase_def counted wrk "http://127.0.0.1:$siesta_port/" counted.bench.test "$siesta_pid"
  order+=(nginx haproxy siesta counted)
fi
if want https; then
  siesta_tls_port=$(port)
  start_siesta "$siesta_tls_port" "$(port)" --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem"
  phase_def nginx_tls wrk "https://127.0.0.1:${tls_port[nginx]}/" plain.bench.test "$nginx_pids"
  phase_def haproxy_tls wrk "https://127.0.0.1:${tls_port[haproxy]}/" plain.bench.test "$haproxy_pid"
  phase_def siesta_tls wrk "https://127.0.0.1:$siesta_tls_port/" plain.bench.test "$started"
  order+=(nginx_tls haproxy_tls siesta_tls)
fi
if want h2; then
  phase_def nginx_h2 h2 "http://127.0.0.1:${h2c_port[nginx]}/" plain.bench.test "$nginx_pids"
  phase_def haproxy_h2 h2 "http://127.0.0.1:${h2c_port[haproxy]}/" plain.bench.test "$haproxy_pid"
  phase_def siesta_h2 h2 "http://127.0.0.1:$siesta_port/" plain.bench.test "$siesta_pid"
  order+=(nginx_h2 haproxy_h2 siesta_h2)
fi
log "backend :$b; $rounds x ${secs}s per phase: ${order[*]}"
[ ${#order[@]} -gt 0 ] && rounds_of "${order[@]}"

echo "== Siesta proxy vs nginx and HAProxy ($rounds x ${secs}s, $workers worker(s) each, $placement)"
[ ${#order[@]} -gt 0 ] && echo "best of the rounds (highest req/s, lowest p99, lowest CPU per request); under each ratio, the median of the rounds' own ratios and every round's"
if want http1; then
  report_group "HTTP/1.1 (wrk -t1 -c$conns)" siesta nginx haproxy direct
  report_http1_extra
fi
want https && report_group "HTTPS: TLS at the proxy, HTTP/1.1 keep-alive (wrk -t1 -c$conns)" siesta_tls nginx_tls haproxy_tls direct
want h2 && report_group "HTTP/2 by prior knowledge (h2load -c$h2_conns -m$h2_streams; p99 from its per-request log)" siesta_h2 nginx_h2 haproxy_h2
if want held; then
  if $cluster; then held_part; else echo "-- held: skipped (no local cluster: tests/cluster/cluster.sh up)"; fi
fi
want upload && upload_part
if $cluster; then for ns in $(held_ns); do kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; done; fi
