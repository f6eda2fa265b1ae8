"""hybridpgm.recipes imports its recipe modules when first used (hybridpgm/recipes/__init__.py), and the
command line adds a recipe's arguments when its ``train <model>`` parser is used (hybridpgm/cli.py).  Before,
every recipe (the GP one, so GPyTorch) was imported with the package: ``python -W error -m hybridpgm --version``
and ``python -W error examples/vae.py`` died on GPyTorch's import DeprecationWarning."""

import subprocess
import sys

import pytest

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _python(code_or_args, *more):
    args = ["-c", code_or_args] if not more else [code_or_args, *more]
    return subprocess.run([sys.executable, "-W", "error", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_importing_common_imports_no_gpytorch():
    done = _python("import sys, hybridpgm.recipes.common; print('gpytorch' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_version_runs_under_w_error_and_imports_no_recipe():
    done = _python("-m", "hybridpgm", "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("hybridpgm ") and "GPyTorch" in done.stdout
    done = _python("import sys; from hybridpgm.cli import main\n"
                   "try:\n    main(['--version'])\nexcept SystemExit as stop:\n    assert stop.code == 0\n"
                   "print(sorted(m for m in sys.modules if m.startswith('hybridpgm.recipes.')\n"
                   "             and m not in ('hybridpgm.recipes.common', 'hybridpgm.recipes.run_folder')), "
                   "'gpytorch' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[] False"


def test_a_recipe_is_imported_when_its_parser_is_used():
    done = _python("import sys; from hybridpgm.cli import build_parser\n"
                   "args = build_parser().parse_args(['train', 'rbm', '--k', '2'])\n"
                   "print(args.k, 'hybridpgm.recipes.rbm' in sys.modules, 'hybridpgm.recipes.gp' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "True", "False"]


@pytest.mark.parametrize("name", ["bayes_net", "crf", "deep_energy", "gan", "gp", "rbm", "sbn", "vae"])
def test_every_recipe_module_is_still_importable_from_the_package(name):
    import importlib

    import hybridpgm.recipes as recipes

    module = importlib.import_module(f"hybridpgm.recipes.{name}")
    assert getattr(recipes, name) is module
    assert callable(module.add_arguments) and callable(module.run)


def test_recipes_resolve_their_modules_on_first_use():
    from hybridpgm.recipes import RECIPES, LazyRecipe

    vae = RECIPES["vae"][0]
    assert isinstance(vae, LazyRecipe) and vae.module.__name__ == "hybridpgm.recipes.vae"
    assert vae.run is vae.module.run and vae.sample is vae.module.sample
    assert getattr(RECIPES["dkl"][0], "sample", None) is None  # the GP recipe has no `sample`
    with pytest.raises(AttributeError):
        RECIPES["rbm"][0].no_such_function


def test_a_lazy_recipe_pickles_and_copies():
    """The review of the first version found a pickled or copied recipe recursing in ``__getattr__`` (its slot unset
    on the new instance): a spawn pool handed one hung."""
    import copy
    import pickle

    from hybridpgm.recipes import RECIPES

    recipe = RECIPES["crf"][0]
    for copied in (pickle.loads(pickle.dumps(recipe)), copy.copy(recipe), copy.deepcopy(recipe)):
        assert copied.module_name == "hybridpgm.recipes.crf" and callable(copied.run)
