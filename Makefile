# Two commands do everything on a fresh machine (see README):
#   make demo   set up .venv from the pinned lock file, run the whole recipe at demo size on embedded Ray
#   make test   set up .venv if needed, run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock requirements-nodeps.txt pyproject.toml | sha1sum | cut -c1-12)
# TTS voices from Debian (flite, festival + two voices, espeak-ng); speech tests and demos need them.
DEBS   := flite festival festvox-kallpc16k festvox-us-slt-hts espeak-ng
# Headless Chromium renders the HTML report in a test (screenshot checked); PostgreSQL is the
# shared catalog tests/test_remote.py starts (initdb + postgres in a temporary directory).
TEST_DEBS := chromium postgresql
# Real HTML and other languages for the crawl benchmarks (bench_web, bench_langid; tests use the built sample)
CRAWL_DEBS := python3.11-doc mandoc manpages-de manpages-fr manpages-es manpages-it manpages-ru manpages-pl manpages-nl
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export HF_HUB_OFFLINE ?= 1

.PHONY: setup debs test-debs install-debs demo demo-quick lint test test-slow test-interop check-install bench bench-setup clean

setup: $(STAMP) debs

debs:
	@$(MAKE) --no-print-directory install-debs PKGS="$(DEBS)"

test-debs:
	@$(MAKE) --no-print-directory install-debs PKGS="$(TEST_DEBS)"

install-debs:
	@missing=$$(for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	    echo "missing Debian packages: $$missing (install them as root; TTS voices need them)"; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version}"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

# The flagship: text curation → SFT → speech SFT → reasoning data → one training round → summary.
demo: setup
	$(PY) pipelines/flagship.py

# The one-stage demo (normalise + length filter over docstrings, seconds): `documents_demo`.
demo-quick: setup
	$(PY) pipelines/demo.py

# Style and types (pyproject.toml [tool.ruff], [tool.mypy]): CI runs it first, right after setup.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup test-debs
	$(PY) -m pytest -q

# The slow suites (a SIGKILL at every phase of a real pipeline, ...): CI runs them after `make test`.
test-slow: setup test-debs
	$(PY) -m pytest -q -m slow

# What a fresh machine would hit first: the lock resolves from the public index alone, and a
# wheel (non-editable install) holds and imports every module. CI runs it before the tests.
check-install: setup
	PY=$(PY) bash .ci/check_install

# Our tables in the tools users load them with: pyiceberg, polars, DuckDB, Hugging Face datasets,
# TRL (requirements-interop.txt, installed into the same .venv); CI runs it after test-slow.
test-interop: setup
	$(PY) -m pip install -q -r requirements-interop.txt
	$(PY) -m pytest -q -m interop

bench-setup: setup
	$(PY) -m pip install -q --no-deps -r bench/requirements.txt

# Baselines (DataTrove, presidio's plain loop) side by side with ours; see bench/README.md.
bench: bench-setup
	test -d bench/data/corpus-100k || $(PY) bench/corpus.py --docs 100000 --out bench/data/corpus-100k
	$(PY) bench/bench_text.py --docs 100000 --pii-docs 1000 --repeats 3
	$(PY) bench/bench_pii.py --docs 600
	$(PY) bench/bench_pipeline.py --pii-docs 2000
	@$(MAKE) --no-print-directory install-debs PKGS="$(CRAWL_DEBS)"
	$(PY) bench/bench_langid.py --per-lang 80
	$(PY) bench/bench_web.py --python 300 --man 30 --split 4 --rounds 3 --labels bench/labels/web_labels_100.jsonl

clean:
	rm -rf $(VENV) warehouse .pytest_cache
