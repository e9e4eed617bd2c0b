# interpool developer tasks. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
# Pythons the test matrix runs on (built from source when missing; 3.12 where the machine has
# one, skipped with a message otherwise; see scripts/python.sh).
MATRIX ?= 3.12 3.13 3.14 3.14t
# Python for the demo/dev venv: PYTHON=... or the first python3.1x >= 3.12 on PATH.
DEV ?= any
PYTEST_ARGS ?=
# The Python of the matrix whose suite runs in interpool's debug mode (src/debug.rs).
DEBUG_PYTHON ?= 3.14
# Test tiers (docs/testing.md): FULL_PYTHON runs the whole suite; every other Python of MATRIX
# runs the fast tier (INTERPOOL_TEST_TIER=fast): every test whose behaviour depends on the
# Python, the repeated ones (soak, exit) fewer times, and not the tests marked one_python (the
# stdlib-reference executors, joblib, the examples, the executor's and the lane's pure-Python
# mechanics). FULL_PYTHON=all runs the whole suite on every Python.
FULL_PYTHON ?= $(DEBUG_PYTHON)

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Find or build Python, make .venvs/$(DEV), build and install interpool there
	@scripts/setup.sh $(DEV) >/dev/null

.PHONY: pythons
pythons: ## Find or build every Python of the matrix ($(MATRIX))
	@for t in $(MATRIX); do scripts/python.sh $$t; done

.PHONY: demo
demo: setup ## Set up, then time a CPU-bound workload on interpool vs the alternatives
	.venvs/$(DEV)/bin/python benchmarks/demo.py

.PHONY: bench
bench: setup ## Set up, then run the benchmark suite (all executors side by side) into benchmarks/results/
	.venvs/$(DEV)/bin/python -m pip install -q --disable-pip-version-check -r benchmarks/requirements.txt
	@ft=$$(scripts/setup.sh 3.14t) && \
	  .venvs/$(DEV)/bin/python benchmarks/suite.py --out benchmarks/results --ft-python $$ft/bin/python $(BENCH_ARGS)

.PHONY: bench-scaling
bench-scaling: ## CPU-bound speed-up at 1-16 workers, every executor, on 3.14t (for a many-core machine), into the results directory
	@ft=$$(scripts/setup.sh 3.14t) && $$ft/bin/python benchmarks/scaling.py $(BENCH_ARGS)

.PHONY: bench-overhead
bench-overhead: setup ## Per-task overheads and start-up vs ThreadPool/forkserver, interleaved (issue 15's ratios)
	.venvs/$(DEV)/bin/python benchmarks/bench_overhead.py

.PHONY: bench-instructions
bench-instructions: setup ## Instructions per trivial task on the main and worker threads (callgrind)
	.venvs/$(DEV)/bin/python benchmarks/bench_instructions.py

.PHONY: bench-queue
bench-queue: setup ## Queue and buffer benchmarks against the stdlib's concurrent.interpreters queue
	.venvs/$(DEV)/bin/python benchmarks/bench_queue.py

.PHONY: bench-interrupt
bench-interrupt: setup ## Interrupt latency after a deadline, and the cost of the timeout machinery
	.venvs/$(DEV)/bin/python benchmarks/bench_interrupt.py

.PHONY: bench-lane
bench-lane: setup ## Mixed workload: interpool with its fallback lane vs ProcessPoolExecutor (numpy tasks when installed)
	@.venvs/$(DEV)/bin/python -c 'import numpy' 2>/dev/null || .venvs/$(DEV)/bin/python -m pip install -q \
	  --disable-pip-version-check numpy || echo "numpy did not install: the extension tasks use faulthandler"
	.venvs/$(DEV)/bin/python benchmarks/bench_lane.py $(BENCH_ARGS)

.PHONY: bench-isolation
bench-isolation: setup ## numpy on 2 workers: interpool isolate= vs process pool, threads (speed-up, start-up, RSS)
	.venvs/$(DEV)/bin/python benchmarks/bench_isolation.py

