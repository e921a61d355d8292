# Veritrail: the two commands a new machine needs are `make run` and `make test`.
# Each installs what is missing first (see .ci/install-deps).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
# Link a RocksDB compiled by an earlier build when one is cached (.ci/rocksdb-cache).
ROCKSDB_ENV = $(shell .ci/rocksdb-cache env)
CARGO ?= $(if $(ROCKSDB_ENV),env $(ROCKSDB_ENV) cargo,cargo)

.PHONY: help deps deps-build rocksdb build test test-rust test-format test-deploy test-fuzz lint fmt bench run node-start node-stop node-add node-remove node-list clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install what building and testing need and is missing (Debian packages, Python tools)
	@.ci/install-deps

deps-build: ## install only what building the binaries needs (clang, libclang-dev, protoc)
	@.ci/install-deps --build

# Compiles RocksDB's C++ once per machine, alone, and caches the library; every
# cargo command after it links the cached one (.ci/rocksdb-cache explains why).
rocksdb: deps-build ## compile and cache RocksDB once (nothing to do when cached)
	@.ci/rocksdb-cache ensure

build: deps rocksdb ## build every crate
	$(CARGO) build --workspace --all-targets

# The format check and doc tests run first so that the test runner's summary is the
# last thing printed: CI reads the closing lines.
test: deps rocksdb test-format test-deploy test-fuzz lint test-rust ## the whole suite, as CI runs it

test-rust: rocksdb
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --doc --quiet
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  echo "cargo-nextest not found; using cargo test"; \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

# Instrumented builds get their own directory beside the workspace's: their
# RUSTFLAGS differ, and sharing one would throw the main build's cache away.
test-fuzz: ## a short run of every fuzz target of the core over its corpus (FUZZ_SECS each)
	CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-$(CURDIR)/target}/fuzz crates/core/fuzz/smoke.sh

test-deploy: ## static checks of deploy/ (k8s schemas, compose, systemd unit)
	deploy/check

test-format: ## verify the golden vectors with the independent Python verifier
	$(PYTHON) tests/format/verify_vectors.py crates/core/testdata/vectors.json crates/core/testdata/vectors-signed.json

lint: deps rocksdb ## formatting and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

# Figures go to stdout and to target/bench/*.jsonl; docs/BENCHMARKS.md explains them.
BENCH_SECONDS ?= 10
BENCH_ENTRIES ?= 1000000
bench: deps rocksdb ## run the benchmarks (Veritrail, etcd, NATS JetStream side by side) and print their figures
	@.ci/install-deps --bench
	$(CARGO) bench -p veritrail-core --bench core
	$(CARGO) bench -p veritrail-store --bench store
	$(CARGO) build --release --workspace --bins
	@mkdir -p $${CARGO_TARGET_DIR:-target}/bench
	$${CARGO_TARGET_DIR:-target}/release/veritrail-bench compare --seconds $(BENCH_SECONDS) \
	  --json $${CARGO_TARGET_DIR:-target}/bench/compare.jsonl
	$${CARGO_TARGET_DIR:-target}/release/veritrail-bench scale --entries $(BENCH_ENTRIES) \
	  --json $${CARGO_TARGET_DIR:-target}/bench/scale.jsonl
	$${CARGO_TARGET_DIR:-target}/release/veritrail-bench tiles --seconds $(BENCH_SECONDS)

run: deps-build rocksdb ## start a local three-node cluster on 127.0.0.1 (data in ./data; Ctrl-C stops it)
	$(CARGO) build -p veritrail-server --bin veritraild -p veritrail-cli --bin veritrail
	deploy/local/run.sh

# One node of the `make run` cluster, from another terminal: N is its id.
node-start: ## start node N of the local cluster again (make node-start N=2)
	@deploy/local/node.sh start $(N)
node-stop: ## stop node N of the local cluster, keeping its data (make node-stop N=2)
	@deploy/local/node.sh stop $(N)
node-add: ## start node N (4 to 9) empty and make it a voter of the local cluster
	@deploy/local/node.sh add $(N)
node-remove: ## take node N out of the local cluster; it stops and its data is set aside
	@deploy/local/node.sh remove $(N)
node-list: ## the local cluster's nodes and whether each runs
	@deploy/local/node.sh list

clean:
	$(CARGO) clean
