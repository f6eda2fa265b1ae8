"""Data checks deferred to the step's one host read (hybridpgm/train/deferred_checks.py),
and the count of host reads per step of ``fit`` on real models."""

import functools
import traceback

import pytest
import torch

from hybridpgm import SVIObjective, VAE, fit
from hybridpgm.energy import RBM
from hybridpgm.errors import DataError
from hybridpgm.infer import ContrastiveDivergence
from hybridpgm.train.deferred_checks import check_or_defer, deferring_checks

READS = ("item", "tolist", "__float__", "__bool__", "__int__", "__index__", "cpu", "numpy")


def test_check_or_defer_raises_at_once_outside_a_step():
    check_or_defer(torch.tensor(True), lambda: DataError("never"))
    with pytest.raises(DataError, match="bad batch"):
        check_or_defer(torch.tensor(False), lambda: DataError("bad batch"))


def test_inside_a_step_the_checks_wait_and_the_first_failure_raises():
    with deferring_checks() as pending:
        check_or_defer(torch.tensor(True), lambda: DataError("first"))
        check_or_defer(torch.tensor(False), lambda: DataError("second"))
        check_or_defer(torch.tensor(False), lambda: DataError("third"))
    assert not bool(pending.all_passed(torch.device("cpu")))
    with pytest.raises(DataError, match="second"):
        pending.raise_first_failure()
    with deferring_checks() as empty:
        pass
    assert bool(empty.all_passed(torch.device("cpu")))


def _binary(n=64, d=12, seed=0):
    return torch.bernoulli(torch.full((n, d), 0.4), generator=torch.Generator().manual_seed(seed))


def test_fit_raises_the_models_data_error_before_any_update():
    torch.manual_seed(0)
    vae = VAE(12, 3, (8,))
    x = _binary()
    x[20, 3] = 0.5  # in the first batch of the unshuffled order
    before = [p.detach().clone() for p in vae.parameters()]
    with pytest.raises(DataError, match=r"binary data.*training data, step 0"):
        fit(SVIObjective(vae.model, vae.guide), x, batch_size=32, shuffle=False, progress=False, seed=0)
    assert all(torch.equal(a, p) for a, p in zip(before, vae.parameters()))


def test_fit_names_nan_data_of_an_rbm():
    x = _binary()
    x[5, 0] = float("nan")
    with pytest.raises(DataError, match="NaN or inf"):
        # TensorData refuses NaN up front; a Dataset of its own reaches the model's deferred check
        fit(ContrastiveDivergence(RBM(12, 4)), _RawDataset(x), batch_size=16, shuffle=False, progress=False, seed=0)


class _RawDataset(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


@pytest.fixture
def host_reads(monkeypatch):
    """Counts reads of tensor values by the host outside torch.optim (whose
    step counters live on the host by design, so reading them syncs nothing)."""
    reads = []
    for method in READS:
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            caller = traceback.extract_stack(limit=2)[0].filename
            if "/torch/optim/" not in caller:
                reads.append((_method, caller))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    return reads


def _vae_objective():
    torch.manual_seed(0)
    vae = VAE(12, 3, (8,))
    return SVIObjective(vae.model, vae.guide)


def _cd_objective():
    torch.manual_seed(0)
    return ContrastiveDivergence(RBM(12, 5), check_data=True)


@pytest.mark.parametrize("make", [_vae_objective, _cd_objective], ids=["vae-svi", "rbm-cd"])
def test_fit_reads_from_the_device_once_per_step(host_reads, make):
    """The loss, the finiteness of loss and gradients and the models' data checks
    come back in one read per step (on CUDA, one synchronisation)."""
    def count(steps):
        host_reads.clear()
        fit(make(), _binary(), batch_size=8, epochs=100, max_steps=steps, progress=False, seed=0,
            optim=functools.partial(torch.optim.Adam, lr=1e-3))
        return len(host_reads)

    assert count(8) - count(3) == 5
