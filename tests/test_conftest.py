"""The suite's own fixtures (``tests/conftest.py``): what a test does to the validation switches (as the first
``torch.compile`` of a process does to torch's) is undone after it."""

import pyro
import pyro.infer.util as pyro_infer
from torch.distributions import Distribution

from tests.conftest import validation_restored


def test_validation_switched_off_inside_is_back_on_after():
    assert Distribution._validate_args and pyro_infer.is_validation_enabled()
    with validation_restored():
        pyro.enable_validation(False)
        Distribution.set_default_validate_args(False)  # what a first torch.compile leaves
        assert not Distribution._validate_args and not pyro_infer.is_validation_enabled()
    assert Distribution._validate_args and pyro_infer.is_validation_enabled()


def test_validation_switched_on_inside_is_back_off_after():
    pyro.enable_validation(False)  # the autouse fixture puts it back after this test
    with validation_restored():
        pyro.enable_validation(True)
    assert not Distribution._validate_args and not pyro_infer.is_validation_enabled()
