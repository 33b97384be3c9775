# `make demo`: create .venv, install, run the quick suite. `make test`: same set-up, run the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DALIB_DATA ?= $(abspath ../shared/data)
export DALIB_DATA

.PHONY: demo test lint setup clean

setup: $(STAMP)

# torch/torchvision are pinned first to the releases that lie on this machine's disk
# (pip on Python 3.11 installs them without downloading); the package then admits them.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dalib run quick --out runs/quick

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs
