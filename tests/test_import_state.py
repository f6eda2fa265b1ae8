"""Importing hybridpgm changes nothing of the user's process (run in fresh interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import json, logging, sys, warnings
    import matplotlib
    matplotlib.use("svg")  # a user's choice, e.g. a notebook's inline backend
    import pyro, torch

    def state():
        store = pyro.get_param_store()
        return {
            "pyro_settings": {k: repr(pyro.settings.get(k)) for k in sorted(pyro.settings._REGISTRY)},
            "param_store": sorted(store.keys()),
            "matplotlib_backend": matplotlib.get_backend(),
            "rc_changed": sorted(k for k, v in matplotlib.rcParams.items()
                                 if repr(v) != repr(matplotlib.rcParamsDefault.get(k, v)) and k != "backend"),
            "torch_dtype": str(torch.get_default_dtype()),
            "torch_threads": torch.get_num_threads(),
            "torch_grad": torch.is_grad_enabled(),
            "torch_deterministic": torch.are_deterministic_algorithms_enabled(),
            "warning_filters": [repr(f) for f in warnings.filters],
            "root_logger": [logging.getLogger().level, len(logging.getLogger().handlers)],
            "validation": [pyro.infer.util.is_validation_enabled(),
                           torch.distributions.Distribution._validate_args],
        }

    PRELOAD
    pyro.param("user_param", torch.ones(2))
    before = state()
    import hybridpgm
    MODULES
    after = state()
    print(json.dumps({"before": before, "after": after}))
""")


def _run(imports: str, preload: str = "") -> dict:
    code = PROBE.replace("MODULES", imports).replace("PRELOAD", preload)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_changes_no_global_state():
    result = _run("")
    for key, value in result["before"].items():
        assert result["after"][key] == value, f"import hybridpgm changed {key}: {value} -> {result['after'][key]}"


def test_importing_every_submodule_changes_no_global_state():
    """Also the lazily imported parts: diagnostics (ArviZ, matplotlib), GP layers, plots.

    The third-party libraries they use are imported before the first snapshot:
    what those do on import (SciPy adds warning filters, for one) is theirs.
    """
    result = _run("import hybridpgm.diagnostics, hybridpgm.diagnostics.plots, hybridpgm.gp, hybridpgm.cli; "
                  "hybridpgm.DeepKernelGP, hybridpgm.diagnostics.from_pyro_svi",
                  preload="import arviz, gpytorch, matplotlib.pyplot, scipy.stats, sklearn.datasets, "
                          "torch.utils.checkpoint")  # torch 2.5's imports sympy, which adds a warning filter
    for key, value in result["before"].items():
        assert result["after"][key] == value, f"importing hybridpgm's submodules changed {key}"


TUTORIAL = textwrap.dedent("""
    import sys
    import pyro, torch
    import pyro.distributions as dist
    from pyro.infer import SVI, Trace_ELBO
    from pyro.nn import PyroModule
    if sys.argv[1] == "with":
        import hybridpgm  # noqa: F401

    # Pyro's "Bayesian regression" tutorial, maximum-likelihood part
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    x = torch.randn(100, 3)
    y = x @ torch.tensor([1.5, -2.0, 0.3]) + 0.7 + 0.2 * torch.randn(100)

    class Regression(PyroModule):
        def __init__(self):
            super().__init__()
            self.linear = PyroModule[torch.nn.Linear](3, 1)

        def forward(self, x, y=None):
            mean = self.linear(x).squeeze(-1)
            with pyro.plate("data", x.shape[0]):
                return pyro.sample("obs", dist.Normal(mean, 1.0), obs=y)

    model = Regression()
    guide = lambda x, y=None: None
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    for _ in range(200):
        svi.step(x, y)
    store = pyro.get_param_store()
    names = sorted(store.keys())
    assert names == ["linear.bias", "linear.weight"], names
    print(repr([store[n].detach().flatten().tolist() for n in names]))
""")


def test_pyro_tutorial_regression_gives_the_same_weights_with_and_without_hybridpgm():
    runs = {}
    for mode in ("without", "with"):
        out = subprocess.run([sys.executable, "-c", TUTORIAL, mode], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        runs[mode] = out.stdout.strip().splitlines()[-1]
    assert runs["with"] == runs["without"]
    weights = eval(runs["with"])  # noqa: S307 (our own repr of two float lists)
    assert abs(weights[1][0] - 1.5) < 0.1 and abs(weights[1][1] + 2.0) < 0.1  # it really trained


def test_import_time_stays_small():
    """``import hybridpgm`` imports neither ArviZ, GPyTorch, matplotlib, pgmpy nor scikit-learn."""
    code = "import sys, hybridpgm, json; print(json.dumps(sorted(m for m in ('arviz', 'gpytorch', 'matplotlib', " \
           "'pgmpy', 'sklearn', 'scipy.stats', 'statsmodels') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
