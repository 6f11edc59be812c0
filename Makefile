# Two commands do all set-up on a fresh machine; each creates the virtualenv it needs.
#   make demo       - the main job on the embedded default (tiny space, digits task, this CPU)
#   make test       - lint + the whole test suite (what CI runs), in parallel on every core
#   make test-fast  - lint + the inner-loop tier: no conversions, no servers, no profiling
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint venv bench clean

venv: $(STAMP)

# pyproject takes a torch range; the CPU build of 2.13.0 (and the torchvision made for it) is installed first so
# nothing pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0" "torchvision==0.28.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgenas run examples/demo.toml

lint: $(STAMP)
	$(BIN)/ruff check .

# pytest exits 5 when it collects no tests (e.g. a PYTEST_ARGS filter that matches nothing): say so
# loudly and do not fail on it; every other non-zero code fails. Tests run in PYTEST_WORKERS processes
# (pytest-xdist; default: one per core); tests sharing an expensive fixture are grouped on one worker.
PYTEST_WORKERS ?= auto
PYTEST = $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup
define run_pytest
	$(PYTEST) $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "WARNING: pytest collected no tests" >&2; rc=0; fi; exit $$rc
endef

test: $(STAMP)
	$(BIN)/ruff check .
	$(call run_pytest,)

test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(call run_pytest,-m "not slow")

# benchmarks write benchmarks/results/*.md|json; latency_fidelity needs an otherwise idle machine
bench: $(STAMP)
	cd benchmarks && ../$(BIN)/python cost_model.py
	cd benchmarks && ../$(BIN)/python estimators.py
	cd benchmarks && ../$(BIN)/python latency_fit.py
	cd benchmarks && ../$(BIN)/python latency_fidelity.py
	cd benchmarks && ../$(BIN)/python search_overhead.py
	cd benchmarks && ../$(BIN)/python search.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
