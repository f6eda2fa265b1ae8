"""A MarkovNet's state holding NaN or an infinity in a table is refused on load, naming the table (and, through
:func:`hybridpgm.load`, the file): hybridpgm/graphs/mrf_tables.py ``refuse_nonfinite_tables``, run by the net's
``_load_from_state_dict``.

Carried audit item: a model file's check lets buffers be infinite (a GPyTorch bound), so a file whose fixed table
(a buffer) held ``+inf`` -- or ``-inf`` -- loaded without complaint, and every query of the loaded net then raised
``ModelSpecError: factor 'ab' has non-finite log-potentials``, which declaring such a table raises at once.  (NaN
was refused already, by the file check.)  ``-inf`` is no structural zero of a MarkovNet: ``add_factor`` refuses it
and every query reads it as an error, so it is refused on load as well.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.graphs import MarkovNet


def _net() -> MarkovNet:
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.randn(2, 2))  # fixed: a buffer
    mrf.add_factor("bc", ["b", "c"], nn.Parameter(torch.randn(2, 2)))  # learnable: a parameter
    return mrf.eval()


def _tampered(tmp_path, value: float, legacy: bool) -> tuple:
    """A model file of :func:`_net` whose fixed table holds ``value`` at one entry, written by ``torch.save``;
    ``legacy``: under the former entry names ``_pot_i``."""
    path = hybridpgm.save(_net(), tmp_path / "mrf.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["table_potentials.ab"][0, 1] = value
    if legacy:
        names = {"table_potentials.ab": "_pot_0", "table_potentials.bc": "_pot_1"}
        payload["state_dict"] = {names.get(k, k): v for k, v in payload["state_dict"].items()}
        payload["ties"] = {"modules": [], "parameters": [], "buffers": []}
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_a_model_file_with_an_infinite_fixed_table_is_refused_naming_the_file_and_the_table(tmp_path, value, legacy):
    """Fails on the old code: the file loaded, and only a query raised."""
    path = _tampered(tmp_path, value, legacy)
    with pytest.raises(CheckpointError, match=re.escape(str(path))) as info:
        hybridpgm.load(path)
    assert re.search(r"table_potentials\.ab: factor 'ab' has non-finite log-potentials \(NaN or inf\)",
                     str(info.value))


def test_a_model_file_with_nan_in_a_fixed_table_is_still_refused(tmp_path):
    path = _tampered(tmp_path, float("nan"), legacy=True)
    with pytest.raises(CheckpointError, match=r"factor 'ab' has non-finite log-potentials"):
        hybridpgm.load(path)


def test_the_untampered_file_loads_as_before(tmp_path):
    path = _tampered(tmp_path, 0.25, legacy=True)
    loaded, want = hybridpgm.load(path), _net()
    with torch.no_grad():
        want.table_potentials.ab[0, 1] = 0.25
        assert torch.equal(loaded.log_partition("exact"), want.log_partition("exact"))


@pytest.mark.parametrize("entry", ["table_potentials.ab", "table_potentials.bc"])
def test_load_state_dict_refuses_the_table_and_keeps_the_nets_own(entry):
    """A plain ``load_state_dict`` raises naming the entry and the factor; the refused table is not copied."""
    mrf = _net()
    before = {k: v.clone() for k, v in mrf.state_dict().items()}
    state = {k: v.clone() for k, v in before.items()}
    state[entry][1, 0] = float("inf")
    factor = entry.rpartition(".")[2]
    with pytest.raises(RuntimeError, match=rf"{re.escape(entry)}: factor '{factor}' has non-finite"):
        mrf.load_state_dict(state)
    assert torch.equal(mrf.state_dict()[entry], before[entry])
