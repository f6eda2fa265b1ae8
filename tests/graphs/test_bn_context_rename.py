"""``BayesNet`` takes the context inputs of its neural CPDs as ``context=``, the name ``MarkovNet``, its
``distribution`` and ``cpd.Neural(context=...)`` use (hybridpgm/graphs/bn_*.py, ``keyword_alias.renamed_keyword``).

Before, every BayesNet method spelled it ``inputs=`` and ``bn.sample(5, context=u)`` was a raw ``TypeError``.
``inputs=`` still works for one release: the same results, a ``FutureWarning`` naming ``context=`` at the caller's
line; passing both is a ``ConfigError`` naming both."""

from __future__ import annotations

import warnings

import pyro
import pytest
import torch
from pyro import poutine

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet, MarkovNet, cpd

U = torch.tensor([[-1.0], [1.0], [1.0], [-1.0]])


def _net():
    torch.manual_seed(0)
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7]))
    return bn.add("z", cpd.Neural(torch.nn.Linear(3, 2), ["a"], 2, context=["u"]))


A, Z = torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1, 0, 0])

#: method name -> (positional arguments before the context, other keywords, the context's position or None)
CALLS = {
    "sample": ((4,), {"generator": None}, 1),
    "log_prob": (({"a": A, "z": Z},), {}, 1),
    "posterior": (("a", {"z": Z}), {}, None),
    "log_evidence": (({"z": Z},), {}, None),
    "map": (({"z": Z},), {"return_log_prob": True}, None),
    "model": (({"a": A, "z": Z}, None), {}, 2),
    "guide": (({"a": A, "z": Z}, None), {}, 2),
    "explain_nonfinite_loss": (({"a": A, "z": Z}, None), {}, 2),
}


def _call(bn, method, how):
    """``method`` of ``bn`` with the context ``U`` given ``how``: "context", "inputs" or "position" (seeded)."""
    args, kwargs, position = CALLS[method]
    torch.manual_seed(1)
    pyro.set_rng_seed(1)
    if how == "position":
        return getattr(bn, method)(*args, U, **kwargs)
    with poutine.trace() if method in ("model", "guide") else _nothing():
        return getattr(bn, method)(*args, **{how: U}, **kwargs)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if torch.is_tensor(a) else a == b


@pytest.mark.parametrize("method", list(CALLS))
def test_context_is_the_keyword_and_does_not_warn(method):
    bn = _net()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = _call(bn, method, "context")
        if CALLS[method][2] is not None:
            assert _same(new, _call(bn, method, "position"))
    if method == "sample":
        assert new["z"].shape == (4,)


@pytest.mark.parametrize("method", list(CALLS))
def test_inputs_still_works_with_a_future_warning_at_the_callers_line(method):
    bn = _net()
    new = _call(bn, method, "context")
    with pytest.warns(FutureWarning, match=rf"BayesNet\.{method}: the keyword inputs= is renamed context=") as record:
        old = _call(bn, method, "inputs")
    assert [w.filename for w in record] == [__file__]
    assert _same(new, old)


@pytest.mark.parametrize("method", list(CALLS))
def test_both_names_are_refused_naming_both(method):
    args, kwargs, position = CALLS[method]
    bn = _net()
    with pytest.raises(ConfigError, match=rf"BayesNet\.{method} got both context= and its old name inputs="):
        getattr(bn, method)(*args, context=U, inputs=U, **kwargs)
    if position is not None:
        with pytest.raises(ConfigError, match="got both context= and its old name inputs="):
            getattr(bn, method)(*args, U, inputs=U, **kwargs)


def test_the_signatures_name_context():
    import inspect

    for method in CALLS:
        params = inspect.signature(getattr(BayesNet, method)).parameters
        assert "context" in params and "inputs" not in params, method


def test_bayes_net_and_markov_net_take_context_alike():
    """One keyword in both families; the shapes differ as documented: a BayesNet pairs sample ``s`` with context
    row ``s`` (``[S]``), a MarkovNet draws ``S`` given each of ``N`` rows (``[S, N]``)."""
    bn = _net()
    assert bn.sample(4, context=U)["z"].shape == (4,)
    mrf = MarkovNet({"x": 2}).add_factor("f", ["x"], torch.nn.Linear(1, 2))
    assert mrf.sample(3, context=U)["x"].shape == (3, 4)


def test_the_warning_points_at_the_users_line_when_pyro_runs_the_model():
    """``bn.model`` / ``bn.guide`` are called by Pyro (``svi.step(data, None, inputs=U)``): the warning points at the
    user's ``svi.step`` line, not at a line of ``pyro/poutine`` (REVIEWB, session 42)."""
    from pyro.infer import SVI, TraceEnum_ELBO

    bn = _net()
    pyro.clear_param_store()
    svi = SVI(bn.model, bn.guide, pyro.optim.Adam({"lr": 0.01}), TraceEnum_ELBO(max_plate_nesting=1))
    with pytest.warns(FutureWarning, match="the keyword inputs= is renamed context=") as record:
        svi.step({"a": A, "z": Z}, None, inputs=U)
    assert sorted(str(w.message).split(":")[0] for w in record) == ["BayesNet.guide", "BayesNet.model"]
    assert [w.filename for w in record] == [__file__] * 2
