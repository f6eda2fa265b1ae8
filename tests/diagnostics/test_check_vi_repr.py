"""VICheck's summary repr (hybridpgm/diagnostics/check_vi.py)."""

import warnings

import numpy as np

from hybridpgm.diagnostics.check_vi import VICheck


def _check(n, seed=0):
    rng = np.random.default_rng(seed)
    return VICheck(khat=rng.uniform(0, 1, n), log_likelihood=rng.normal(-85, 3, n), num_samples=1000)


def test_the_repr_is_a_summary_of_constant_size():
    """The dataclass repr printed every k-hat and log-likelihood: 36.5 KB over 499 lines for 1000 points."""
    small, large = _check(10), _check(100_000)
    assert len(repr(large)) <= len(repr(small)) + 20 and len(repr(large)) < 250  # only the counts' digits grow
    assert "\n" not in repr(large)
    k, ll = large.khat, large.log_likelihood
    good = int((k <= large.threshold).sum())
    assert repr(large) == (f"VICheck(khat=[100000] float64, log_likelihood=[100000] float64, num_samples=1000, "
                           f"good={good}, bad={100_000 - good} (threshold 0.67), max_khat={k.max():.4g}, "
                           f"mean_log_likelihood={ll.mean():.6g})")


def test_the_repr_of_odd_checks_neither_warns_nor_raises():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert repr(VICheck(np.zeros(0), np.zeros(0), 1000)) == \
            "VICheck(khat=[0] float64, log_likelihood=[0] float64, num_samples=1000)"
        assert "max_khat" not in repr(VICheck(np.full(3, np.nan), np.zeros(3), 1))  # all NaN; 1 draw: no threshold
        assert repr(VICheck("x", "y", 1000)).startswith("VICheck(khat='x', log_likelihood='y'")
