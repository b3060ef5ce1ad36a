#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for Siesta's tests and demo:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (fake
# nodes whose pods become Running and Ready without running anything).
#
#   tests/cluster/cluster.sh up     build if needed, start, wait until ready (idempotent)
#   tests/cluster/cluster.sh env    print the shell exports (KUBECONFIG, PATH)
#   tests/cluster/cluster.sh down   stop every process it started (and Flux's, tests/cluster/flux.sh), remove its state
#   tests/cluster/cluster.sh status say whether it runs
#   tests/cluster/cluster.sh restart-apiserver [SECS]  kill the apiserver, wait, start it again (fault tests)
#
# The apiserver sends audit events (audit.k8s.io/v1) in batches of at most 1 s to
# http://127.0.0.1:8443/audit (the controller's default audit address, override
# with SIESTA_AUDIT_WEBHOOK) and writes them to $dir/audit.log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
cache=${SIESTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/siesta}
dir=${SIESTA_CLUSTER_DIR:-${TMPDIR:-/tmp}/siesta-cluster}
k8s_bin=$cache/k8s-$K8S_VERSION
etcd_bin=$cache/etcd-$ETCD_VERSION
kwok_bin=$cache/kwok-$KWOK_VERSION
api_port=${SIESTA_APISERVER_PORT:-16443}
etcd_port=${SIESTA_ETCD_PORT:-12379}
audit_webhook=${SIESTA_AUDIT_WEBHOOK:-http://127.0.0.1:8443/audit}
nodes=${SIESTA_FAKE_NODES:-3}
# The test pod network: KWOK gives pods addresses of $pod_cidr; they live in
# the network namespace $netns (which accepts every address of the range),
# joined to the host by a veth pair whose host side is $host_ip. Tests run
# their backends there, on the pods' own addresses; host processes (the
# proxy) listen on $host_ip to be reachable from pods. The namespace has no
# other route: no traffic leaves the machine.
pod_cidr=${SIESTA_POD_CIDR:-10.244.0.0/16}
netns=${SIESTA_TEST_NETNS:-siesta-pods}
link_net=10.243.255.0/30
host_ip=10.243.255.1
netns_ip=10.243.255.2
# shellcheck source=lib.sh
. "$here/lib.sh"
log() { printf '[cluster] %s\n' "$*" >&2; }

kubectl() { "$k8s_bin/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }

healthy() {
  [ -f "$dir/kubeconfig" ] && curl -sf --max-time 2 --cacert "$dir/pki/ca.crt" \
    -H "Authorization: Bearer $(cat "$dir/admin.token" 2>/dev/null)" \
    "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1
}

pki() {
  local p=$dir/pki
  mkdir -p "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=siesta-local-ca" \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$p/apiserver.key" \
    -out "$p/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >"$p/ext"
  openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days 3650 -extfile "$p/ext" -out "$p/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
}

kubeconfig() { # kubeconfig FILE TOKEN
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: siesta-local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $dir/pki/ca.crt
users:
- name: user
  user:
    token: $2
contexts:
- name: siesta-local
  context: {cluster: siesta-local, user: user}
current-context: siesta-local
KC
}

start_apiserver() {
  log "starting kube-apiserver $K8S_VERSION on 127.0.0.1:$api_port"
  start kube-apiserver "$k8s_bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --token-auth-file "$dir/tokens.csv" --authorization-mode Node,RBAC \
    --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged \
    --max-requests-inflight 2000 --max-mutating-requests-inflight 1000 \
    --audit-policy-file "$here/audit-policy.yaml" \
    --audit-log-path "$dir/audit.log" --audit-log-format json --audit-log-maxsize 200 --audit-log-maxbackup 2 \
    --audit-webhook-config-file "$dir/audit-webhook.kubeconfig" --audit-webhook-mode batch \
    --audit-webhook-batch-max-wait 1s --audit-webhook-batch-throttle-enable=false \
    --audit-webhook-initial-backoff 1s
}

up() {
  if healthy; then
    log "already up ($dir)"
    ip netns list | grep -qw "$netns" || pod_network_up
    return 0
  fi
  [ -d "$dir" ] && down_quiet
  "$here/build.sh" >/dev/null
  pod_network_up
  mkdir -p "$dir/logs" "$dir/pids" "$dir/etcd"
  pki
  # Static tokens: the admin (a person, in system:masters) and one per component.
  local admin cm sched kwok
  admin=$(openssl rand -hex 16); cm=$(openssl rand -hex 16); sched=$(openssl rand -hex 16); kwok=$(openssl rand -hex 16)
  echo "$admin" >"$dir/admin.token"
  cat >"$dir/tokens.csv" <<T
$admin,siesta-admin,uid-admin,"system:masters"
$cm,system:kube-controller-manager,uid-cm
$sched,system:kube-scheduler,uid-sched
$kwok,system:kwok-controller,uid-kwok,"system:masters"
T
  kubeconfig "$dir/kubeconfig" "$admin"
  kubeconfig "$dir/controller-manager.kubeconfig" "$cm"
  kubeconfig "$dir/scheduler.kubeconfig" "$sched"
  kubeconfig "$dir/kwok.kubeconfig" "$kwok"
  cat >"$dir/audit-webhook.kubeconfig" <<W
apiVersion: v1
kind: Config
clusters:
- name: siesta
  cluster: {server: "$audit_webhook"}
users:
- name: apiserver
contexts:
- name: default
  context: {cluster: siesta, user: apiserver}
current-context: default
W

  log "starting etcd"
  start etcd "$etcd_bin/etcd" --data-dir "$dir/etcd" --name siesta \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-cluster "siesta=http://127.0.0.1:$((etcd_port + 1))" \
    --quota-backend-bytes 8589934592 --unsafe-no-fsync --log-level warn
  wait_for 30 etcd curl -sf "http://127.0.0.1:$etcd_port/health"

  start_apiserver
  wait_for 60 kube-apiserver healthy

  log "starting kube-controller-manager, kube-scheduler and kwok"
  start kube-controller-manager "$k8s_bin/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" --bind-address 127.0.0.1 --secure-port 0 \
    --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
    --kube-api-qps 500 --kube-api-burst 1000 --concurrent-replicaset-syncs 20 --concurrent-deployment-syncs 20 \
    --use-service-account-credentials=true --leader-elect=false --controllers '*,-nodeipam,-cloud-node-lifecycle'
  start kube-scheduler "$k8s_bin/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
    --kube-api-qps 500 --kube-api-burst 1000
  start kwok "$kwok_bin/kwok" --kubeconfig "$dir/kwok.kubeconfig" --config "$kwok_bin/stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --server-address 127.0.0.1:0 --cidr "${pod_cidr%.0/*}.1/${pod_cidr#*/}" --node-ip 10.250.0.1 --node-lease-duration-seconds 40

  local i
  for i in $(seq 1 "$nodes"); do
    cat <<N
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "1100"}
  capacity: {cpu: "64", memory: 256Gi, pods: "1100"}
N
    echo "---"
  done | kubectl apply -f - >/dev/null
  wait_for 60 "fake nodes Ready" kubectl wait --for=condition=Ready node --all --timeout=1s
  wait_for 60 "the default service account" kubectl get serviceaccount default -n default
  kubectl create namespace siesta-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  gateway_api_crds
  log "up: $("$k8s_bin/kubectl" version --kubeconfig "$dir/kubeconfig" -o json | jq -r .serverVersion.gitVersion), $nodes fake nodes, state in $dir"
}

# The Gateway API standard-channel CRDs (GATEWAY_API_VERSION), for siesta
# proxy's HTTPRoutes; server-side, since they exceed the client-side annotation.
gateway_api_crds() {
  local crds
  crds=$("$here/build.sh" gateway-api)
  kubectl apply --server-side --force-conflicts -f "$crds" >/dev/null
  log "Gateway API $GATEWAY_API_VERSION CRDs applied"
}

# Routes of the machine (other than the default route and ours) that overlap $1.
overlapping_routes() {
  { ip -4 route show to match "$1"; ip -4 route show root "$1"; } | grep -v '^default' | grep -v "dev $netns-h" || true
}

pod_network_up() {
  if ip netns list | grep -qw "$netns"; then pod_network_down; fi
  local net
  for net in "$pod_cidr" "$link_net"; do
    if [ -n "$(overlapping_routes "$net")" ]; then
      log "the test pod network $net overlaps a route of this machine: $(overlapping_routes "$net" | head -1); set SIESTA_POD_CIDR"
      exit 1
    fi
  done
  ip netns add "$netns"
  ip link add "$netns-h" type veth peer name "$netns-p"
  ip link set "$netns-p" netns "$netns"
  ip addr add "$host_ip/30" dev "$netns-h"
  ip link set "$netns-h" up
  ip route add "$pod_cidr" via "$netns_ip" dev "$netns-h" src "$host_ip"
  ip netns exec "$netns" ip link set lo up
  ip netns exec "$netns" ip link set "$netns-p" name eth0
  ip netns exec "$netns" ip addr add "$netns_ip/30" dev eth0
  ip netns exec "$netns" ip link set eth0 up
  # Every address of the pod range is local in the namespace (AnyIP).
  ip netns exec "$netns" ip route add local "$pod_cidr" dev lo
  log "pod network $pod_cidr in network namespace $netns, host side $host_ip"
}

pod_network_down() {
  ip link del "$netns-h" 2>/dev/null || true
  ip netns del "$netns" 2>/dev/null || true
}

down_quiet() {
  # Flux (tests/cluster/flux.sh) keeps its state and processes in $dir/flux.
  if [ -d "$dir/flux" ]; then "$here/flux.sh" down 2>/dev/null || true; fi
  stop_all
  pod_network_down
}

case "${1:-}" in
  up) up ;;
  down) down_quiet; log "down" ;;
  env)
    echo "export KUBECONFIG=$dir/kubeconfig"
    echo "export PATH=$k8s_bin:\$PATH"
    echo "export SIESTA_AUDIT_LOG_FILE=$dir/audit.log"
    echo "export SIESTA_TEST_NETNS=$netns"
    echo "export SIESTA_TEST_HOST_IP=$host_ip"
    ;;
  restart-apiserver) # stop the apiserver (SIGKILL), start it again: for fault tests
    pid=$(cat "$dir/pids/kube-apiserver")
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    sleep "${2:-0}"
    start_apiserver
    wait_for 60 kube-apiserver healthy
    log "kube-apiserver restarted"
    ;;
  status) if healthy; then echo "up ($dir)"; else echo "down"; exit 1; fi ;;
  *) echo "usage: $0 up|down|env|status|restart-apiserver [SECS]" >&2; exit 2 ;;
esac
