"""The contract of an option checked on assignment (:class:`hybridpgm.options.Option`), shared by the option tests
of the classes that have such options: an assignment refuses what the constructor refuses, with the constructor's
error and message, and leaves the option as it was."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from hybridpgm.errors import ConfigError


def assert_refused_as_by_the_constructor(construct: Callable[[], Any], obj: Any, option: str, value: Any,
                                         error: type[Exception] = ConfigError) -> Exception:
    """``construct()`` (the constructor given ``value`` for ``option``) raises ``error``; ``obj.option = value``
    raises it with the same message, and ``obj.option`` keeps its value.  Returns the assignment's error."""
    with pytest.raises(error) as by_constructor:
        construct()
    before = getattr(obj, option)
    with pytest.raises(error) as by_assignment:
        setattr(obj, option, value)
    assert str(by_assignment.value) == str(by_constructor.value)
    assert getattr(obj, option) == before
    return by_assignment.value
