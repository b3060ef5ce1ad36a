#!/usr/bin/env bash
# Build the local control plane from Go modules, once per version, into a cache
# outside the repository:
#   $SIESTA_CACHE/k8s-<v>/   kube-apiserver kube-controller-manager kube-scheduler kubectl
#   $SIESTA_CACHE/etcd-<v>/  etcd
#   $SIESTA_CACHE/kwok-<v>/  kwok kwokctl
# Each directory is complete only once its .done marker exists; a missing part is
# rebuilt, a present one costs nothing. Prints the three directories.
#
#   tests/cluster/build.sh flux   Flux for tests/cluster/flux.sh instead, printing its directories:
#   $SIESTA_CACHE/flux-source-controller-<v>/     source-controller, crds/*.yaml, role.yaml
#   $SIESTA_CACHE/flux-kustomize-controller-<v>/  kustomize-controller, crds/*.yaml, role.yaml
#   $SIESTA_CACHE/git-http-<sha>/                 git-http (git http-backend over HTTP, git-http/main.go)
#
#   tests/cluster/build.sh gateway-api   the Gateway API standard-channel CRDs, printing:
#   $SIESTA_CACHE/gateway-api-<v>/                *.yaml (config/crd/standard/ of sigs.k8s.io/gateway-api)
# Each build's time is written to build-seconds in its directory and logged.
# Go's own caches (GOMODCACHE, GOCACHE: ~/go/pkg/mod, ~/.cache/go-build by
# default) hold the downloaded modules and compiled packages, outside the repository.
#
# `go install k8s.io/kubernetes/cmd/...@v` is refused because k8s.io/kubernetes
# has replace directives (its staging modules). So we generate a tiny module that
# requires it and pins each staging module it requires at v0.0.0 to the matching
# published v0.x.y, derived from the upstream go.mod.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${SIESTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/siesta}
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
log() { printf '[build] %s\n' "$*" >&2; }

# gen_module DIR MODULE VERSION: a module requiring MODULE@VERSION, with every
# replace-to-local-directory of upstream turned into a pinned version.
gen_module() {
  local dir=$1 mod=$2 ver=$3 staging_ver=$4
  mkdir -p "$dir"
  local upstream
  upstream=$(cd "$dir" && go mod download -json "$mod@$ver" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module siesta.local/build"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$upstream" | head -n1
    echo
    echo "require $mod $ver"
    echo
    # local replaces upstream (k8s.io/api => ./staging/src/k8s.io/api) become
    # version replaces, but only for modules upstream actually requires.
    # Other replaces (github.com/opencontainers/go-digest => ... v1.0.1-...,
    # single or in a replace block) are copied as they are: upstream builds with them.
    awk -v sv="$staging_ver" '
      /^require *\(/ {inreq=1; next} inreq && /^\)/ {inreq=0}
      /^replace *\(/ {inrep=1; next} inrep && /^\)/ {inrep=0}
      inreq && NF>=2 {req[$1]=1}
      /^require [^(]/ {req[$2]=1}
      /=> *\.\.?\// { for (i=1;i<=NF;i++) if ($i=="=>") { m=$(i-1); loc[++l]=m } next }
      (inrep || /^replace /) && /=>/ { line=$0; sub(/^replace */, "", line); sub(/^[ \t]+/, "", line); sub(/ *\/\/.*/, "", line); other[++n]=line }
      END {
        for (i=1;i<=l;i++) if (loc[i] in req) print "replace " loc[i] " => " loc[i] " " sv
        for (i=1;i<=n;i++) print "replace " other[i]
      }
    ' "$upstream"
  } >"$dir/go.mod"
}

# build DIR OUT LDFLAGS PKG...: build main packages of the generated module.
build() {
  local dir=$1 out=$2 ldflags=$3; shift 3
  local tools="$dir/tools.go"
  { echo "//go:build tools"; echo; echo "package tools"; echo; echo "import ("
    for p in "$@"; do echo "	_ \"$p\""; done; echo ")"; } >"$tools"
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1 || true; cd "$dir" && go mod download)
  mkdir -p "$out"
  for p in "$@"; do
    log "go build $p"
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$out/" "$p")
  done
}

