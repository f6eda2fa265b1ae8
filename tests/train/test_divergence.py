"""The error path of fit's step (:mod:`hybridpgm.train.divergence`), called directly."""

import types

import torch

from hybridpgm.errors import DataError, TrainingDivergedError
from hybridpgm.train.divergence import diverged_error, explain_nonfinite, failed_elsewhere


class _Explains:
    def __init__(self, fail=False):
        self.fail, self.calls = fail, []

    def explain_nonfinite(self, player, batch):
        self.calls.append((player, batch.shape[0]))
        if self.fail:
            raise KeyError("broken")
        return f"{batch.shape[0]} rows"


def test_explain_nonfinite_numbers_the_micro_batches_and_stops_at_a_failing_hook():
    micro = [(torch.zeros(3, 2), 0.5), (torch.zeros(3, 2), 0.5)]
    text = explain_nonfinite(_Explains(), "elbo", micro)
    assert text == (".  _Explains.explain_nonfinite: micro-batch 1 of 2 (rows 0..2 of the batch, numbered from 0 in "
                    "it): 3 rows; micro-batch 2 of 2 (rows 3..5 of the batch, numbered from 0 in it): 3 rows")
    failing = _Explains(fail=True)
    assert "could not explain the non-finite loss (KeyError: 'broken')" in explain_nonfinite(failing, "elbo", micro)
    assert len(failing.calls) == 1
    assert explain_nonfinite(object(), "elbo", micro) == ""


def test_diverged_error_names_the_loss_or_the_gradients_and_the_rank_at_fault():
    weight = torch.nn.Parameter(torch.zeros(2))
    weight.grad = torch.tensor([1.0, float("nan")])
    player = types.SimpleNamespace(name="elbo", names=["weight"], params=[weight])
    error = diverged_error(player, 2.5, 7, None)
    assert isinstance(error, TrainingDivergedError) and error.step == 7
    assert str(error).startswith("gradient of player 'elbo' is not finite in ['weight'] (the loss, 2.5, is finite)")
    context = types.SimpleNamespace(rank=1, world_size=2)
    other = diverged_error(player, float("nan"), 3, "run.pt", context=context, diverged=[0])
    assert "the loss of rank(s) [0] is not finite, this rank's (1) is; see rank 0's error" in str(other)
    # no file yet (a failure before the first checkpoint): the message does not point at one (it did)
    assert "no checkpoint 'run.pt' has been written yet, and the module keeps the updates" in str(other)
    assert "no update was applied to player 'elbo' (a player before it in this step's schedule keeps its own)" \
        in str(other)


def test_an_existing_checkpoint_is_named_as_the_last_good_state(tmp_path):
    player = types.SimpleNamespace(name="elbo", names=["weight"], params=[torch.ones(1, requires_grad=True)])
    path = tmp_path / "run.pt"
    path.write_bytes(b"checkpoint")
    assert f"{str(path)!r} keeps the last good state" in str(diverged_error(player, float("nan"), 3, path))


def test_failed_elsewhere_points_to_the_rank_whose_data_failed():
    error = failed_elsewhere([0], types.SimpleNamespace(rank=1, world_size=2), "elbo", 4)
    assert isinstance(error, DataError)
    assert str(error) == ("the data of rank(s) [0] failed a check of the model at step 4 (player 'elbo'); see rank "
                          "0's error for the check and the row: this rank's (1 of 2) data passed; no update was "
                          "applied")
