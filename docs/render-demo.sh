#!/usr/bin/env bash
# Make real data for docs/dashboard.png, then render it with docs/render.py:
# a controller on the local cluster (tests/cluster) manages four namespaces
# that sleep and wake over about five minutes, scraped by a Prometheus every
# second. Needs: the local cluster up, `cargo build`, the Debian package
# prometheus, python3 with matplotlib.
#   docs/render-demo.sh [path/to/siesta]
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(tests/cluster/cluster.sh env)"
bin=${1:-${CARGO_TARGET_DIR:-target}/debug/siesta}
work=$(mktemp -d)
pids=()
cleanup() {
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "the controller had stopped; its log ends:" >&2
    tail -n 20 "$work/controller.log" >&2
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  kubectl delete ns demo-shop demo-blog demo-ci demo-docs --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

kubectl create namespace siesta-demo-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
"$bin" controller --admin-listen 127.0.0.1:19081 --audit-listen 127.0.0.1:19443 \
  --namespace-selector siesta-demo=render --leader-election-namespace siesta-demo-system \
  --savings-interval 1s >"$work/controller.log" 2>&1 &
pids+=($!)
cat >"$work/prometheus.yml" <<CONF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: siesta-controller
    static_configs: [{targets: ['127.0.0.1:19081']}]
CONF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address=127.0.0.1:19090 --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)

# namespace  deployments as name:replicas:cpu:memory
declare -A apps=(
  [demo-shop]="web:2:500m:256Mi db:1:1:2Gi"
  [demo-blog]="blog:1:250m:128Mi"
  [demo-ci]="runner:3:1:1Gi"
  [demo-docs]="docs:2:0:0"
)
# a previous run's namespaces may still be terminating
kubectl delete namespace "${!apps[@]}" --ignore-not-found --wait=true >/dev/null
for ns in "${!apps[@]}"; do
  kubectl create namespace "$ns" >/dev/null
  kubectl label namespace "$ns" siesta-demo=render >/dev/null
  kubectl annotate namespace "$ns" siesta.dev/enabled=true siesta.dev/idle-after=off >/dev/null
  for spec in ${apps[$ns]}; do
    IFS=: read -r name replicas cpu memory <<<"$spec"
    kubectl -n "$ns" create deployment "$name" --image=registry.invalid/app:1 --replicas="$replicas" >/dev/null
    if [ "$cpu" != 0 ]; then
      kubectl -n "$ns" set resources deployment "$name" --requests="cpu=$cpu,memory=$memory" >/dev/null
    fi
  done
done
act() { kubectl annotate namespace "$1" "siesta.dev/action=$2" --overwrite >/dev/null; echo "$(date +%T) $1 $2"; }
sleep 20
act demo-shop sleep; act demo-ci sleep; act demo-docs sleep
sleep 60
act demo-blog sleep
sleep 40
act demo-ci wake
sleep 50
act demo-blog wake
sleep 30
act demo-ci sleep
sleep 40
act demo-shop wake
sleep 30
act demo-shop sleep
sleep 30
kill -0 "${pids[0]}" || { echo "the controller stopped during the demo" >&2; exit 1; }
python3 docs/render.py --prometheus http://127.0.0.1:19090 --minutes 5.5
