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

# test-lowest: the lowest versions the project declares (ci/lowest-constraints.txt: torch 2.5.1, numpy 1.26, ArviZ
# 0.22, ...) in a virtual environment of its own, made with PYTHON when one is given (default python3.10); then
# the demo and a short selection of tests (precision, BP, serialization, one file or two per model family).
LOWEST_VENV ?= .venv-lowest
LOWEST_PYTHON = $(if $(filter file,$(origin PYTHON)),python3.10,$(PYTHON))
LOWEST_STAMP := $(LOWEST_VENV)/.installed
# (test_trainer, test_serialization, test_bayes_net, test_markov_net and test_deep_kernel were split by concept in
# session 41: their parts are named here so that the selection keeps the same tests)
LOWEST_TESTS := tests/train/test_precision.py tests/train/test_autocast_probe.py tests/train/test_trainer.py \
	tests/train/test_trainer_modes.py tests/train/test_trainer_refusals.py \
	tests/test_errors.py tests/test_serialization.py tests/test_serialization_files.py \
	tests/test_serialization_model_dtypes.py tests/test_serialization_support_masks.py \
	tests/test_serialization_layers.py tests/test_cli.py \
	tests/infer/test_bp_fused.py tests/infer/test_bp_batch_stopping.py tests/infer/test_svi.py \
	tests/infer/test_exact.py tests/graphs/test_bayes_net.py tests/graphs/test_bayes_net_learning.py \
	tests/graphs/test_bayes_net_predictive.py tests/graphs/test_bn_values.py tests/graphs/test_bif_pgmpy.py \
	tests/graphs/test_markov_net.py tests/graphs/test_markov_net_queries.py tests/graphs/test_mrf_tables_buffers.py \
	tests/graphs/test_mrf_sampling_generator.py \
	tests/graphs/test_crf.py tests/energy/test_rbm.py tests/energy/test_dbn.py tests/energy/test_dbm.py \
	tests/generative/test_vae.py tests/generative/test_sbn.py tests/generative/test_gan.py \
	tests/gp/test_deep_kernel.py tests/gp/test_deep_kernel_documented.py tests/gp/test_legacy_kiss_state.py \
	tests/gp/test_exact_likelihood.py tests/gp/test_deep_kernel_mll.py tests/gp/test_deep_kernel_autocast.py \
	tests/gp/test_deep_kernel_posterior.py tests/gp/test_sv_deep_kernel_fit.py tests/gp/test_sv_program.py \
	tests/gp/test_sv_deep_kernel_build.py tests/gp/test_gp_lstm.py tests/diagnostics/test_arviz_data.py \
	tests/diagnostics/test_check_vi.py tests/data/test_timeseries.py tests/test_import_state.py

$(LOWEST_STAMP): ci/lowest-constraints.txt pyproject.toml
	rm -rf $(LOWEST_VENV)
	$(LOWEST_PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install -q --no-cache-dir -c ci/lowest-constraints.txt $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) torch
	$(LOWEST_VENV)/bin/python -m pip install -q --no-cache-dir -c ci/lowest-constraints.txt -e ".[test]"
	touch $(LOWEST_STAMP)

# test-python-surface: on the newest Python (CI's 3.13 run, whose torch, NumPy and ArviZ are the 3.12 run's), the
# tests where the Python version shows: the package-wide tests in tests/ (serialization and pickles, the CLI and
# argparse, import state, warnings, paths, docstrings, the examples and docs code), training's signals, checkpoints
# and file writes, and the one file or two per model family of test-lowest; the whole suite runs on 3.11 and 3.12.
PY_SURFACE_TESTS = $(sort $(wildcard tests/test_*.py) $(wildcard tests/train/test_signals*.py) \
	$(wildcard tests/train/test_checkpoint*.py) $(wildcard tests/train/test_atomic_write*.py) \
	$(wildcard tests/train/test_torch_load*.py) $(LOWEST_TESTS))

.PHONY: test-python-surface
test-python-surface: $(STAMP)  ## the Python-facing selection of tests (CI runs it on Python 3.13)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q $(PY_SURFACE_TESTS)

.PHONY: test-lowest
test-lowest: $(LOWEST_STAMP)  ## the demo and a short test selection with the lowest declared versions (ci/lowest-constraints.txt)
	$(LOWEST_VENV)/bin/python -c "import sys, torch, numpy, arviz, pandas; print('lowest: Python', sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__, 'ArviZ', arviz.__version__, 'pandas', pandas.__version__)"
	OMP_NUM_THREADS=1 $(LOWEST_VENV)/bin/hybridpgm train vae --dataset digits --out runs/demo-lowest --overwrite
	OMP_NUM_THREADS=1 $(LOWEST_VENV)/bin/python -m pytest -n 2 -q $(LOWEST_TESTS)
