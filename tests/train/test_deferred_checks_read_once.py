"""Several checks read in one host read (hybridpgm/train/deferred_checks.py ``checks_read_once`` and
``read_checks_once``): one read at the block's end, none where fit's step collects the checks, and the first failed
check raised before a later exception."""

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.train.deferred_checks import check_or_defer, checks_read_once, deferring_checks, read_checks_once


def _check(ok: bool, name: str) -> None:
    check_or_defer(torch.tensor(ok), lambda: DataError(f"check {name} failed"), f"check {name}")


def test_the_checks_of_a_block_are_read_once(host_reads):
    with checks_read_once():
        for i in range(5):
            _check(True, str(i))
        assert host_reads == []
    assert len(host_reads) == 1
    host_reads.clear()
    with checks_read_once():
        pass
    assert host_reads == []  # no check, no read


def test_the_first_failed_check_is_raised_before_a_later_exception_without_its_context():
    with pytest.raises(DataError, match="check 1 failed") as raised:
        with checks_read_once():
            _check(True, "0")
            _check(False, "1")
            _check(False, "2")
    assert raised.value.__context__ is None
    with pytest.raises(DataError, match="check 1 failed") as raised:
        with checks_read_once():
            _check(False, "1")
            raise KeyError("later")
    assert raised.value.__suppress_context__
    with pytest.raises(KeyError, match="later"):
        with checks_read_once():
            _check(True, "1")
            raise KeyError("later")


def test_inside_fits_step_the_checks_join_the_steps_read(host_reads):
    @read_checks_once
    def checked(ok):
        _check(ok, "x")
        return "done"

    assert checked(True) == "done" and len(host_reads) == 1
    with deferring_checks() as pending:
        host_reads.clear()
        assert checked(False) == "done" and checked(True) == "done"
        assert host_reads == []
    assert len(pending.flags) == 2
    with pytest.raises(DataError, match="check x failed"):
        pending.raise_first_failure()
    assert checked.__name__ == "checked"


def test_one_block_entered_again_within_itself_keeps_each_entrys_checks():
    """Fails on the reviewed code: the inner entry overwrote the outer's state, so the outer exit neither read the
    checks nor restored the context: the failed check was never raised, and every later check outside any block
    was deferred for good, silently."""
    block = checks_read_once()
    with pytest.raises(DataError, match="check inner failed"):
        with block:
            with block:
                _check(False, "inner")
    with pytest.raises(DataError, match="check later failed"):  # read at once again
        _check(False, "later")
    with block:  # and the object can be entered again
        _check(True, "again")


def test_a_keyboard_interrupt_is_not_replaced_by_a_failed_check():
    with pytest.raises(KeyboardInterrupt):
        with checks_read_once():
            _check(False, "1")
            raise KeyboardInterrupt
