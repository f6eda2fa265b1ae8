"""Per-rank buffers and objective state in checkpoints (:mod:`hybridpgm.train.rank_states`).

The two-process behaviour (each rank resumes its own persistent chains, bit for bit) is tested with
torchrun in ``test_distributed.py``; these are the single-process pieces.
"""

import pytest
import torch

from hybridpgm.errors import CheckpointError
from hybridpgm.train.checkpoint import load_checkpoint, save_checkpoint
from hybridpgm.train.rank_states import (load_rank_state, rank_buffer_paths, rank_state, rank_state_differences,
                                         resume_plan)


class Chains(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))
        self.register_buffer("chain", torch.zeros(3))
        self.register_buffer("scratch", torch.zeros(1), persistent=False)


class WithState:
    def __init__(self):
        self.module, self.count = Chains(), torch.tensor(0.0)

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"].clone()


def _state(value, count=0.0):
    objective = WithState()
    objective.module.chain.fill_(value)
    objective.count = torch.tensor(count)
    return rank_state(objective.module, objective)


def test_a_rank_state_holds_copies_of_the_persistent_buffers_and_the_objective_state():
    objective = WithState()
    state = rank_state(objective.module, objective)
    assert sorted(state["buffers"]) == ["chain"] and state["objective"] == {"count": torch.tensor(0.0)}
    objective.module.chain.fill_(5.0)  # a copy, not the live buffer
    assert torch.equal(state["buffers"]["chain"], torch.zeros(3))
    assert rank_state(objective.module, object())["objective"] is None  # an objective without extra state


def test_loading_a_rank_state_restores_buffers_in_place_and_the_objective():
    objective = WithState()
    buffer = objective.module.chain
    load_rank_state("run.pt", objective.module, objective, _state(2.0, count=4.0))
    assert objective.module.chain is buffer and torch.equal(buffer, torch.full((3,), 2.0))
    assert objective.count.item() == 4.0
    wrong = {"buffers": {"chain": torch.zeros(4), "other": torch.zeros(1)}, "objective": None}
    with pytest.raises(CheckpointError, match=r"'run.pt' holds per-rank buffers that do not fit the model: 'other' is "
                                              r"not a buffer of the model; 'chain' has shape \(4,\) in the checkpoint"):
        load_rank_state("run.pt", objective.module, objective, wrong)


def test_the_resume_plan_restores_each_rank_on_as_many_ranks_and_warns_otherwise():
    objective = WithState()
    differing = {"world_size": 2, "rank_states": [_state(0.0), _state(1.0, count=1.0)]}
    states, warning = resume_plan("run.pt", differing, 2, objective.module, objective)
    assert states is differing["rank_states"] and warning is None
    states, warning = resume_plan("run.pt", differing, 3, objective.module, objective)
    assert states is None
    assert warning.startswith("checkpoint 'run.pt' was written by 2 ranks and this run has 3: ")
    assert "('chain', the objective's state) is lost" in warning and "resume on 2 ranks" in warning
    same = {"world_size": 2, "rank_states": [_state(1.0), _state(1.0)]}
    assert resume_plan("run.pt", same, 1, objective.module, objective) == (None, None)  # nothing is lost
    assert resume_plan("run.pt", {"world_size": 1}, 2, objective.module, objective) == (None, None)
    _, warning = resume_plan("run.pt", {"world_size": 2}, 2, objective.module, objective)  # an older checkpoint
    assert "holds only rank 0's buffers and objective state" in warning
    assert rank_state_differences(same["rank_states"]) == []


def test_rank_states_may_hold_infinite_buffers_but_no_nan(tmp_path):
    module = Chains()
    ok = rank_buffer_paths(module, 2)
    states = [_state(0.0), _state(float("inf"))]
    save_checkpoint(tmp_path / "ok.pt", {"rank_states": states}, infinite_ok=ok)
    assert torch.isinf(load_checkpoint(tmp_path / "ok.pt")["rank_states"][1]["buffers"]["chain"]).all()
    for bad, where in (([_state(0.0), _state(float("nan"))], r"\['rank_states'\]\[1\]\['buffers'\]\['chain'\]"),
                       ([_state(0.0), _state(0.0, count=float("inf"))],
                        r"\['rank_states'\]\[1\]\['objective'\]\['count'\]")):
        with pytest.raises(CheckpointError, match=where):
            save_checkpoint(tmp_path / "bad.pt", {"rank_states": bad}, infinite_ok=ok)
    assert not (tmp_path / "bad.pt").exists()
