"""A DBM's CD/PCD step under autocast: run in the parameters' dtype, as an RBM's is."""

import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.energy import DBM
from hybridpgm.infer import ContrastiveDivergence, PersistentCD


def _dbm() -> DBM:
    torch.manual_seed(0)
    model = DBM([100, 64, 32])
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05) if p.dim() > 1 else p.normal_(0, 0.5)
    return model


def _data() -> torch.Tensor:
    return torch.bernoulli(torch.full((128, 100), 0.3), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("objective", [functools.partial(ContrastiveDivergence, k=1),
                                       functools.partial(PersistentCD, k=1, num_chains=64)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_dbms_contrastive_divergence_gradient_is_its_float32_gradient_under_autocast(objective, dtype):
    """Found by an audit: the DBM's positive phase, negative phase and Gibbs sweeps ran under autocast (the
    RBM's do not), so bf16 changed its CD gradient by 0.7% of its norm (DBM([100, 64, 32])).  Now the loss and
    the gradient under autocast are the float32 ones exactly, for the same random stream."""
    results = []
    for autocast in (False, True):
        cd = objective(_dbm())
        x = _data()
        torch.manual_seed(2)
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            loss = cd.loss("model", x)
        grads = torch.autograd.grad(loss, list(cd.model.parameters()))
        results.append((loss.detach(), grads))
    (loss32, grads32), (loss16, grads16) = results
    assert loss16.dtype == torch.float32 and torch.equal(loss16, loss32)
    assert all(torch.equal(a, b) for a, b in zip(grads16, grads32))


def test_a_dbm_trained_by_fit_in_bf16_takes_its_float32_steps():
    """The same through ``fit(precision="bf16")``: three PCD steps leave the parameters of a float32 run."""
    states = []
    for precision in (None, "bf16"):
        model = _dbm()
        fit(PersistentCD(model, k=1, num_chains=32), _data(), batch_size=32, max_steps=3, seed=0, progress=False,
            precision=precision, optim=functools.partial(torch.optim.SGD, lr=0.1))
        states.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*states))
