# Both targets set themselves up on a fresh machine: a virtual environment in
# .venv, torch==2.13.0 first, then the project with its test extras.  Which
# torch build pip installs depends on its index; TORCH_INDEX=<url> (e.g.
# https://download.pytorch.org/whl/cpu) asks PyTorch's own index for it.
PYTHON ?= python3
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all docs setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-cache-dir $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch==2.13.0
	$(BIN)/python -m pip install -q --no-cache-dir -e ".[test,docs]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)  ## train a VAE on the bundled digits (about 15 s on 2 CPU cores), report in runs/demo
	OMP_NUM_THREADS=1 $(BIN)/hybridpgm train vae --dataset digits --out runs/demo --overwrite

test: $(STAMP)  ## the default suite (slow statistical checks excluded)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q

test-all: $(STAMP)  ## every test, slow ones included
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q -m "slow or not slow"

docs: $(STAMP)  ## build the site (notebooks executed in their small mode), warnings as errors; check figures and maths
	rm -rf docs/_build docs/api
	CI=true OMP_NUM_THREADS=1 $(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	$(BIN)/python docs/check_build.py docs/_build/html

clean:
	rm -rf $(VENV) runs .pytest_cache

.PHONY: results
results: $(STAMP)  ## rerun the quality benchmarks and rewrite docs/results.md from their JSON (hours on CPU; not part of CI)
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/boltzmann_quality.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/gp_quality.py --seeds 0 1 2
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/sbn_quality.py --threads 1 --lr 3e-3 --dataset-epochs digits=100 fashion-mnist=3 --num-test 500 --objectives wake-sleep rws nvil vimco iwae-concrete
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/vae_quality.py --epochs 2 --eval-size 1000
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/gan_quality.py --seeds 3 --ring-steps 2000 --digits-steps 2000 --vae-steps 1000 --ada-steps 600 --fashion-steps 300
	$(BIN)/python benchmarks/results_page.py
