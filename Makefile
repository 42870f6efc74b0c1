# prefkit: every target sets itself up first, so on a fresh machine `make test` and `make reproduce` just work.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
# CPU-only machines get PyTorch's small CPU build from its own index (PyPI's Linux wheel is the multi-GB CUDA one).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
NB ?=
# OpenMP threads that spin while waiting make small-model CPU runs many times slower when another process competes
# for the cores (measured: 12x slower SFT steps with one competing process); passive waiting avoids that.
export OMP_WAIT_POLICY ?= PASSIVE
STAMP := $(VENV)/.prefkit-installed

.PHONY: setup test lint pytest reproduce lab bench clean help book serve-book browser

help:
	@echo "make setup      create $(VENV) and install prefkit with notebook + dev extras (CPU torch unless a GPU is present)"
	@echo "make test       lint + pytest (library tests, TRL parity, every notebook in smoke mode)"
	@echo "make reproduce  run every notebook in the full toy profile: figures, result.json, claims ledger"
	@echo "make reproduce NB=01_dpo   one notebook;  FORCE=1 even if up to date;  JOBS=2 THREADS=1 side by side"
	@echo "make lab        JupyterLab;  make bench   prefkit vs TRL benchmark"
	@echo "make book       the executed notebooks as a site, the claims ledger as its index (book/_site)"
	@echo "make serve-book build it and serve it at http://127.0.0.1:8000/"

setup: $(STAMP)

# pip byte-compiles what it installs on one core; compileall does the same on all cores afterwards (measured: set-up
# 129 s -> 100 s on 2 cores). Like pip, it skips the few packaged files that are not valid Python 3.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
ifeq ($(HAS_GPU),1)
	$(PIP) install -q --no-compile "torch==$(TORCH_VERSION)"
else
	$(PIP) install -q --no-compile --retries 0 "torch==$(TORCH_VERSION)" --extra-index-url $(TORCH_CPU_INDEX)
endif
	$(PIP) install -q --no-compile -e ".[notebooks,dev]"
	$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check prefkit tests bench notebooks
	$(VENV)/bin/ruff format --check prefkit tests bench notebooks

# Two workers, one torch thread each (tests/conftest.py), the notebook runs first and the quick tests last
# (tests/conftest.py orders them; --dist worksteal keeps both workers busy to the end); the ten slowest tests are
# listed at the end of every run.
PYTEST_WORKERS ?= 2
pytest: setup browser
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal --durations=10

test: lint pytest

# prefkit/reproduce.py runs the notebooks side by side (JOBS at a time, THREADS torch threads each; defaults: JOBS and
# THREADS in that file), skips those whose notebook, prefkit and parameters are unchanged since their recorded run
# (FORCE=1 runs them anyway) and regenerates the claims ledger and the README's notebook table at the end.
reproduce: setup
	$(PY) -m prefkit.reproduce $(NB) $(if $(JOBS),--jobs $(JOBS)) $(if $(THREADS),--threads $(THREADS)) \
	  $(if $(filter-out 0,$(FORCE)),--force)

# The book's browser test (tests/test_book.py) drives Debian's Chromium through its chromedriver; where they are
# missing they are installed with apt-get (as root or with password-less sudo), otherwise the target says what to do.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
	    echo "the book's browser test needs Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)"; exit 1; fi; \
	  command -v apt-get >/dev/null || { echo "no apt-get: install Chromium and chromedriver, then run make test again"; exit 1; }; \
	  $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null || \
	    { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	fi

# The book: every executed notebook in reproductions/ as a page, the ledger as its index, the README's two commands as
# its front page and a page per loss module; built offline (prefkit/book.py).
BOOK ?= book/_site
book: setup
	$(PY) -m prefkit.book --out $(BOOK)

serve-book: book
	@echo "serving $(BOOK) at http://127.0.0.1:8000/ (Ctrl-C stops)"
	$(PY) -m http.server 8000 --bind 127.0.0.1 --directory $(BOOK)

lab: setup
	$(VENV)/bin/jupyter lab notebooks

bench: setup
	$(PY) bench/bench_dpo.py

clean:
	rm -rf runs .pytest_cache .ruff_cache book/_site
