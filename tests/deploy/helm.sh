#!/usr/bin/env bash
# Build helm from its Go module, once per version, into a cache outside the
# repository, and print the path of the binary:
#   ${SIESTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/siesta}/helm-<version>/helm
# Only `helm template` is used (no cluster, no chart repositories), so any helm
# 3 works; HELM_VERSION overrides the pin. A cold build takes a few minutes.
set -euo pipefail
version=${HELM_VERSION:-v3.19.5}
cache=${SIESTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/siesta}
dir=$cache/helm-$version
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
log() { printf '[helm] %s\n' "$*" >&2; }

if [ ! -x "$dir/helm" ] || [ ! -e "$dir/.done" ]; then
  mkdir -p "$dir"
  log "building helm $version into $dir"
  # The ldflags of helm's own Makefile: its version, and the Kubernetes version
  # `helm template` assumes without --kube-version (that of its client-go).
  gomod=$(cd "$dir" && go mod download -json "helm.sh/helm/v3@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]}' "$gomod")
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$version"
  for p in pkg/chartutil pkg/lint/rules; do
    ld="$ld -X helm.sh/helm/v3/$p.k8sVersionMajor=1 -X helm.sh/helm/v3/$p.k8sVersionMinor=${minor:-30}"
  done
  if ! GOBIN=$dir go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$version" 2>"$dir/install.log"; then
    # `go install mod@v` is refused when the module's go.mod has replace
    # directives; build it from a tiny generated module instead.
    log "go install refused ($(tail -n1 "$dir/install.log")); building from a generated module"
    src=$cache/src/helm-$version
    mkdir -p "$src"
    printf 'module siesta.local/helm\n\ngo 1.24\n\nrequire helm.sh/helm/v3 %s\n' "$version" >"$src/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "helm.sh/helm/v3/cmd/helm"\n' >"$src/tools.go"
    (cd "$src" && go mod tidy -e >/dev/null 2>&1 || true)
    (cd "$src" && go build -trimpath -ldflags "$ld" -o "$dir/helm" helm.sh/helm/v3/cmd/helm)
  fi
  touch "$dir/.done"
fi
echo "$dir/helm"
