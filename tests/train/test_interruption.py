"""The exception :func:`~hybridpgm.fit` raises after a signal (:mod:`hybridpgm.train.interruption`)."""

import signal

import pytest

from hybridpgm.errors import TrainingInterrupted
from hybridpgm.train.interruption import interruption


@pytest.mark.parametrize("mode, again", [("auto", "run again with the same arguments to resume"),
                                         ("never", "run again with resume=True (CLI: --resume) to continue it")])
def test_the_message_names_the_signal_the_step_the_checkpoint_and_how_to_continue(mode, again):
    error = interruption(signal.SIGTERM, 7, "run.pt", mode)
    assert isinstance(error, TrainingInterrupted)
    assert str(error) == f"interrupted by SIGTERM at step 7; checkpoint written to 'run.pt'; {again}"
    assert (error.signum, error.step, error.checkpoint, error.exit_code) == (signal.SIGTERM, 7, "run.pt", 143)


def test_without_a_checkpoint_the_message_says_nothing_was_saved():
    error = interruption(signal.SIGINT, 3, None, "auto")
    assert str(error) == "interrupted by SIGINT at step 3; no checkpoint path was given, so nothing was saved"
    assert error.exit_code == 130 and error.checkpoint is None
