"""Checks of the package's ``generator=`` contract, shared by the tests of the samplers and estimators that take
one (the Boltzmann machines, AIS and RAISE, the VAE, SBN and GAN families, the Bayesian-network helpers).

A sampler or Monte Carlo estimator takes ``generator: torch.Generator | None = None``, keyword-only: with a
generator its results are a function of the generator's state (not of torch's global stream), the caller's
global streams do not move, ``None`` is torch's global stream exactly as without the keyword, and anything else
(a seed, a network) is a :class:`~hybridpgm.errors.ConfigError` naming the argument.

Each check takes ``call``, a function of one keyword ``generator`` (omitted when the check calls it without
one) returning a tensor, a tuple or list of tensors, or a :class:`~hybridpgm.generative.sbn_gibbs.GibbsSamples`.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch

from hybridpgm.errors import ConfigError

_OMITTED = object()


def _tensors(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "layers"):  # GibbsSamples
        return list(out.layers)
    return [t for part in out for t in _tensors(part)]


def draws(call, generator=_OMITTED) -> list[torch.Tensor]:
    """``call``'s result as a list of tensors, called with ``generator=`` unless it is omitted."""
    return _tensors(call() if generator is _OMITTED else call(generator=generator))


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_repeatable(call) -> None:
    """Two generators in one state give identical results, whatever the global stream's state."""
    torch.manual_seed(1)
    first = draws(call, seeded(5))
    torch.manual_seed(2)  # another global state: nothing may come from it
    assert _same(first, draws(call, seeded(5)))


def assert_seeds_differ(call) -> None:
    """Two seeds give different results (the generator's draws reach the result)."""
    assert not _same(draws(call, seeded(5)), draws(call, seeded(6)))


def assert_callers_streams_untouched(call) -> None:
    """A call with a generator leaves torch's, NumPy's and Python's global states as they were."""
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    draws(call, seeded(5))
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and random.getstate() == before[2]


def assert_none_is_the_global_stream(call) -> None:
    """``generator=None`` is the call without the keyword: the same results from the same global seed, the
    global stream left in the same state; and those results do come from the global stream."""
    torch.manual_seed(4)
    without = draws(call)
    after_without = torch.get_rng_state()
    torch.manual_seed(4)
    with_none = draws(call, None)
    assert _same(without, with_none) and torch.equal(torch.get_rng_state(), after_without)
    torch.manual_seed(7)
    assert not _same(without, draws(call))


def assert_bad_generators_refused(call, what: str) -> None:
    """A seed or a network passed as ``generator=`` is a ConfigError naming ``what`` (``"VAE.sample generator"``)
    and the type received."""
    for bad, kind in ((3, "int"), (torch.nn.Linear(1, 1), "Linear")):
        with pytest.raises(ConfigError, match=rf"^{re.escape(what)}.* must be a torch\.Generator or None, got {kind}"):
            call(generator=bad)


def assert_generator_contract(call, what: str) -> None:
    """Every check of this module on ``call``, and that a call with a generator draws from it (its state moves);
    ``what`` is the argument as the ConfigError names it (``"RBM.sample generator"``)."""
    generator = seeded(5)
    start = generator.get_state()
    draws(call, generator)
    assert not torch.equal(generator.get_state(), start), "nothing was drawn from the generator"
    assert_repeatable(call)
    assert_seeds_differ(call)
    assert_callers_streams_untouched(call)
    assert_none_is_the_global_stream(call)
    assert_bad_generators_refused(call, what)
