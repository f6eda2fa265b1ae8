"""Summary reprs of the annealing results: AISResult (ais.py), LogZEstimate (log_z.py), RAISEResult
(raise_result.py) and LikelihoodBounds (raise_ais.py)."""

import warnings

import torch

from hybridpgm.infer.ais import AISResult
from hybridpgm.infer.log_z import LogZEstimate
from hybridpgm.infer.raise_ais import LikelihoodBounds
from hybridpgm.infer.raise_result import RAISEResult


def _ais(chains, log_z=12.5):
    g = torch.Generator().manual_seed(chains)
    return AISResult(log_z=torch.tensor(log_z, dtype=torch.float64), stderr=torch.tensor(0.0125, dtype=torch.float64),
                     log_weights=torch.randn(chains, generator=g, dtype=torch.float64),
                     log_z0=torch.tensor(44.3614, dtype=torch.float64), num_steps=200)


def _estimate(chains):
    return LogZEstimate(log_z=torch.tensor(12.5, dtype=torch.float64), stderr=torch.tensor(0.05, dtype=torch.float64),
                        starts={"data": _ais(chains), "model": _ais(chains, 12.4)}, spread=0.1, reliable=False,
                        reasons=["a reason " * 50, "another"])


def _raise(points, chains):
    g = torch.Generator().manual_seed(points)
    return RAISEResult(log_likelihood=-85 + torch.randn(points, generator=g), log_z=torch.randn(points, generator=g),
                       log_weights=torch.randn(points, chains, generator=g), num_steps=100)


def test_ais_result_repr_is_a_summary_of_constant_size():
    small, large = _ais(10), _ais(100_000)
    assert len(repr(large)) <= len(repr(small)) + 10 and "\n" not in repr(large)
    assert repr(large) == ("AISResult(log_z=12.5, stderr=0.0125, log_z0=44.3614, num_steps=200, "
                           f"log_weights=[100000] torch.float64, ess={large.ess:.4g})")


def test_log_z_estimate_repr_summarises_each_start():
    small, large = _estimate(10), _estimate(100_000)
    assert repr(large) == repr(small) == ("LogZEstimate(log_z=12.5, stderr=0.05, spread=0.1, reliable=False "
                                          "(2 reasons), starts={'data': 12.5 (stderr 0.0125), "
                                          "'model': 12.4 (stderr 0.0125)})")


def test_raise_result_repr_is_a_summary_of_constant_size():
    small, large = _raise(5, 2), _raise(10_000, 100)
    assert len(repr(large)) <= len(repr(small)) + 30 and "\n" not in repr(large)  # the counts' digits grow
    mean = float(large.log_likelihood.double().mean())
    assert repr(large) == (f"RAISEResult(points=10000, chains=100, num_steps=100, mean_log_likelihood={mean:.6g}, "
                           f"log_likelihood=[10000] torch.float32, "
                           f"log_z=[10000] torch.float32, log_weights=[10000, 100] torch.float32)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FutureWarning of the deprecated stderr, nothing for no points
        assert repr(_raise(0, 1)).startswith("RAISEResult(points=0, chains=1, num_steps=100, "
                                             "mean_log_likelihood=nan, ")


def test_log_z_estimate_repr_never_raises_and_cuts_many_starts():
    """An estimate built by hand with starts of another kind, or a tensor flag, raised in its repr (review); a
    thousand starts gave a 37 KB repr."""
    odd = LogZEstimate(log_z=torch.tensor(1.0), stderr=torch.tensor(0.1), starts=None, spread=0.0,
                       reliable=torch.tensor([True, False]), reasons=None)
    assert repr(odd) == "LogZEstimate(log_z=1, stderr=0.1)"
    many = LogZEstimate(log_z=torch.tensor(1.0), stderr=torch.tensor(0.1), spread=0.0, reliable=True, reasons=[],
                        starts={f"s{i}": _ais(4, float(i)) for i in range(1000)})
    assert "'s0': 0 (stderr 0.0125), 's1'" in repr(many) and ", ..., 's999': 999 (stderr" in repr(many)
    assert len(repr(many)) < 300


def test_likelihood_bounds_repr_nests_the_summaries():
    """It printed every chain's log-weight of both estimators (165 lines for 500 points)."""
    bounds = LikelihoodBounds(lower=-86.25, upper=-85.0, estimate=-85.5, log_z=_estimate(100_000),
                              raise_result=_raise(10_000, 100))
    text = repr(bounds)
    assert text == (f"LikelihoodBounds(lower=-86.25, estimate=-85.5, upper=-85, reliable=False, "
                    f"log_z={bounds.log_z!r}, raise_result={bounds.raise_result!r})")
    assert len(text) < 600 and "\n" not in text
