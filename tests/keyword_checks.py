"""Shared check of a renamed keyword (:func:`hybridpgm.keyword_alias.renamed_keyword`) on a public method."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.errors import ConfigError


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


def assert_renamed(method, old: str, new: str = "num_samples", value: int = 3, seed: int = 0):
    """``method(value)``, ``method(new=value)`` and ``method(old=value)`` give the same draws under one seed; the
    old keyword warns with a :class:`FutureWarning` that names the new one and points at this file; ``old`` with
    ``new`` (by keyword or by position) is a :class:`ConfigError` naming both."""
    results = []
    for kwargs in ({}, {new: value}, {old: value}):
        torch.manual_seed(seed)
        if old in kwargs:
            with pytest.warns(FutureWarning, match=rf"the keyword {old}= is renamed {new}=") as record:
                results.append(method(**kwargs))
            assert [w.filename for w in record] == [__file__]  # the caller's line, not hybridpgm's
        else:
            results.append(method(*(() if kwargs else (value,)), **kwargs))
    assert _same(results[0], results[1]) and _same(results[0], results[2])
    first = results[0][0] if isinstance(results[0], tuple) else results[0]
    assert first.shape[0] == value
    for args, kwargs in (((value,), {old: value}), ((), {new: value, old: value})):
        with pytest.raises(ConfigError, match=rf"got both {new}= and its old name {old}="):
            method(*args, **kwargs)
