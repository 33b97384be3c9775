# `make demo`: create .venv, install, run the quick suite. `make test`: same set-up, run the
# fast tests in parallel (minutes). `make test-all`: every test, the slow scientific checks and
# every benchmark's --smoke run included (what CI runs). `make test-kernels`: the
# float-equivalence tests under every CPU kernel set this machine offers (CI runs it too). `make docs`: the documentation site,
# built offline into site/ (warnings are errors). `make reproduce`: the reproduction ledger at
# reduced size (hours on CPU; resumes), its page and figures copied into docs/.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DALIB_DATA ?= $(abspath ../shared/data)
export DALIB_DATA
# Bytecode caching on: where the environment turns it off (PYTHONDONTWRITEBYTECODE), every
# process (test and sweep workers, benchmark runs) would compile torch and dalib anew.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-all test-kernels lint docs reproduce setup clean

setup: $(STAMP)

# torch/torchvision are pinned first to the releases that lie on this machine's disk
# (pip on Python 3.11 installs them without downloading); the package then admits them.
# --no-compile: Python byte-compiles each module on its first import instead of pip compiling
# every installed file up front (a minute saved on 2 cores).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --no-compile "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet --no-compile -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dalib run quick --out runs/quick

test: $(STAMP)
	$(BIN)/python -m pytest -q -rs -n auto --dist worksteal -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -rs -n auto --dist worksteal --durations=15

# the float-equivalence tests (packed against separate runs) again under every other CPU
# kernel set torch offers here (ATEN_CPU_CAPABILITY; test-all ran them under the native one):
# their tolerances must hold on any CPU. A set is offered when a probe of convolution, matmul
# and softmax runs under it (torch accepts avx512 on CPUs without it, which then crash)
test-kernels: $(STAMP)
	@native=$$($(BIN)/python -c "import torch; print(torch.backends.cpu.get_cpu_capability().lower())"); \
	for k in default avx2 avx512; do \
	  got=$$( (ATEN_CPU_CAPABILITY=$$k $(BIN)/python -c "import torch; \
	    x = torch.randn(8, 3, 16, 16); w = torch.randn(4, 3, 3, 3); \
	    y = torch.nn.functional.conv2d(x, w).flatten(1); \
	    (y @ torch.randn(y.shape[1], 8)).softmax(-1).exp().sum().item(); \
	    print(torch.backends.cpu.get_cpu_capability().lower())") 2>/dev/null); \
	  if [ "$$k" = "$$native" ]; then echo "== kernel set $$k: native, run by test-all"; \
	  elif [ "$$got" = "$$k" ]; then echo "== kernel set $$k"; \
	    ATEN_CPU_CAPABILITY=$$k $(BIN)/python -m pytest -q -n auto -p no:cacheprovider \
	      tests/dalib/test_pack.py || exit 1; \
	  else echo "== kernel set $$k: not offered by this CPU"; fi; \
	done

lint: $(STAMP)
	$(BIN)/ruff check .

reproduce: $(STAMP)
	$(BIN)/dalib reproduce --out runs/reproduce
	cp runs/reproduce/ledger.md docs/ledger.md
	rm -rf docs/ledger-figures && mkdir -p docs/ledger-figures
	cp runs/reproduce/ledger-figures/*.png docs/ledger-figures/

docs: $(STAMP)
	$(BIN)/pip install --quiet --no-compile -e ".[docs]"
	$(BIN)/python docs/gen_cli.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) runs site
