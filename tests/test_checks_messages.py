"""How messages show values (hybridpgm/checks_messages.py), split out of hybridpgm/checks.py, which re-exports
them."""

import pathlib

import numpy as np

from hybridpgm import checks
from hybridpgm.checks_messages import close_match, shown_items, type_name


def test_checks_gives_the_same_functions():
    assert (checks.type_name, checks.shown_items, checks.close_match) == (type_name, shown_items, close_match)


def test_type_name_leaves_private_modules_out():
    assert type_name(pathlib.PurePosixPath("a")) == "pathlib.PurePosixPath"
    assert type_name(np.zeros(1)) == "numpy.ndarray" and type_name(3) == "int"


def test_shown_items_and_close_match():
    assert shown_items(range(12), 3) == "0, 1, 2 and 9 more" and shown_items(["a\nb"]) == "'a\\nb'"
    assert shown_items(["x", "y"], quote=str) == "x, y"
    assert close_match("colour", ["color", "size"]) == "; did you mean 'color'?"
    assert close_match("zzz", ["color"]) == "" and close_match(3, ["3"]) == ""
    assert close_match("a", [str(i) for i in range(10_001)]) == ""
