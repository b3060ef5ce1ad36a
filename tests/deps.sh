#!/usr/bin/env bash
# Install what `make run`, `make test` and `make bench` need on a fresh machine:
# Debian packages (only the missing ones), then the control plane, Flux and the Gateway API CRDs from Go modules.
set -euo pipefail
need=()
for pair in git:git openssl:openssl curl:curl jq:jq promtool:prometheus nginx:nginx wrk:wrk haproxy:haproxy h2load:nghttp2-client chromium:chromium chromedriver:chromium-driver; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "[deps] installing Debian packages: ${need[*]}" >&2
  sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo
  $sudo_ apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # the prometheus, nginx and haproxy packages start services; tests and benches run their own on loopback
  $sudo_ systemctl disable --now prometheus prometheus-node-exporter nginx haproxy >/dev/null 2>&1 || true
  pkill -x prometheus 2>/dev/null || true
  [ -s /run/haproxy.pid ] && $sudo_ kill "$(cat /run/haproxy.pid)" 2>/dev/null || true
  pkill -f 'nginx: master' 2>/dev/null || true
fi
command -v go >/dev/null || { echo "[deps] Go is required to build the control plane and Flux" >&2; exit 1; }
command -v cargo >/dev/null || { echo "[deps] cargo (Rust) is required" >&2; exit 1; }
"$(dirname "$0")/cluster/build.sh" >/dev/null
"$(dirname "$0")/cluster/build.sh" flux >/dev/null
"$(dirname "$0")/cluster/build.sh" gateway-api >/dev/null
