"""fp16's run of skipped steps across a checkpoint (:class:`~hybridpgm.train.player_step.Player`'s
``overflows_in_a_row``): before, a resumed run counted the skips in a row from 0 again, so the warning of
:mod:`hybridpgm.train.scaler_step` came ``k`` steps late after an interruption at step ``k`` (or never)."""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import TrainingWarning
from hybridpgm.train import load_checkpoint
from hybridpgm.train.player_step import Player
from hybridpgm.train.scaler_step import SKIPS_BEFORE_WARNING
from tests.train.test_scaler_step import _Amplified, _data

SGD = functools.partial(torch.optim.SGD, lr=1e-3)
STEPS = SKIPS_BEFORE_WARNING + 4


def _warnings_of(ckpt, max_steps: int) -> list[str]:
    """The TrainingWarnings of a fit of every step overflowing float16, up to ``max_steps``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(_Amplified(1e3), _data(), batch_size=8, max_steps=max_steps, precision="fp16", progress=False, seed=0,
            optim=SGD, checkpoint=ckpt)
    return [str(w.message) for w in caught if issubclass(w.category, TrainingWarning)]


@pytest.mark.parametrize("interrupted_at", [3, SKIPS_BEFORE_WARNING - 1])
def test_a_resumed_run_warns_at_the_step_of_an_uninterrupted_one(tmp_path, interrupted_at):
    whole = _warnings_of(tmp_path / "whole.pt", STEPS)
    assert len(whole) == 1 and f"(up to step {SKIPS_BEFORE_WARNING - 1})" in whole[0]
    ckpt = tmp_path / "cut.pt"
    assert _warnings_of(ckpt, interrupted_at) == []
    assert load_checkpoint(ckpt)["players"]["p"]["overflows_in_a_row"] == interrupted_at
    assert _warnings_of(ckpt, STEPS) == whole
    assert load_checkpoint(ckpt)["players"]["p"]["overflows_in_a_row"] == STEPS


def test_a_checkpoint_without_the_count_loads_as_none_in_a_row():
    """Files written before the count was saved restore it as 0; the count round-trips through the state."""
    module = torch.nn.Linear(2, 1)
    player = Player("p", list(module.parameters()), torch.optim.SGD(module.parameters(), lr=0.1))
    player.overflows_in_a_row = 5
    state = player.state_dict()
    assert state["overflows_in_a_row"] == 5
    fresh = Player("p", list(module.parameters()), torch.optim.SGD(module.parameters(), lr=0.1))
    fresh.load_state_dict(state)
    assert fresh.overflows_in_a_row == 5
    fresh.load_state_dict({k: v for k, v in state.items() if k != "overflows_in_a_row"})
    assert fresh.overflows_in_a_row == 0
