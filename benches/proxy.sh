#!/usr/bin/env bash
# Siesta's proxy against nginx, in front of the same backend, on loopback.
#
#   benches/proxy.sh            (run by `make bench`; needs nginx, wrk, python3)
#
# Phases (each BENCH_SECS, default 5 s, after a 2 s warm-up) in ROUNDS rounds
# (default 9). The proxies run back to back in each round, in the opposite
# order the next round, so that a slower or faster stretch of the machine hits
# both alike. Every round gives its own ratios (Siesta over nginx); the report
# is the best round of each phase and the median of those ratios (see below):
#   direct   wrk -> backend                        (the latency baseline)
#   nginx    wrk -> nginx -> backend
#   siesta   wrk -> siesta proxy -> backend        (route without a namespace)
#   counted  wrk -> siesta proxy -> backend        (route with a namespace: every
#                                                   request is recorded as activity)
# then 10,000 requests held for 10 sleeping namespaces (needs the local cluster).
#
# Fairness: the backend is nginx `return 200` (1 worker). The proxies get one
# core each: nginx `worker_processes 1`, Siesta `--workers 1`, and on a machine
# of two cores or more the proxy under test has the last core to itself (taskset)
# while wrk and the backend share the others, so that the measure is of the
# proxy, not of where the scheduler happened to put three busy processes
# (SIESTA_BENCH_PIN=0: no pinning, everything shares every core). nginx
# keeps upstream connections alive (`keepalive 64`, HTTP/1.1), has no access
# log, sets the same X-Forwarded-* headers, and neither side limits requests
# per connection.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECS:-5}
rounds=${ROUNDS:-9}
conns=${BENCH_CONNS:-64}
held=${BENCH_HELD:-10000}
target=${CARGO_TARGET_DIR:-target}
siesta=${SIESTA_BIN:-$target/release/siesta}
[ -x "$siesta" ] || cargo build --release --locked --bin siesta
nginx=$(command -v nginx || echo /usr/sbin/nginx)
for tool in "$nginx" wrk python3; do command -v "$tool" >/dev/null || { echo "missing $tool (tests/deps.sh installs it)" >&2; exit 1; }; done
dir=$(mktemp -d /tmp/siesta-proxy-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend_port=$(port); nginx_port=$(port); siesta_port=$(port); admin_port=$(port)
log() { printf '[bench] %s\n' "$*" >&2; }
# The proxies on the last core, the load (wrk, backend, held clients) on the rest.
cores=$(nproc); on_proxy=(); on_load=(); placement="sharing $cores cores with wrk and the backend"
if [ "${SIESTA_BENCH_PIN:-1}" != 0 ] && [ "$cores" -ge 2 ] && command -v taskset >/dev/null; then
  on_proxy=(taskset -c $((cores - 1))); on_load=(taskset -c 0-$((cores - 2)))
  placement="pinned to core $((cores - 1)); wrk and the backend on cores 0-$((cores - 2))"
fi

mkdir -p "$dir/tmp"
common="worker_processes 1; daemon off; pid PIDFILE; error_log $dir/error.log warn;
events { worker_connections 16384; }"
cat >"$dir/backend.conf" <<CONF
${common//PIDFILE/$dir/backend.pid}
http { access_log off; client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp;
  server { listen 127.0.0.1:$backend_port; keepalive_requests 1000000;
    location / { return 200 "ok\n"; } } }
CONF
cat >"$dir/nginx.conf" <<CONF
${common//PIDFILE/$dir/nginx.pid}
http { access_log off; client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp;
  upstream backend { server 127.0.0.1:$backend_port; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$nginx_port; keepalive_requests 1000000;
    location / {
      proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$host;
    } } }
CONF
"${on_load[@]}" "$nginx" -e "$dir/error.log" -p "$dir" -c "$dir/backend.conf" & pids+=($!)
"${on_proxy[@]}" "$nginx" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" & pids+=($!)
nginx_master=$!

cluster=false
if [ -z "${KUBECONFIG:-}" ] && [ -f /tmp/siesta-cluster/kubeconfig ]; then eval "$(tests/cluster/cluster.sh env)"; fi
if [ -n "${KUBECONFIG:-}" ] && kubectl get --raw /readyz >/dev/null 2>&1; then cluster=true; fi
since=$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%SZ)
{
  echo "routes:"
  echo "  - {host: plain.bench.test, upstream: 'http://127.0.0.1:$backend_port'}"
  echo "  - {host: counted.bench.test, upstream: 'http://127.0.0.1:$backend_port', namespace: proxy-bench-awake}"
  for i in $(seq 0 9); do
    echo "  - {host: held$i.bench.test, upstream: 'http://127.0.0.1:$backend_port', namespace: proxy-bench-held-$i}"
  done
} >"$dir/routes.yaml"
if $cluster; then
  for ns in proxy-bench-awake $(seq -f 'proxy-bench-held-%g' 0 9); do
    kubectl delete namespace "$ns" --ignore-not-found --wait=true >/dev/null 2>&1 || true
    kubectl create namespace "$ns" >/dev/null
  done
  kubectl annotate namespace proxy-bench-awake siesta.dev/state=awake "siesta.dev/state-since=$since" >/dev/null
  for i in $(seq 0 9); do
    kubectl annotate namespace "proxy-bench-held-$i" siesta.dev/state=asleep "siesta.dev/state-since=$since" >/dev/null
  done
fi
SIESTA_LOG=warn TOKIO_WORKER_THREADS=1 "${on_proxy[@]}" "$siesta" proxy --workers "${SIESTA_THREADS:-1}" --listen "127.0.0.1:$siesta_port" \
  --admin-listen "127.0.0.1:$admin_port" --routes "$dir/routes.yaml" 2>"$dir/siesta.log" & pids+=($!)
siesta_pid=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "127.0.0.1:$admin_port/readyz" >/dev/null || { cat "$dir/siesta.log" >&2; exit 1; }

nginx_pid=""
for _ in $(seq 50); do nginx_pid=$(pgrep -P "$nginx_master" | head -n1 || true); [ -n "$nginx_pid" ] && break; sleep 0.1; done
[ -n "$nginx_pid" ] || { cat "$dir/error.log" >&2; exit 1; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# CPU time (user + system, in clock ticks) of a process and all its threads.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
to_us() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else if (v ~ /s$/) print n*1000000; else print n }'; }
declare -A rps p99 peak cpu
run() { # run NAME PORT HOST PID
  local name=$1 port=$2 host=$3 pid=${4:-} out max=0 r
  "${on_load[@]}" wrk -t1 -c"$conns" -d2s -H "Host: $host" "http://127.0.0.1:$port/" >/dev/null
  local t0=0
  if [ -n "$pid" ]; then t0=$(cpu_ticks "$pid"); fi
  "${on_load[@]}" wrk -t1 -c"$conns" -d"${secs}s" --latency -H "Host: $host" "http://127.0.0.1:$port/" >"$dir/$name.out" &
  local wrk_pid=$!
  while kill -0 "$wrk_pid" 2>/dev/null; do
    if [ -n "$pid" ]; then r=$(rss_kib "$pid"); if [ "$r" -gt "$max" ]; then max=$r; fi; fi
    sleep 0.5
  done
  wait "$wrk_pid"
  local t1=0
  if [ -n "$pid" ]; then t1=$(cpu_ticks "$pid"); fi
  out=$(cat "$dir/$name.out")
  grep -q "Non-2xx" <<<"$out" && { log "$name: non-2xx answers"; echo "$out" >&2; exit 1; }
  local r_now p_now
  r_now=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p_now=$(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")
  rps[$name]="${rps[$name]:-} $r_now"
  # CPU microseconds per request: what the proxy itself spends, whatever the
  # other processes on the machine leave it (req/s move with them).
  local n_req c_now=""
  n_req=$(awk '/requests in/ {print $1}' <<<"$out")
  if [ -n "$pid" ] && [ "${n_req:-0}" -gt 0 ]; then
    c_now=$(awk -v a="$t0" -v b="$t1" -v n="$n_req" -v hz="$hz" 'BEGIN { printf "%.2f", (b-a)*1000000/hz/n }')
    cpu[$name]="${cpu[$name]:-} $c_now"
  fi
  p99[$name]="${p99[$name]:-} $p_now"
  if [ "$max" -gt "${peak[$name]:-0}" ]; then peak[$name]=$max; fi
  log "$name: $r_now req/s, p99 ${p_now} us${pid:+, peak RSS $max KiB, $c_now us CPU per request}"
}
log "backend :$backend_port, nginx :$nginx_port, siesta :$siesta_port; $rounds x ${secs}s per phase, $conns connections"
for i in $(seq "$rounds"); do
  run direct "$backend_port" plain.bench.test
  if [ $((i % 2)) -eq 1 ]; then
    run nginx "$nginx_port" plain.bench.test "$nginx_pid"
    run siesta "$siesta_port" plain.bench.test "$siesta_pid"
    run counted "$siesta_port" counted.bench.test "$siesta_pid"
  else
    run counted "$siesta_port" counted.bench.test "$siesta_pid"
    run siesta "$siesta_port" plain.bench.test "$siesta_pid"
    run nginx "$nginx_port" plain.bench.test "$nginx_pid"
  fi
done
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
d_rps=$(most "${rps[direct]}"); n_rps=$(most "${rps[nginx]}"); s_rps=$(most "${rps[siesta]}"); c_rps=$(most "${rps[counted]}")
d_p99=$(least "${p99[direct]}"); n_p99=$(least "${p99[nginx]}"); s_p99=$(least "${p99[siesta]}"); c_p99=$(least "${p99[counted]}")
n_cpu=$(least "${cpu[nginx]:-0}"); s_cpu=$(least "${cpu[siesta]:-0}")
added_n=$(added "$n_p99" "$d_p99"); added_s=$(added "$s_p99" "$d_p99")
cost=$(awk -v s="$s_rps" -v c="$c_rps" 'BEGIN { printf "%.1f", (s-c)*100/s }')
# Siesta over nginx, round by round: throughput, added p99 (over the round's
# direct p99), CPU per request; and the activity cost in % of throughput.
r_rps=$(per_round 'a/b' "${rps[siesta]}" "${rps[nginx]}")
r_p99=$(per_round '(a-c)/((b-c) < 1 ? 1 : (b-c))' "${p99[siesta]}" "${p99[nginx]}" "${p99[direct]}")
r_cpu=$(per_round 'a/b' "${cpu[siesta]:-0}" "${cpu[nginx]:-1}")
r_cost=$(per_round '(a-b)*100/a' "${rps[siesta]}" "${rps[counted]}")

held_line="held: skipped (no local cluster)"
if $cluster; then
  rss0=$(rss_kib "$siesta_pid")
  cat >"$dir/hold.py" <<'PY'
import asyncio, sys
async def main(port, n):
    conns = []
    for i in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"GET /held HTTP/1.1\r\nHost: held{i % 10}.bench.test\r\nAccept: */*\r\n\r\n".encode())
        conns.append((r, w))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    print("sent", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
PY
  "${on_load[@]}" python3 "$dir/hold.py" "$siesta_port" "$held" >"$dir/hold.out" 2>&1 & hold_pid=$!; pids+=($hold_pid)
  now=0
  for _ in $(seq 300); do
    now=$(curl -s "127.0.0.1:$admin_port/metrics" | awk '/^siesta_proxy_held_requests/ {s+=$2} END {print s+0}')
    if [ "$now" -ge "$held" ]; then break; fi
    sleep 0.2
  done
  sleep 1
  rss1=$(rss_kib "$siesta_pid")
  per=$(awk -v a="$rss0" -v b="$rss1" -v n="$held" 'BEGIN { printf "%.2f", (b-a)/n }')
  held_line="held (HTTP/1):    $now requests, one connection each; RSS $rss0 KiB -> $rss1 KiB: $per KiB per held request (target <= 4)"
  kill "$hold_pid" 2>/dev/null || true
  held_total() { curl -s "127.0.0.1:$admin_port/metrics" | awk '/^siesta_proxy_held_requests/ {s+=$2} END {print s+0}'; }
  for _ in $(seq 100); do [ "$(held_total)" -eq 0 ] && break; sleep 0.2; done
  # The same over HTTP/2: 10 connections of 1,000 streams each (h2load, h2c).
  if command -v h2load >/dev/null; then
    rss2=$(rss_kib "$siesta_pid")
    h2pids=()
    for i in $(seq 0 9); do
      "${on_load[@]}" h2load -n $((held / 10)) -c 1 -m $((held / 10)) -H ":authority: held$i.bench.test" \
        "http://127.0.0.1:$siesta_port/held" >/dev/null 2>&1 & h2pids+=($!); pids+=($!)
    done
    now=0
    for _ in $(seq 300); do now=$(held_total); if [ "$now" -ge "$held" ]; then break; fi; sleep 0.2; done
    sleep 1
    rss3=$(rss_kib "$siesta_pid")
    per2=$(awk -v a="$rss2" -v b="$rss3" -v n="$held" 'BEGIN { printf "%.2f", (b-a)/n }')
    held_line="$held_line
held (h2):        $now requests on 10 HTTP/2 connections; RSS $rss2 KiB -> $rss3 KiB: $per2 KiB per held request"
    kill "${h2pids[@]}" 2>/dev/null || true
  fi
  for ns in proxy-bench-awake $(seq -f 'proxy-bench-held-%g' 0 9); do kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; done
fi

cat <<REPORT
== Siesta proxy vs nginx ($rounds x ${secs}s, $conns connections, one core each, $placement)
best of the rounds (highest req/s, lowest p99, lowest CPU per request):
direct backend:   $d_rps req/s, p99 $d_p99 us
nginx:            $n_rps req/s, p99 $n_p99 us, $n_cpu us CPU per request, peak RSS ${peak[nginx]} KiB (worker)
siesta:           $s_rps req/s, p99 $s_p99 us, $s_cpu us CPU per request, peak RSS ${peak[siesta]} KiB
siesta counted:   $c_rps req/s, p99 $c_p99 us, peak RSS ${peak[counted]} KiB
throughput ratio: $(ratio "$s_rps" "$n_rps")x nginx (target >= 1.0); median of the rounds' ratios $(med "$r_rps" "%.2f")x: $r_rps
added p99:        siesta +$added_s us, nginx +$added_n us: $(ratio "$added_s" "$added_n")x (target <= 1.1); median of the rounds' $(med "$r_p99" "%.2f")x: $r_p99
CPU per request:  $(ratio "$s_cpu" "$n_cpu")x nginx's; median of the rounds' $(med "$r_cpu" "%.2f")x: $r_cpu
peak RSS:         $(awk -v k="${peak[counted]}" -v l="${peak[siesta]}" 'BEGIN { m = k > l ? k : l; printf "%.1f", m/1024 }') MiB (target <= 30)
activity cost:    $cost% of throughput (target <= 5); median of the rounds' $(med "$r_cost" "%.1f")%: $r_cost
$held_line
REPORT
