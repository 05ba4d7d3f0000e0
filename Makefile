# Developer entry points for semot (Rust core + Python package, built with maturin).
#
#   make dev     create .venv, install maturin + deps + dev extras, build the extension in place
#   make build   rebuild the extension into .venv (maturin develop --release --locked)
#   make fmt     format Rust and Python sources (rewrites files)
#   make lint    all the checks CI runs on the sources (no rewriting)
#   make test    cargo tests (no python feature) + pytest against the freshly built extension
#   make bench   measured benchmark run, results in bench-results/<date>-<commit>.json
#   make wheel   the release wheel into dist/ (Linux: abi3 manylinux2014 via zig, audited)
#   make ci      the full CI script, exactly as CI runs it (bash .ci/run)
#
# The dev extras are listed once, in scripts/ci_deps.py (DEV_EXTRAS), shared with .ci/run.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Run maturin against .venv even if another venv is active in the calling shell.
MATURIN := env -u CONDA_PREFIX VIRTUAL_ENV=$(abspath $(VENV)) $(PY) -m maturin
LINT_PATHS := $(wildcard python tests benches)
BENCH_STAMP := $(shell date -u +%Y%m%d-%H%M%S)-$(shell git rev-parse --short HEAD 2>/dev/null || echo nogit)
BENCH_JSON ?= bench-results/$(BENCH_STAMP).json
BENCH_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help dev build fmt lint lint-rust lint-python test test-rust test-python bench wheel ci

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

# Requirements: [build-system].requires (maturin) + [project].dependencies + the dev extras.
dev: $(PY)
	$(PY) -c 'import tomllib' 2>/dev/null || $(PY) -m pip install tomli
	$(PY) scripts/ci_deps.py requirements > $(VENV)/requirements-dev.txt
	$(PY) -m pip install -r $(VENV)/requirements-dev.txt
	$(MATURIN) develop --release --locked
	@echo "dev environment ready: source $(VENV)/bin/activate"

build: $(PY)
	$(MATURIN) develop --release --locked

fmt: $(PY)
	cargo fmt --all
	$(PY) -m ruff check --select I --fix $(LINT_PATHS)
	$(PY) -m ruff format $(LINT_PATHS)

lint: lint-rust lint-python

lint-rust:
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
	cargo clippy --locked --workspace --all-targets -- -D warnings

# stubtest imports semot._core: it checks the extension last built by `make dev`/`make build`.
lint-python: $(PY)
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m mypy
	PYTHONPATH=python $(VENV)/bin/lint-imports --no-cache
	$(PY) -m mypy.stubtest semot._core --mypy-config-file pyproject.toml \
		--allowlist stubtest-allowlist.txt

test: test-rust test-python

# Without the python feature: with it the test binaries would need to link libpython.
test-rust:
	cargo test --locked --workspace --release --lib --tests

test-python: build
	$(PY) -m pytest $(PYTEST_ARGS)

# A measured run: full sizes (CI / SEMOT_BENCH_SMOKE unset), benchmarks enabled.
bench: build
	mkdir -p $(dir $(BENCH_JSON))
	env -u CI -u SEMOT_BENCH_SMOKE $(PY) -m pytest benches --benchmark-enable \
		--benchmark-json=$(BENCH_JSON) $(BENCH_ARGS)
	@echo "results: $(BENCH_JSON)"

# The release wheel, built by scripts/build_wheel.sh (also the wheel stage of .ci/run): on Linux
# an abi3 manylinux2014 wheel linked by zig (ziglang and auditwheel: the `wheel` extra, part of
# `make dev`) and checked with `auditwheel show`; the `release` profile.
wheel: $(PY)
	env -u CONDA_PREFIX VIRTUAL_ENV=$(abspath $(VENV)) PYTHON=$(PY) bash scripts/build_wheel.sh dist

ci:
	bash .ci/run
