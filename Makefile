# Both targets set themselves up on a fresh machine: a virtual environment in
# .venv, the CPU build of torch==2.13.0 first (any other torch request pulls a
# multi-GB CUDA build), then the project with its test extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all docs setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,docs]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)  ## train a VAE on the bundled digits, report in runs/demo
	$(BIN)/hybridpgm train vae --dataset digits --epochs 2 --out runs/demo

test: $(STAMP)  ## the default suite (slow statistical checks excluded)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q

test-all: $(STAMP)  ## every test, slow ones included
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q -m "slow or not slow"

docs: $(STAMP)  ## run the notebooks in their small mode, then build the site with warnings as errors
	CI=true OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider --nbmake docs/notebooks
	rm -rf docs/_build docs/api
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) runs .pytest_cache
