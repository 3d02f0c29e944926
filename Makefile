# Two commands, each doing all of its own set-up in a project-local virtual environment:
#   make demo   install, then open the dashboard on ./demo-workspace with a live CPU run
#   make test   install, then run the whole test suite (what CI runs)
#   make test-fast  the same without the tests that launch real processes (marked slow)
#
# torch is pinned to 2.13.0 and installed first. On this project's CPU machines that is
# the CPU build; GPU users pick their CUDA build with TORCH_PIP_ARGS (see README).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
WORKSPACE ?= demo-workspace

.PHONY: demo test test-fast install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else echo "python3 cannot create virtual environments: install python3-venv (sudo apt-get install python3-venv)"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sage-tui --demo --workspace $(WORKSPACE)

test: $(STAMP)
	@command -v tmux >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq tmux >/dev/null; } || true
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) $(WORKSPACE)
