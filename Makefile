# Set-up is part of every target: a virtual environment in .venv with the CPU build of
# torch 2.13.0 installed first (any other torch spec would pull the CUDA packages), then torchmim.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.torchmim-installed
OUT    ?= results/demo

.PHONY: demo test test-data lint bench setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/torchmim demo --out $(OUT)

# The test data ../shared/data lacks (Fashion-MNIST), installed when this user can; else its tests skip
# with the command that installs it (CI sets TORCHMIM_REQUIRE_TEST_DATA=1 so they fail instead).
test-data:
	@bash scripts/ensure_test_data.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts

# Unit tests, docstring examples (src/) and the README's Python example (tests/test_readme.py).
test: $(STAMP) test-data lint
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) results .pytest_cache
