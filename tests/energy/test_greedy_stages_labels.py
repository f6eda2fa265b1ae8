"""Each layer's progress bar of a greedy pretraining names the layer (hybridpgm/energy/greedy_stages.py,
hybridpgm/train/progress.py's ``labelled``)."""

import pytest
import torch
import tqdm.auto
import tqdm.std

from hybridpgm.energy import DBM, DBN


class _Recorded(tqdm.std.tqdm):
    descs: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _Recorded.descs.append(self.desc)


@pytest.mark.parametrize("kind", ["DBN", "DBM"])
def test_each_layers_bar_names_the_layer(kind, monkeypatch):
    """Every bar read "ContrastiveDivergence", whichever layer it trained."""
    monkeypatch.setattr(tqdm.auto, "tqdm", _Recorded)
    monkeypatch.setattr(_Recorded, "descs", [])
    torch.manual_seed(0)
    model = DBN([6, 4, 3]) if kind == "DBN" else DBM([6, 4, 3])
    data = (torch.rand(16, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    model.pretrain(data, epochs=1, batch_size=8, seed=0, progress=True)
    assert _Recorded.descs == [f"ContrastiveDivergence ({kind} layer {i} of 2)" for i in (0, 1)]


def test_a_fit_outside_a_pretraining_is_labelled_by_its_objective_alone():
    from hybridpgm.train.progress import bar_label, labelled

    with labelled("DBN layer 0 of 2"):
        assert bar_label("ContrastiveDivergence") == "ContrastiveDivergence (DBN layer 0 of 2)"
    assert bar_label("ContrastiveDivergence") == "ContrastiveDivergence"
