"""Sphinx configuration of the hybridpgm documentation (built with -W in CI)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "hybridpgm"
author = "the hybridpgm developers"
copyright = "2026, the hybridpgm developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.extlinks",
    # MathJax 3 served from _static (a pip package, installed with the docs extra): maths renders offline
    "sphinx-mathjax-offline",
]

# The build machines have no network, so intersphinx inventories cannot be
# fetched; links to the libraries hybridpgm builds on are explicit roles instead.
extlinks = {
    "pyro": ("https://docs.pyro.ai/en/stable/%s", "%s"),
    "torch": ("https://pytorch.org/docs/stable/%s", "%s"),
    "gpytorch": ("https://docs.gpytorch.ai/en/stable/%s", "%s"),
    "arviz": ("https://python.arviz.org/en/stable/%s", "%s"),
}

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
myst_enable_extensions = ["dollarmath", "amsmath"]
# The notebooks are stored without outputs and executed at build time, in their small mode (`CI` set,
# as `make docs` does), so every page shows its figures; an error in a notebook fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True

autosummary_generate = True
# packages re-export their modules' classes in __all__; document each object once, where it is defined
autodoc_default_options = {"members": True, "ignore-module-all": True, "inherited-members": True}
autodoc_inherit_docstrings = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = False
napoleon_numpy_docstring = False

exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["myst.header"]
html_theme = "alabaster"
html_title = "hybridpgm"


def _defined_outside_hybridpgm(obj) -> bool:
    """Whether a class member comes from another library (torch, Pyro, GPyTorch, builtins)."""
    owner = getattr(obj, "__objclass__", None)  # builtin method descriptors
    target = getattr(obj, "fget", None) or getattr(obj, "__func__", None) or obj
    module = getattr(owner, "__module__", None) or getattr(target, "__module__", None)
    return isinstance(module, str) and not module.startswith("hybridpgm")


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Classes list the members they inherit from hybridpgm's mixins (``RBMLikelihood``, ``BayesNetData``, ...)
    but not those of torch, Pyro or GPyTorch bases."""
    if what in ("class", "exception") and _defined_outside_hybridpgm(obj):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
