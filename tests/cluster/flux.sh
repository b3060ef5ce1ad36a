#!/usr/bin/env bash
# Flux on the local cluster (tests/cluster/cluster.sh): source-controller and
# kustomize-controller, built from their Go modules (tests/cluster/build.sh flux),
# run as processes against the cluster with their own ServiceAccounts in
# flux-system, and a Git server on 127.0.0.1 (git http-backend) serving the bare
# repositories of one directory.
#
#   tests/cluster/flux.sh up     after cluster.sh up: build if needed, install the CRDs,
#                                start the Git server and both controllers, wait until ready (idempotent)
#   tests/cluster/flux.sh env    print the shell exports (SIESTA_GIT_URL, SIESTA_GIT_DIR, SIESTA_FLUX_LOGS)
#   tests/cluster/flux.sh down   stop every process it started, remove its state (cluster.sh down does it too)
#   tests/cluster/flux.sh status say whether it runs
#
# A repository is a bare repository in $SIESTA_GIT_DIR (git init --bare
# $SIESTA_GIT_DIR/NAME.git), cloned, fetched and pushed at $SIESTA_GIT_URL/NAME.git.
# A GitRepository (source.toolkit.fluxcd.io/v1) with that URL and a Kustomization
# (kustomize.toolkit.fluxcd.io/v1) in any namespace work as in a real cluster.
# $SIESTA_FLUX_LOGS/kustomize-controller.log has a JSON line "Reconciliation
# finished ..." per reconcile of each Kustomization.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
cache=${SIESTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/siesta}
cluster_dir=${SIESTA_CLUSTER_DIR:-${TMPDIR:-/tmp}/siesta-cluster}
dir=$cluster_dir/flux
k8s_bin=$cache/k8s-$K8S_VERSION
# 127.0.0.1 ports: the artifact server (kustomize-controller fetches source-controller's
# tarballs there), then each controller's health and metrics endpoints. The Git server
# takes a free port and writes it to $dir/git.addr. (19090 is docs/render-demo.sh's Prometheus.)
base=${SIESTA_FLUX_PORT_BASE:-19290}
storage_addr=127.0.0.1:$base
sc_health=127.0.0.1:$((base + 1)) sc_metrics=127.0.0.1:$((base + 2))
kc_health=127.0.0.1:$((base + 3)) kc_metrics=127.0.0.1:$((base + 4))
# shellcheck source=lib.sh
. "$here/lib.sh"
log() { printf '[flux] %s\n' "$*" >&2; }

kubectl() { "$k8s_bin/kubectl" --kubeconfig "$cluster_dir/kubeconfig" "$@"; }

running() { # running NAME: its process is alive
  [ -f "$dir/pids/$1" ] && kill -0 "$(cat "$dir/pids/$1")" 2>/dev/null
}

git_url() { echo "http://$(cat "$dir/git.addr")"; }

healthy() {
  running git-http && running source-controller && running kustomize-controller &&
    curl -sf --max-time 2 "$(git_url)/healthz" >/dev/null 2>&1 &&
    curl -sf --max-time 2 "http://$sc_health/readyz" >/dev/null 2>&1 &&
    curl -sf --max-time 2 "http://$kc_health/readyz" >/dev/null 2>&1
}

sa_kubeconfig() { # sa_kubeconfig ACCOUNT FILE: a kubeconfig with a token of flux-system/ACCOUNT
  local token server
  token=$(kubectl create token "$1" -n flux-system --duration 8760h)
  server=$(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}')
  cat >"$2" <<KC
apiVersion: v1
kind: Config
clusters:
- name: siesta-local
  cluster:
    server: $server
    certificate-authority: $cluster_dir/pki/ca.crt
users:
- name: $1
  user:
    token: $token
contexts:
- name: siesta-local
  context: {cluster: siesta-local, user: $1}
current-context: siesta-local
KC
}

