"""An RBM's sampling and monitors under :func:`torch.autocast`: computed with it off, the float32 results.

Found by an audit: under ``torch.autocast("cpu", torch.bfloat16)`` :meth:`RBM.gibbs` and :meth:`RBM.sample` ran
their conditionals in bfloat16 (other draws than float32's, returned as bfloat16), and
:meth:`RBM.pseudo_log_likelihood` (a small difference of free energies) and :meth:`RBM.reconstruction_error` were
up to 0.03 and 1.5e-3 off, while the CD chains and the exact likelihoods already ran with autocast off.
"""

import pytest
import torch

from hybridpgm.energy import RBM


def _rbm_and_data():
    g = torch.Generator().manual_seed(1)
    rbm = RBM(8, 5)
    with torch.no_grad():
        for p in rbm.parameters():
            p.normal_(0, 0.5, generator=g)
    return rbm, (torch.rand(6, 8, generator=g) < 0.5).float()


_CALLS = {
    "gibbs": lambda rbm, v: rbm.gibbs(v, 5, generator=torch.Generator().manual_seed(0)),
    "sample": lambda rbm, v: rbm.sample(10, 20, generator=torch.Generator().manual_seed(0)),
    "pseudo": lambda rbm, v: rbm.pseudo_log_likelihood(v, generator=torch.Generator().manual_seed(0)),
    "pseudo exact": lambda rbm, v: rbm.pseudo_log_likelihood(v, exact=True),
    "reconstruction": lambda rbm, v: rbm.reconstruction_error(v),
}


@pytest.mark.parametrize("name", list(_CALLS))
def test_sampling_and_monitors_under_autocast_equal_float32(name):
    rbm, v = _rbm_and_data()
    want = _CALLS[name](rbm, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _CALLS[name](rbm, v)
    assert got.dtype == want.dtype == torch.float32 and torch.equal(got, want)
