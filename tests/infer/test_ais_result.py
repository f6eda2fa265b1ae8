"""AISResult (hybridpgm/infer/ais_result.py): the effective sample size is computed once per log-weights, and the
``repr`` reads its numbers from the device once.

Carried audit item: ``repr(AISResult)`` computed the ESS (two ``logsumexp`` over every chain) on every call, 0.4 s
at 1e7 chains on one core, again at each display of the result in a notebook, and read its four numbers from the
device one by one."""

import pickle

import pytest
import torch

from hybridpgm.infer.ais import AISResult


def _result(chains: int = 1000, seed: int = 0) -> AISResult:
    g = torch.Generator().manual_seed(seed)
    return AISResult(log_z=torch.tensor(12.5, dtype=torch.float64), stderr=torch.tensor(0.0125, dtype=torch.float64),
                     log_weights=torch.randn(chains, generator=g, dtype=torch.float64),
                     log_z0=torch.tensor(44.3614, dtype=torch.float64), num_steps=200)


def _exact_ess(lw: torch.Tensor) -> float:
    w = (lw - lw.max()).exp()
    return float(w.sum() ** 2 / (w * w).sum())


@pytest.fixture
def passes(monkeypatch):
    """The number of ``torch.logsumexp`` calls (two per pass over the log-weights)."""
    calls = []
    original = torch.logsumexp

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "logsumexp", counted)
    return calls


def test_repr_computes_the_ess_once(passes):
    """Fails on the old code: each repr (and each ess) made two passes over the log-weights."""
    result = _result()
    first = repr(result)
    assert len(passes) == 2
    assert repr(result) == first and len(passes) == 2
    assert result.ess == pytest.approx(_exact_ess(result.log_weights), rel=1e-12) and len(passes) == 2
    assert first.endswith(f"ess={result.ess:.4g})")


def test_the_kept_ess_follows_the_log_weights(passes):
    """An in-place change, a new tensor, or new data under the same tensor are seen (not the kept value)."""
    result = _result()
    before = result.ess
    result.log_weights[:500] += 3.0  # in place: the version counter moves
    assert result.ess == pytest.approx(_exact_ess(result.log_weights), rel=1e-12) and result.ess != before
    result.log_weights = torch.zeros(10, dtype=torch.float64)  # another tensor
    assert result.ess == pytest.approx(10.0)
    result.log_weights.data = torch.zeros(4, dtype=torch.float64)  # new data, same tensor and version
    assert result.ess == pytest.approx(4.0)
    assert len(passes) == 2 * 4 + 2 * 0  # one pass per change, none for the repeated reads


def test_repr_reads_the_device_once(host_reads):
    """Fails on the old code: four host reads (log_z, stderr, log_z0, ess), on a GPU four waits."""
    result = _result()
    repr(result)
    assert len(host_reads) == 1
    host_reads.clear()
    repr(result)
    assert len(host_reads) == 1


def test_a_copy_a_pickle_and_a_move_compute_their_own():
    result = _result()
    ess = result.ess
    for other in (pickle.loads(pickle.dumps(result)), result.to(torch.float32)):
        assert other.ess == pytest.approx(ess, rel=1e-6)
        other.log_weights.zero_()
        assert other.ess == pytest.approx(1000.0) and result.ess == ess


def test_repr_of_a_result_built_by_hand_never_raises():
    odd = AISResult(log_z=1.5, stderr=None, log_weights="w", log_z0=torch.zeros(2), num_steps=3)
    assert repr(odd) == "AISResult(log_z=1.5, stderr=None, log_z0=[2] torch.float32, num_steps=3, " \
        "log_weights='w', ess=?)"
    empty = AISResult(torch.zeros(()), torch.zeros(()), torch.zeros(0), torch.zeros(()), 1)
    assert repr(empty).endswith("ess=nan)")  # no chains: as before
    with torch.inference_mode():
        made = _result()
    assert repr(made) == repr(_result())  # an inference tensor has no version counter: computed each time


def test_new_data_at_the_same_address_is_seen(passes):
    """``.data =`` a view of the same storage (same data pointer and version, another shape or strides): before, the
    kept ESS of all the chains was returned."""
    result = _result()
    result.ess
    result.log_weights.data = result.log_weights.data[:10]
    assert result.ess == pytest.approx(_exact_ess(result.log_weights), rel=1e-12)
    result.log_weights.data = result.log_weights.data[::2]
    assert result.ess == pytest.approx(_exact_ess(result.log_weights), rel=1e-12)


def test_a_pickle_keeps_no_ess_to_match():
    """Before, the pickle held the kept ESS with its key (version, address): an unpickled tensor (version 1) placed
    at a freed address of the original matched it with other values (about a third of the trials here)."""
    for _ in range(20):
        result = _result(64)
        result.log_weights.mul_(1.0)  # version 1, as an unpickled tensor's
        result.ess
        result.log_weights.data = 4 * torch.randn(64, dtype=torch.float64)
        expected = _exact_ess(result.log_weights)
        data = pickle.dumps(result)
        del result
        again = pickle.loads(data)
        assert "_ess_kept" not in again.__dict__
        assert again.ess == pytest.approx(expected, rel=1e-12)
