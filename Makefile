# Two commands, each doing all of its own set-up in a project-local virtual environment:
#   make demo   install, then open the dashboard on ./demo-workspace with a live CPU run
#   make test   install, then run the whole test suite (what CI runs)
#   make test-fast  the same without the tests that launch real processes (marked slow)
#   make test-gr00t   the GR00T teacher against Isaac-GR00T's real source (a tiny random
#                     N1.5 on CPU) in its own environment, .venv-gr00t (see README)
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

.PHONY: demo test test-fast test-gr00t install clean

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

# GR00T N1.5 pins transformers 4.51.3 and numpy<2, so its tests get their own environment.
# torch goes in first, as above, and is named again beside the rest (what the vendored gr00t
# package imports): timm pulls in torchvision, whose newest release would replace the CPU
# torch with a multi-GB CUDA build.
# GR00T_SRC: Isaac-GR00T's N1.5 source, read only (the tests copy it).
GR00T_SRC ?= ../shared/vendor/isaac-gr00t-n1.5
GR00T_VENV := .venv-gr00t
GR00T_STAMP := $(GR00T_VENV)/.installed
GR00T_DEPS := transformers==4.51.3 'huggingface_hub<1.0' 'diffusers<0.36' peft pydantic dm-tree \
	einops pandas 'numpy<2' av decord opencv-python-headless albumentations==1.4.18 timm \
	numpydantic pillow

$(GR00T_STAMP): pyproject.toml
	$(PYTHON) -m venv $(GR00T_VENV)
	$(GR00T_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(GR00T_VENV)/bin/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(GR00T_VENV)/bin/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)" $(GR00T_DEPS) -e '.[test]'
	touch $(GR00T_STAMP)

test-gr00t:
	@test -d "$(GR00T_SRC)/gr00t" || { echo "no Isaac-GR00T N1.5 source at $(GR00T_SRC): pass GR00T_SRC=<folder holding gr00t/>"; exit 2; }
	@$(MAKE) --no-print-directory $(GR00T_STAMP)
	GR00T_SRC="$(abspath $(GR00T_SRC))" $(GR00T_VENV)/bin/python -m pytest -q tests/gr00t

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) $(WORKSPACE)
