"""from_mcmc's replay seed (hybridpgm/diagnostics/sampler_data.py ``_seed``) and its int seeds' warning.

The seed is drawn from torch's global CPU stream (or the CPU generator given) under
``torch.set_default_device`` too (hybridpgm/diagnostics/sampler_data.py ``_seed``).

Found by review C of 4b803b3: with ``generator=None`` the new default, the seed was drawn by ``torch.randint``
on the default device: ``Tensor.item() cannot be called on meta tensors`` under ``set_default_device("meta")``
(the CUDA stream, and a synchronisation, under ``"cuda"``), where the docstring says torch's global CPU stream;
the old default, the int seed 0, drew nothing.  A seeded CPU generator failed alike.  And an int seed's
``FutureWarning`` advised ``torch.Generator().manual_seed(seed)`` as its replacement, whose replay differs (a seed
drawn from that generator, not the seed itself), where ``from_importance``'s advice draws alike."""

import warnings

import pytest
import torch

from hybridpgm.diagnostics import sampler_data


@pytest.fixture
def meta_default_device():
    torch.set_default_device("meta")
    yield
    torch.set_default_device(None)


def test_the_seed_comes_from_the_cpu_stream_whatever_the_default_device(meta_default_device):
    torch.manual_seed(11)
    drawn = sampler_data._seed(None, "from_mcmc generator")
    from_generator = sampler_data._seed(torch.Generator().manual_seed(3), "from_mcmc generator")
    torch.set_default_device(None)
    torch.manual_seed(11)
    assert drawn == sampler_data._seed(None, "from_mcmc generator")
    assert from_generator == sampler_data._seed(torch.Generator().manual_seed(3), "from_mcmc generator")


def test_from_mcmcs_int_seed_warning_says_the_advised_generator_draws_otherwise():
    with pytest.warns(FutureWarning, match=r"manual_seed\(3\), whose draws are not those of the int seed"):
        seed = sampler_data._seed(3, "from_mcmc generator")
    assert seed != sampler_data._seed(torch.Generator().manual_seed(3), "from_mcmc generator")  # as it says
    with warnings.catch_warnings(record=True) as caught:  # from_importance's advice draws alike: no such clause
        warnings.simplefilter("always")
        sampler_data._int_seed(3, "from_importance generator")
    assert "not those" not in str(caught[0].message)
