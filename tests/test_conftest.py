"""The suite's own fixtures (``tests/conftest.py``): a test that switches torch.distributions' default validation
off (as the first ``torch.compile`` of a process does) leaves the tests after it validating.  The two tests run
in file order in one process; under ``pytest-xdist`` they may land in two processes, where the second passes
either way."""

from torch.distributions import Distribution


def test_a_test_turns_validation_off_as_a_first_compile_does():
    Distribution.set_default_validate_args(False)
    assert not Distribution._validate_args


def test_the_next_test_validates_again():
    assert Distribution._validate_args
