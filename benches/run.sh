#!/usr/bin/env bash
# `make bench`: every benchmark, each a ratio against a peer in the same run or
# a figure against its target. Not part of `make test` (they take minutes and
# want a quiet machine).
#   1. audit ingest: criterion, Siesta's parser vs serde_json IgnoredAny over the
#      same generated lines; the 400-event EventList webhook p99; then
#      `siesta audit replay` over ~300 MB of generated audit JSON lines.
#   2. proxy: Siesta vs nginx and HAProxy in front of the same backend: HTTP/1.1,
#      HTTPS (wrk), HTTP/2 (h2load); held requests with and without bodies.
#   3. controller at scale: 10,000 namespaces on the local cluster.
#   4. redirect: the first request's latency over the workload's own
#      readiness, 50 wakes through the proxy's redirect port.
# SIESTA_BENCH_ONLY=audit|proxy|controller|redirect runs one.
set -euo pipefail
cd "$(dirname "$0")/.."
only=${SIESTA_BENCH_ONLY:-}
cargo build --release --locked
if [ -z "$only" ] || [ "$only" = audit ]; then
  echo "== audit ingest"
  cargo bench --locked --bench audit
  lines=${TMPDIR:-/tmp}/siesta-audit-bench.jsonl
  [ -s "$lines" ] || cargo run --release --locked --example gen_audit -- "$lines" 300
  target/release/siesta audit replay "$lines"
fi
if [ -z "$only" ] || [ "$only" = proxy ]; then
  echo "== proxy vs nginx and HAProxy"
  SIESTA_BIN=target/release/siesta benches/proxy.sh
fi
if [ -z "$only" ] || [ "$only" = controller ]; then
  echo "== controller at scale"
  tests/cluster/cluster.sh up
  eval "$(tests/cluster/cluster.sh env)"
  cargo bench --locked --bench controller
  echo "(the local cluster keeps the bench namespaces: make cluster-down)"
fi
if [ -z "$only" ] || [ "$only" = redirect ]; then
  echo "== redirect: first request over the workload's readiness"
  tests/cluster/cluster.sh up
  eval "$(tests/cluster/cluster.sh env)"
  cargo bench --locked --bench redirect
fi
