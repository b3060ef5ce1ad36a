#!/usr/bin/env bash
# `make run`: Siesta's main job on a laptop. Brings up the local cluster when
# KUBECONFIG is unset, then runs the controller and the proxy against it with a
# demo namespace (idle sleep after 2 minutes, a Deployment, and an HTTP route
# through the proxy to a demo backend on 127.0.0.1). Ctrl-C stops everything it
# started (the cluster stays up: `make cluster-down`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${KUBECONFIG:-}" ]; then
  tests/cluster/cluster.sh up
  eval "$(tests/cluster/cluster.sh env)"
fi
bin=target/release/siesta
state=${TMPDIR:-/tmp}/siesta-run
mkdir -p "$state"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

# The demo backend: any HTTP server on loopback (the pods under KWOK run nothing).
mkdir -p "$state/www" && echo "hello from the demo backend" >"$state/www/index.html"
python3 -m http.server 9090 --bind 127.0.0.1 --directory "$state/www" >"$state/backend.log" 2>&1 &
pids+=($!)

kubectl apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: siesta-demo
  annotations:
    siesta.dev/enabled: "true"
    siesta.dev/idle-after: "2m"
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: siesta-demo}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx
        resources: {requests: {cpu: 250m, memory: 128Mi}}
YAML
cat >"$state/routes.yaml" <<'YAML'
routes:
  - host: demo.localhost
    upstream: http://127.0.0.1:9090
    namespace: siesta-demo
YAML

# The demo's own config (no schedule: it sleeps after 2 idle minutes at any
# hour); SIESTA_RUN_CONFIG=config/siesta.yaml runs with the full example.
cfg=(--config "${SIESTA_RUN_CONFIG:-config/demo.yaml}")
"$bin" controller "${cfg[@]}" &
pids+=($!)
"$bin" proxy --routes "$state/routes.yaml" "${cfg[@]}" &
pids+=($!)
sleep 2
cat <<MSG

Siesta is running against $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}').
  namespace siesta-demo sleeps after 2 minutes without activity.
  watch it:        kubectl get ns siesta-demo -L siesta.dev/state -w
  status:          $bin status
  wake by API:     kubectl -n siesta-demo get pods
  wake by HTTP:    curl -H 'Host: demo.localhost' http://127.0.0.1:8080/
  sleep now:       $bin sleep siesta-demo
  metrics:         curl -s http://127.0.0.1:8081/metrics | grep ^siesta_
Optional second step, a schedule (asleep outside these hours, whatever the activity):
  kubectl annotate ns siesta-demo siesta.dev/awake-hours='Mon-Fri 08:00-18:00 Europe/Berlin'
  $bin schedule 'Mon-Fri 08:00-18:00 Europe/Berlin'     # what it says now, and the next change
Ctrl-C stops the controller, the proxy and the demo backend.
MSG
wait
