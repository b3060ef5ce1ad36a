#!/usr/bin/env bash
# Build prometheusrule.yaml (a Prometheus Operator PrometheusRule) from the
# plain rules file rules.yaml: the same groups, under spec.
#   deploy/prometheus/build.sh           rewrite prometheusrule.yaml
#   deploy/prometheus/build.sh --check   exit 1 if prometheusrule.yaml is stale
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

render() {
  cat <<'HEADER'
# Generated from rules.yaml by deploy/prometheus/build.sh; edit rules.yaml instead.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: siesta
  namespace: siesta-system
  labels:
    app.kubernetes.io/name: siesta
    app.kubernetes.io/part-of: siesta
spec:
HEADER
  # drop the file's leading comment block, indent the rest under spec
  sed -e '/^#/d' -e 's/^\(.\)/  \1/' "$here/rules.yaml"
}

case "${1:-}" in
  --check)
    if ! diff -u "$here/prometheusrule.yaml" <(render); then
      echo "deploy/prometheus/prometheusrule.yaml is stale: run deploy/prometheus/build.sh" >&2
      exit 1
    fi
    ;;
  "") render > "$here/prometheusrule.yaml" ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
