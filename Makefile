# Siesta: the two commands are `make run` (the main job) and `make test` (what CI runs).
SHELL := /bin/bash
CLUSTER := tests/cluster/cluster.sh
FLUX := tests/cluster/flux.sh
CARGO ?= cargo

.PHONY: run test deps build cluster-up cluster-down lint unit integration bench promtool-check clean

## deps: Debian packages, the local control plane and Flux (built once, cached outside the repo)
deps:
	@tests/deps.sh

build:
	$(CARGO) build --release --locked

cluster-up: deps
	$(CLUSTER) up

cluster-down:
	$(CLUSTER) down

## run: the local cluster when KUBECONFIG is unset, then controller, proxy and a demo namespace
run: deps build
	@scripts/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --locked --workspace --lib --bins

## integration: real control plane and Flux (tests/cluster/flux.sh); tests start their own controller and proxy processes
integration:
	$(CLUSTER) up
	set -o pipefail; trap '$(CLUSTER) down' EXIT; $(FLUX) up || exit 1; eval "$$($(CLUSTER) env)"; eval "$$($(FLUX) env)"; $(CARGO) test --locked --no-fail-fast --test '*' -- --test-threads 4 \
	  && echo '[test] tests/proxy.rs and tests/proxy_attacks.rs again, every request through hyper (SIESTA_HTTP1_FAST_PATH=false)' \
	  && SIESTA_HTTP1_FAST_PATH=false $(CARGO) test --locked --no-fail-fast --test proxy --test proxy_attacks -- --test-threads 4

test: deps lint unit integration

bench: deps
	benches/run.sh

clean: cluster-down
	$(CARGO) clean

## promtool-check: alert rules checked and unit-tested, PrometheusRule in sync (tests/deploy.rs runs the same in `make test`)
promtool-check:
	promtool check rules deploy/prometheus/rules.yaml
	promtool test rules deploy/prometheus/rules_test.yaml
	deploy/prometheus/build.sh --check
