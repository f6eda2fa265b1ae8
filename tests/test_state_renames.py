"""Renamed state entries of any module, collected over a model (hybridpgm/state_renames.py); the MarkovNet's
own renames are tested in tests/graphs/test_mrf_tables.py."""

import torch
from torch import nn

from hybridpgm.state_renames import renamed_entries, upgrade_state, upgrade_ties


class Renamed(nn.Module):
    """A module whose weight was once saved as ``old_w``."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))

    def _legacy_state_renames(self):
        return {"old_w": "w"}


def test_renames_are_collected_with_each_modules_path_and_shared_modules_under_every_path():
    inner = Renamed()
    model = nn.Sequential(nn.Linear(1, 1), nn.Sequential(inner), inner)
    assert renamed_entries(model) == {"1.0.old_w": "1.0.w", "2.old_w": "2.w"}
    assert renamed_entries(nn.Linear(1, 1)) == {}


def test_a_state_dict_is_renamed_in_order_and_one_holding_both_names_is_left_alone():
    model = nn.Sequential(nn.Linear(1, 1), Renamed())
    state = model.state_dict()
    old = type(state)((k.replace("1.w", "1.old_w"), v) for k, v in state.items())
    old._metadata = state._metadata
    new = upgrade_state(model, old)
    assert list(new) == list(state) and new._metadata is state._metadata
    assert upgrade_state(model, state) is state
    both = dict(state, **{"1.old_w": torch.zeros(2)})
    assert upgrade_state(model, both) is both


def test_a_tie_record_is_renamed_and_a_malformed_one_left_for_retie_to_name():
    model = nn.Sequential(Renamed())
    record = {"modules": [], "parameters": [["0.old_w", "x"]]}
    assert upgrade_ties(model, record) == {"modules": [], "parameters": [["0.w", "x"]]}
    assert upgrade_ties(model, [["0.old_w"]]) == [["0.old_w"]]


def test_a_checkpoint_is_renamed_in_its_module_state_each_ranks_buffers_and_callback_module_states():
    """Found by a review: an old checkpoint written on 2 ranks kept each rank's own buffers under the old names,
    so resuming it failed ('... is not a buffer of the model'); every place a checkpoint keeps names by entry is
    renamed now (a rank state or callback entry of another shape is left alone)."""
    from hybridpgm.train.run_start import upgrade_checkpoint_names

    model = nn.Sequential(Renamed())
    resumed = {"module": {"0.old_w": torch.ones(2)},
               "rank_states": [{"buffers": {"0.old_w": torch.ones(2)}}, {"buffers": {"0.old_w": torch.zeros(2)}},
                               None],
               "callbacks": [{"state": {"module": {"0.old_w": torch.ones(2)}, "best": 1.0}}, None, {"state": 3}]}
    upgrade_checkpoint_names(model, resumed)
    assert list(resumed["module"]) == ["0.w"]
    assert [list(r["buffers"]) for r in resumed["rank_states"][:2]] == [["0.w"], ["0.w"]]
    assert torch.equal(resumed["rank_states"][1]["buffers"]["0.w"], torch.zeros(2))
    assert list(resumed["callbacks"][0]["state"]["module"]) == ["0.w"] and resumed["callbacks"][0]["state"]["best"]
