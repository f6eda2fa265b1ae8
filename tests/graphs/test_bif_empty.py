"""``write_bif`` and ``read_bif`` of a network without variables (audit of empty inputs, finding 4).

Before, ``write_bif(BayesNet(), p)`` wrote ``network unknown { }`` and ``read_bif(p)`` refused it ("declares no
variable").  The BIF grammar allows a network block followed by no variable, and pgmpy reads and writes one, so
``read_bif`` now reads it as a network of no node; a file with neither a network block nor a variable is still
refused as no BIF file.
"""

from __future__ import annotations

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, read_bif, write_bif


@pytest.mark.parametrize("name", ["empty.bif", "empty.bif.gz"])
def test_an_empty_network_round_trips(tmp_path, name):
    write_bif(BayesNet(), tmp_path / name)
    bn = read_bif(tmp_path / name)
    assert isinstance(bn, BayesNet) and bn.nodes == []
    assert torch.equal(bn.log_evidence({}), torch.zeros(()))


def test_pgmpys_empty_network_is_read(tmp_path):
    pgmpy = pytest.importorskip("pgmpy")  # noqa: F841
    from pgmpy.readwrite import BIFWriter

    try:
        from pgmpy.models import DiscreteBayesianNetwork as Network
    except ImportError:  # pgmpy before 1.0
        from pgmpy.models import BayesianNetwork as Network
    writer = BIFWriter(Network())
    write = getattr(writer, "write", None) or writer.write_bif  # write_bif is deprecated from pgmpy 1.0
    write(str(tmp_path / "pgmpy.bif"))
    assert "network" in (tmp_path / "pgmpy.bif").read_text() and "variable" not in (tmp_path / "pgmpy.bif").read_text()
    assert read_bif(tmp_path / "pgmpy.bif").nodes == []


@pytest.mark.parametrize("text", ["", "garbage {{{", "// network x { }\n"])
def test_a_file_of_no_network_and_no_variable_is_still_refused(tmp_path, text):
    (tmp_path / "x.bif").write_text(text)
    with pytest.raises(DataError, match="declares no variable and no network; is it a BIF file"):
        read_bif(tmp_path / "x.bif")
