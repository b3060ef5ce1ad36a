#!/usr/bin/env bash
# A quick check of the install artifacts without cargo, for whoever edits
# deploy/: the Kustomize base and the Helm chart pass a server-side dry run,
# and helm lint is clean. tests/deploy.rs (`cargo test --test deploy`) checks
# more: that both render the same objects, and what the ServiceAccounts may do.
#
#   tests/deploy/check.sh      against $KUBECONFIG, else the local test cluster
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${KUBECONFIG:-}" ]; then
  tests/cluster/cluster.sh status >/dev/null || { echo "KUBECONFIG is unset and the local cluster is down: tests/cluster/cluster.sh up" >&2; exit 1; }
  eval "$(tests/cluster/cluster.sh env)"
fi
. tests/cluster/versions.env
helm=$(tests/deploy/helm.sh)

echo "== kubectl apply -k deploy --dry-run=server"
kubectl apply -k deploy --dry-run=server
echo "== helm lint"
"$helm" lint deploy/helm/siesta --kube-version "$K8S_VERSION"
echo "== helm template | kubectl apply --dry-run=server"
"$helm" template siesta deploy/helm/siesta -n siesta-system --kube-version "$K8S_VERSION" \
  | kubectl apply --dry-run=server -f -
echo "ok"
