"""The ``generator=`` contract of the Boltzmann samplers and estimators, checked on one call.

``draw(**keywords)`` runs the sampler (or estimator) under test with those keywords and returns a tensor, or a
tuple of tensors, of what it drew.  :func:`assert_generator_contract` checks that

* a ``torch.Generator`` governs every draw: the same generator state gives identical draws whatever torch's
  global stream holds, the generator's state moves, and the caller's global stream (``torch.get_rng_state()``)
  does not;
* two different seeds give different draws;
* ``generator=None`` is the call without the keyword under the same ``torch.manual_seed`` (the old behaviour,
  bit for bit; computed, not stored);
* an ``int`` or a module passed as the generator is a :class:`~hybridpgm.errors.ConfigError` naming ``what``.
"""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

from hybridpgm.errors import ConfigError


def _as_tuple(value: Any) -> tuple[torch.Tensor, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def same(a: Any, b: Any) -> bool:
    """Bit-for-bit equality of two draws (tensors or tuples of them)."""
    a, b = _as_tuple(a), _as_tuple(b)
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def assert_generator_contract(draw: Callable[..., Any], what: str, seed: int = 0) -> None:
    """Check the contract of the module docstring on ``draw``; ``what`` is the argument's name in the
    ConfigError (``"RBM.sample generator"``)."""
    generator = torch.Generator().manual_seed(seed)
    start = generator.get_state()
    torch.manual_seed(101)
    caller = torch.get_rng_state()
    first = draw(generator=generator)
    assert torch.equal(torch.get_rng_state(), caller), "a call with a generator moved torch's global stream"
    assert not torch.equal(generator.get_state(), start), "nothing was drawn from the generator"
    torch.manual_seed(202)  # another global state: the draws must not depend on it
    assert same(draw(generator=torch.Generator().manual_seed(seed)), first), "same generator state, other draws"
    assert not same(draw(generator=torch.Generator().manual_seed(seed + 1)), first), "two seeds, the same draws"

    torch.manual_seed(7)
    without = draw()
    torch.manual_seed(7)
    assert same(draw(generator=None), without), "generator=None is not the call without the keyword"

    for bad in (3, torch.nn.Linear(2, 2)):
        with pytest.raises(ConfigError, match=what):
            draw(generator=bad)
