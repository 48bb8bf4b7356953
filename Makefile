# teraml: `make demo` and `make test` each set up a fresh machine on their own.
#   make demo      -> .venv + install, then `teraml demo` (writes teraml-report/index.html)
#   make test      -> .venv + install, then the fast test suite (slow tests deselected)
#   make test-all  -> every test, the `slow` ones included
#   make bench     -> every CPU benchmark with its peers installed (results/NAME.json + results/NAME/)
#   make lint      -> ruff on src, tests and bench
# torch is installed first and pinned (TORCH_SPEC) so that an unpinned torch never pulls a CUDA build.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS     ?= torch,hf,spark,dev
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.teraml-installed

.PHONY: all install demo test test-all bench lint clean

all: test

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/teraml demo $(DEMO_ARGS)

test: $(STAMP)
	@if java -version >/dev/null 2>&1; then java -version 2>&1 | head -1; \
	else echo "no java: the Spark tests skip here (with CI=true they fail)"; fi
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

BENCHMARKS ?= hyperattention aggregate hac selection spark tinylm anonymize sparsity subgen

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS),bench]"
	status=0; for b in $(BENCHMARKS); do $(VENV)/bin/teraml bench $$b $(BENCH_ARGS) || status=1; done; exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) teraml-report build dist src/*.egg-info .pytest_cache .hypothesis