# flux_controller NAME VERSION: github.com/fluxcd/NAME@VERSION into $cache/flux-NAME-VERSION,
# with the CRDs (config/crd/bases) and ClusterRole (config/rbac/role.yaml) of that
# module version beside the binary.
flux_controller() {
  local name=$1 ver=$2
  local out=$cache/flux-$name-$ver
  if [ ! -e "$out/.done" ]; then
    log "building Flux $name $ver into $out (cold: 10 to 15 minutes on 2 cores)"
    local t0=$SECONDS src=$cache/src/flux-$name-$ver
    # The module's own api/ (a local replace) is published at the same version.
    gen_module "$src" "github.com/fluxcd/$name" "$ver" "$ver"
    build "$src" "$out" "-s -w" "github.com/fluxcd/$name"
    mkdir -p "$out/crds"
    local moddir
    moddir=$(cd "$src" && go env GOMODCACHE)/github.com/fluxcd/$name@$ver
    cp "$moddir"/config/crd/bases/*.yaml "$out/crds/"
    cp "$moddir"/config/rbac/role.yaml "$out/role.yaml"
    chmod u+w "$out"/crds/*.yaml "$out/role.yaml"
    echo $((SECONDS - t0)) >"$out/build-seconds"
    log "built $name $ver in $((SECONDS - t0)) s"
    touch "$out/.done"
  fi
  echo "$out"
}

flux_parts() {
  flux_controller source-controller "$FLUX_SOURCE_CONTROLLER_VERSION"
  flux_controller kustomize-controller "$FLUX_KUSTOMIZE_CONTROLLER_VERSION"
  # The Git server: standard library only, keyed by its source.
  local sum out
  sum=$(sha256sum "$here/git-http/main.go" | cut -c1-12)
  out=$cache/git-http-$sum
  if [ ! -e "$out/.done" ]; then
    log "building git-http into $out"
    local t0=$SECONDS
    mkdir -p "$out"
    (cd "$here/git-http" && go build -trimpath -ldflags "-s -w" -o "$out/git-http" main.go)
    echo $((SECONDS - t0)) >"$out/build-seconds"
    touch "$out/.done"
  fi
  echo "$out"
}

# gateway_api: the standard-channel CRDs of sigs.k8s.io/gateway-api at
# GATEWAY_API_VERSION, from the module (nothing to build), into $cache/gateway-api-<v>.
gateway_api() {
  local out=$cache/gateway-api-$GATEWAY_API_VERSION
  if [ ! -e "$out/.done" ]; then
    log "fetching the Gateway API $GATEWAY_API_VERSION CRDs into $out"
    local moddir
    moddir=$(cd "$cache" && go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" |
      sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    mkdir -p "$out"
    cp "$moddir"/config/crd/standard/*.yaml "$out/"
    chmod u+w "$out"/*.yaml
    touch "$out/.done"
  fi
  echo "$out"
}

case "${1:-cluster}" in
  cluster) ;;
  flux) flux_parts; exit 0 ;;
  gateway-api) gateway_api; exit 0 ;;
  *) echo "usage: $0 [cluster|flux|gateway-api]" >&2; exit 2 ;;
esac

k8s_dir=$cache/k8s-$K8S_VERSION
if [ ! -e "$k8s_dir/.done" ]; then
  log "building Kubernetes $K8S_VERSION into $k8s_dir (cold: about 20 minutes on 2 cores)"
  src=$cache/src/k8s-$K8S_VERSION
  gen_module "$src" k8s.io/kubernetes "$K8S_VERSION" "v0.${K8S_VERSION#v1.}"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  v=k8s.io/component-base/version
  ld="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  build "$src" "$k8s_dir" "$ld" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  touch "$k8s_dir/.done"
fi

etcd_dir=$cache/etcd-$ETCD_VERSION
if [ ! -e "$etcd_dir/.done" ]; then
  log "building etcd $ETCD_VERSION into $etcd_dir"
  src=$cache/src/etcd-$ETCD_VERSION
  gen_module "$src" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION"
  build "$src" "$etcd_dir" "-s -w" go.etcd.io/etcd/server/v3
  mv "$etcd_dir/server" "$etcd_dir/etcd"
  touch "$etcd_dir/.done"
fi

kwok_dir=$cache/kwok-$KWOK_VERSION
if [ ! -e "$kwok_dir/.done" ]; then
  log "building KWOK $KWOK_VERSION into $kwok_dir"
  src=$cache/src/kwok-$KWOK_VERSION
  gen_module "$src" sigs.k8s.io/kwok "$KWOK_VERSION" "$KWOK_VERSION"
  build "$src" "$kwok_dir" "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
    sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
  # The stages kwokctl uses by default (fast nodes with lease heartbeats, fast
  # pods), taken from the same module version.
  stages=$(cd "$src" && go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"; cat "$stages/$f"
  done >"$kwok_dir/stages.yaml"
  touch "$kwok_dir/.done"
fi

echo "$k8s_dir"
echo "$etcd_dir"
echo "$kwok_dir"
