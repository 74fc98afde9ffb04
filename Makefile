# fastblock monitor — common tasks. `make help` lists them.
#
# Quick start on a fresh machine:
#   make run    # standalone monitor with its embedded etcd (data and log under ./run)
#   make test   # fmt check, clippy -D warnings, every test (real etcd, real processes)

CARGO   ?= cargo
PREFIX  ?= /usr/local
RUN_DIR ?= run
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# How long `make chaos` injects faults, per etcd_server configuration.
CHAOS_DURATION ?= 10m

.PHONY: help build run cluster cluster-stop test test-deps scale-test chaos bench lint fmt install deps clean

help: ## Show this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

deps: ## Install what running needs (etcd, etcdctl) when missing
	@if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then \
		echo "installing etcd-server and etcd-client with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq etcd-server etcd-client >/dev/null; \
	fi
	@etcd --version | head -1

test-deps: deps ## Install what the tests also need (promtool, prometheus, iproute2) when missing
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then \
		echo "installing prometheus (promtool, prometheus) with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi
	@promtool --version 2>&1 | head -1
	@if ! command -v ip >/dev/null 2>&1; then \
		echo "installing iproute2 (ip, for the chaos test's network namespaces) with apt-get"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq iproute2 >/dev/null; \
	fi

build: ## Build release binaries (target/release/fastblock-mon, fbclient)
	$(CARGO) build --release --bins

run: deps build ## Run a standalone monitor with embedded etcd (Ctrl-C stops it)
	@mkdir -p $(RUN_DIR)/standalone
	@echo "fastblock-mon: gRPC on 127.0.0.1:3333, metrics on http://127.0.0.1:3332/metrics"
	@echo "data in $(RUN_DIR)/standalone/data, log in $(RUN_DIR)/standalone/monitor.log"
	@echo "try: ./target/release/fbclient -op=leader"
	./target/release/fastblock-mon --conf config/monitor.toml \
		--data-dir $(RUN_DIR)/standalone/data --log-path $(RUN_DIR)/standalone/monitor.log

cluster: deps build ## Start the 3-monitor local cluster of config/cluster/ in the background
	@mkdir -p $(RUN_DIR)/cluster
	@for i in 1 2 3; do \
		./target/release/fastblock-mon --conf config/cluster/monitor$$i.toml \
			>$(RUN_DIR)/cluster/monitor$$i.stderr 2>&1 & echo $$! > $(RUN_DIR)/cluster/monitor$$i.pid; \
		echo "monitor$$i started (pid $$!, log $(RUN_DIR)/cluster/monitor$$i.log)"; \
	done
	@echo "try: ./target/release/fbclient -op=leader -mon=127.0.0.1:3333,127.0.0.1:3343,127.0.0.1:3353"

cluster-stop: ## Stop the local cluster started by `make cluster`
	@for i in 1 2 3; do \
		f=$(RUN_DIR)/cluster/monitor$$i.pid; \
		[ -f $$f ] && kill -TERM $$(cat $$f) 2>/dev/null; rm -f $$f; \
	done; true

test: test-deps ## Check formatting and lints, then run every test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run; \
	else \
		$(CARGO) test; \
	fi

scale-test: deps ## The 10,000-OSD / 100,000-PG test at etcd's default limits (about a minute)
	$(CARGO) test --release --test scale -- --ignored --nocapture

chaos: test-deps ## Chaos test + history checker, CHAOS_DURATION per config (10m); CHAOS_SEED=n replays
	CHAOS_DURATION=$(CHAOS_DURATION) $(CARGO) test --test chaos -- --nocapture --test-threads=1 chaos_with_

bench: deps ## Run the benchmarks (figures in docs/benchmarks.md)
	$(CARGO) bench --bench placement
	$(CARGO) bench --bench maps
	$(CARGO) bench --bench bootstorm
	$(CARGO) bench --bench watch
	$(CARGO) bench --bench watch_memory
	$(CARGO) bench --bench failover
	$(CARGO) bench --bench connections
	$(CARGO) bench --bench heartbeat_flood
	$(CARGO) bench --bench events
	$(CARGO) bench --bench webhooks
	$(CARGO) bench --bench legacy_polls
	$(CARGO) bench --bench migrate

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

install: build ## Install binaries to $(PREFIX)/bin, the unit, an example config, alert rules and dashboard
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/fastblock $(DESTDIR)/etc/systemd/system
	install -m 0755 target/release/fastblock-mon target/release/fbclient $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 config/fastblock-mon.service $(DESTDIR)/etc/systemd/system/fastblock-mon.service
	@if [ ! -f $(DESTDIR)/etc/fastblock/monitor.toml ]; then \
		install -m 0644 config/monitor.toml $(DESTDIR)/etc/fastblock/monitor.toml; \
	else echo "keeping existing /etc/fastblock/monitor.toml"; fi
	install -d $(DESTDIR)$(PREFIX)/share/doc/fastblock-monitor
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/fastblock-monitor/
	install -d $(DESTDIR)$(PREFIX)/share/fastblock-monitor/prometheus $(DESTDIR)$(PREFIX)/share/fastblock-monitor/grafana
	install -m 0644 config/prometheus/alerts.yml config/prometheus/prometheus.yml $(DESTDIR)$(PREFIX)/share/fastblock-monitor/prometheus/
	install -m 0644 config/grafana/fastblock-monitor.json $(DESTDIR)$(PREFIX)/share/fastblock-monitor/grafana/

clean: ## Remove build output and ./run
	$(CARGO) clean
	rm -rf $(RUN_DIR)