.PHONY: bench-blas
bench-blas: setup ## Workers calling BLAS at once: blas_threads="auto"/N/None vs threads and process pools
	.venvs/$(DEV)/bin/python benchmarks/bench_blas.py $(BENCH_ARGS)

# numpy's test suite once in the main interpreter, then REPEAT rounds of 2 concurrent workers
# (each ~10 min on 2 cores); EVIDENCE_ARGS=--quick: issue 12's five files (~1 min a round,
# e.g. REPEAT=20 to look for crashes).
REPEAT ?= 1
EVIDENCE_ARGS ?=
.PHONY: isolation-evidence
isolation-evidence: setup ## numpy's test suite in 2 concurrent isolated workers vs the main interpreter (>= 99% passed), REPEAT rounds
	.venvs/$(DEV)/bin/python scripts/isolation-evidence.py --repeat $(REPEAT) $(EVIDENCE_ARGS)

.PHONY: wheels
wheels: ## Build manylinux2014 wheels for every Python of the matrix, and the sdist, into dist/
	@rm -f dist/interpool-*.whl dist/interpool-*.tar.gz
	@scripts/build-wheels.sh --skip-missing dist $(MATRIX)

.PHONY: test-wheel
test-wheel: setup ## Build a manylinux wheel, install it into a clean venv, run a smoke test there
	@rm -rf dist/wheel-test && scripts/build-wheels.sh --no-sdist dist/wheel-test $(DEV) >/dev/null
	scripts/test-wheel.sh $$(cat .venvs/$(DEV)/.interpool-stamp | cut -d' ' -f1) dist/wheel-test/*.whl

.PHONY: test-rust
test-rust: setup ## cargo test: the pool engine, and the extension's tests (codec format, decoder) on an embedded $(DEV) Python
	PYO3_PYTHON=$$(.venvs/$(DEV)/bin/python -c 'import sys; print(sys.executable)') \
	  LD_LIBRARY_PATH=$$(.venvs/$(DEV)/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH} \
	  cargo test --workspace --quiet

.PHONY: sanitize
sanitize: ## cargo test of the pool engine under AddressSanitizer (+LeakSanitizer)
	@# Sanitizers are unstable flags; RUSTC_BOOTSTRAP enables them on the stable toolchain
	@# this project has. ThreadSanitizer would also need a sanitized std (-Zbuild-std with
	@# the rust-src component), which cannot be installed here.
	RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
	  cargo test -p interpool-core --quiet --target x86_64-unknown-linux-gnu --target-dir target/asan

.PHONY: lint
lint: setup ## cargo fmt --check, clippy, structure (unsafe share, import cycles), ruff, mypy, stubtest
	cargo fmt --all -- --check
	.venvs/$(DEV)/bin/python scripts/check_structure.py
	PYO3_PYTHON=$$(.venvs/$(DEV)/bin/python -c 'import sys; print(sys.executable)') \
	  cargo clippy --workspace --all-targets --quiet -- -D warnings
	.venvs/$(DEV)/bin/ruff check python tests benchmarks examples scripts
	.venvs/$(DEV)/bin/ruff format --check python tests benchmarks examples scripts
	.venvs/$(DEV)/bin/mypy python/interpool
	.venvs/$(DEV)/bin/mypy --strict tests/typing
	.venvs/$(DEV)/bin/python -m mypy.stubtest interpool

.PHONY: check-py312
check-py312: ## cargo check against the CPython 3.12 API (no 3.12 interpreter needed)
	PYO3_CONFIG_FILE=$(CURDIR)/scripts/pyo3-cpython312.cfg PYO3_BUILD_EXTENSION_MODULE=1 \
	  cargo check --quiet --target-dir target/check-py312

.PHONY: test-python
test-python: ## pytest on every Python of the matrix ($(MATRIX)): the whole suite on $(FULL_PYTHON), the fast tier on the others
	@set -e; took=""; for t in $(MATRIX); do \
	  rc=0; venv=$$(scripts/setup.sh $$t) || rc=$$?; \
	  if [ $$rc = 3 ]; then echo "== skipping $$t: no CPython $$t on this machine"; continue; fi; \
	  [ $$rc = 0 ] || exit $$rc; \
	  tier=fast; if [ "$(FULL_PYTHON)" = all ] || [ $$t = "$(FULL_PYTHON)" ]; then tier=full; fi; \
	  echo "== pytest on $$t ($$($$venv/bin/python -c 'import sys; print(sys.version.split()[0])')), $$tier tier"; \
	  if [ $$t = 3.12 ]; then \
	    echo "   (INTERPOOL_UNSAFE_PY312=1: 3.12.0-3.12.3 refuse pools by default, gh-119213; tests run them anyway)"; \
	  fi; \
	  debug=(); if [ $$t = "$(DEBUG_PYTHON)" ]; then \
	    echo "   (debug mode: INTERPOOL_DEBUG=1 checks every kept object's interpreter, PYTHONMALLOC=pymalloc_debug every free)"; \
	    debug=(INTERPOOL_DEBUG=1 PYTHONMALLOC=pymalloc_debug); \
	  fi; \
	  start=$$SECONDS; rc=0; \
	  env "$${debug[@]}" INTERPOOL_TEST_TIER=$$tier INTERPOOL_UNSAFE_PY312=$$([ $$t = 3.12 ] && echo 1) \
	    $$venv/bin/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	  took="$$took $$t $$tier: $$((SECONDS - start)) s;"; \
	  echo "== pytest on $$t ($$tier tier): $$((SECONDS - start)) s"; \
	  [ $$rc = 0 ] || exit $$rc; \
	done; echo "== pytest durations:$$took"

# Rounds of each soak scenario (tests/test_soak.py runs 2 of each in `make test`).
ROUNDS ?= 50
SOAK_MATRIX ?= 3.13 3.14 3.14t
.PHONY: soak
soak: ## Realistic programs that aborted before (Dask in-process and CLI, isolation, lanes, recycling, shutdown), ROUNDS=50 each, on 3.13, 3.14, 3.14t
	@set -e; for t in $(SOAK_MATRIX); do \
	  venv=$$(scripts/setup.sh $$t); \
	  PATH=$$venv/bin:$$PATH $$venv/bin/python scripts/soak.py --rounds $(ROUNDS); \
	done

.PHONY: test-latest
test-latest: ## pytest on the matrix against the newest releases of every dependency (not the pins of constraints.txt)
	INTERPOOL_LATEST=1 $(MAKE) test-python

.PHONY: constraints
constraints: ## Rewrite constraints.txt from the venvs of `make test-latest` (after it passed)
	@venvs=$$(for t in $(MATRIX); do [ -x .venvs/latest-$$t/bin/python ] && echo .venvs/latest-$$t; done); \
	  [ -n "$$venvs" ] || { echo "run make test-latest first"; exit 1; }; \
	  python3 scripts/constraints.py $$venvs > constraints.txt.new && mv constraints.txt.new constraints.txt

.PHONY: test
test: test-rust sanitize lint check-py312 test-wheel test-python ## Set up, then cargo tests, lints and pytest on the whole matrix

.PHONY: fmt
fmt: setup ## Format Rust and Python sources
	cargo fmt --all
	.venvs/$(DEV)/bin/ruff format python tests benchmarks examples
	.venvs/$(DEV)/bin/ruff check --fix python tests benchmarks examples

.PHONY: clean
clean: ## Remove build outputs and venvs (the CPython cache in ~/.cache/interpool stays)
	rm -rf target .venvs .pytest_cache .mypy_cache .ruff_cache
	find python tests benchmarks -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f python/interpool/*.so
