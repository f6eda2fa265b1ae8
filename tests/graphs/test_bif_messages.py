"""read_bif's messages name the file and the variable quoted (repr), stay on one line, and stay short for a
variable with very many states (found by an audit of hybridpgm's exceptions)."""

import pytest

from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.graphs import read_bif


def test_a_missing_file_whose_name_holds_a_newline_is_named_quoted_on_one_line(tmp_path):
    """Before: ``BIF file not found: .../net\\nwork.bif`` on two lines (the CLI showed ``net work.bif``)."""
    path = tmp_path / "net\nwork.bif"
    with pytest.raises(DataError) as caught:
        read_bif(path)
    assert str(caught.value) == f"BIF file not found: {str(path)!r}"


def test_a_malformed_file_is_named_quoted(tmp_path):
    path = tmp_path / "a\nb.bif"
    path.write_text("network x { }\nvariable a { type discrete [ 3 ] { y, n }; }\n")
    with pytest.raises(ModelSpecError) as caught:
        read_bif(path)
    assert str(caught.value) == f"{str(path)!r}: variable 'a' declares 3 states, lists 2"


def test_many_repeated_state_names_give_a_short_message(tmp_path):
    """Before, every one of the 100000 state names went into the message (about 600,000 characters)."""
    path = tmp_path / "big.bif"
    states = ", ".join(["x"] * 50_000 + [f"s{i}" for i in range(50_000)])
    path.write_text(f"network x {{ }}\nvariable a {{ type discrete [ 100000 ] {{ {states} }}; }}\n")
    with pytest.raises(ModelSpecError, match=r"variable 'a': state names must be distinct, \['x'\] repeat in "
                                             r"\{ x, x, x, x, x, x, x, x, x, x and 99990 more \}$") as caught:
        read_bif(path)
    assert len(str(caught.value)) < 300