rbac() { # the ServiceAccounts and what Flux's own install grants them
  local sc_role=$1
  kubectl create namespace flux-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  {
    # source-controller: the ClusterRole of its module (config/rbac/role.yaml), renamed.
    sed 's/name: manager-role/name: flux-source-controller/' "$sc_role"
    cat <<Y
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: source-controller, namespace: flux-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: kustomize-controller, namespace: flux-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: flux-source-controller}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: flux-source-controller}
subjects: [{kind: ServiceAccount, name: source-controller, namespace: flux-system}]
---
# kustomize-controller applies any kind: Flux's install binds it to cluster-admin
# (its cluster-reconciler binding) unless a Kustomization names a serviceAccountName.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: flux-cluster-reconciler}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: kustomize-controller, namespace: flux-system}]
Y
  } | kubectl apply -f - >/dev/null
}

up() {
  if ! "$here/cluster.sh" status >/dev/null 2>&1; then
    log "the cluster is down: run tests/cluster/cluster.sh up first"
    return 1
  fi
  if [ -f "$dir/git.addr" ] && healthy; then
    log "already up ($dir)"
    return 0
  fi
  [ -d "$dir" ] && stop_all
  local built sc kc git
  built=$("$here/build.sh" flux)
  sc=$(sed -n 1p <<<"$built") kc=$(sed -n 2p <<<"$built") git=$(sed -n 3p <<<"$built")
  mkdir -p "$dir/logs" "$dir/pids" "$dir/repos" "$dir/artifacts"

  log "installing the CRDs of source-controller $FLUX_SOURCE_CONTROLLER_VERSION and kustomize-controller $FLUX_KUSTOMIZE_CONTROLLER_VERSION"
  kubectl apply --server-side --force-conflicts -f "$sc/crds" -f "$kc/crds" >/dev/null
  kubectl wait --for=condition=Established -f "$sc/crds" -f "$kc/crds" --timeout=60s >/dev/null
  rbac "$sc/role.yaml"
  wait_for 30 "the flux-system service accounts" kubectl get serviceaccount source-controller kustomize-controller -n flux-system
  sa_kubeconfig source-controller "$dir/source-controller.kubeconfig"
  sa_kubeconfig kustomize-controller "$dir/kustomize-controller.kubeconfig"

  log "starting the Git server (git http-backend) on 127.0.0.1 for $dir/repos"
  start git-http "$git/git-http" -root "$dir/repos" -listen 127.0.0.1:0 -addr-file "$dir/git.addr"
  wait_for 30 "the Git server" test -s "$dir/git.addr"

  log "starting source-controller (artifacts on http://$storage_addr) and kustomize-controller"
  start source-controller env KUBECONFIG="$dir/source-controller.kubeconfig" RUNTIME_NAMESPACE=flux-system \
    "$sc/source-controller" --storage-path "$dir/artifacts" \
    --storage-addr "$storage_addr" --storage-adv-addr "$storage_addr" \
    --health-addr "$sc_health" --metrics-addr "$sc_metrics" --events-addr "" \
    --enable-leader-election=false --watch-all-namespaces=true --log-level info --log-encoding json
  start kustomize-controller env KUBECONFIG="$dir/kustomize-controller.kubeconfig" RUNTIME_NAMESPACE=flux-system \
    "$kc/kustomize-controller" --health-addr "$kc_health" --metrics-addr "$kc_metrics" --events-addr "" \
    --enable-leader-election=false --watch-all-namespaces=true --log-level info --log-encoding json
  wait_for 90 "Flux's controllers and the Git server" healthy
  log "up: source-controller $FLUX_SOURCE_CONTROLLER_VERSION, kustomize-controller $FLUX_KUSTOMIZE_CONTROLLER_VERSION, Git at $(git_url), state in $dir"
}

case "${1:-}" in
  up) up ;;
  down) stop_all; log "down" ;;
  env)
    [ -f "$dir/git.addr" ] || { log "not up: run tests/cluster/flux.sh up"; exit 1; }
    echo "export SIESTA_GIT_URL=$(git_url)"
    echo "export SIESTA_GIT_DIR=$dir/repos"
    echo "export SIESTA_FLUX_LOGS=$dir/logs"
    ;;
  status) if [ -f "$dir/git.addr" ] && healthy; then echo "up ($dir)"; else echo "down"; exit 1; fi ;;
  *) echo "usage: $0 up|down|env|status" >&2; exit 2 ;;
esac
