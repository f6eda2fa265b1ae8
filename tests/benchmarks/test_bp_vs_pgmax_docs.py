"""``docs/markov_nets.md``'s BP-vs-PGMax table quotes ``benchmarks/results/bp_vs_pgmax.json``: the two must agree
(an audit found the table left over from the run before, every ratio different from the committed JSON)."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _docs_table() -> dict[tuple[int, int], float]:
    """``(side, batch) -> ratio`` from the rows ``| 16² | 0.98× (...) | 0.20× (...) |`` of the table."""
    table = {}
    for line in (ROOT / "docs/markov_nets.md").read_text().splitlines():
        row = re.fullmatch(r"\s*\|\s*(\d+)²\s*\|\s*([\d.]+)×[^|]*\|\s*([\d.]+)×[^|]*\|\s*", line)
        if row:
            side = int(row.group(1))
            table[(side, 1)], table[(side, 16)] = float(row.group(2)), float(row.group(3))
    return table


def _significant(x: float, digits: int) -> float:
    return float(f"{x:.{digits}g}")


def test_the_docs_table_is_the_committed_json():
    rows = json.loads((ROOT / "benchmarks/results/bp_vs_pgmax.json").read_text())["rows"]
    table = _docs_table()
    measured = {(int(r["grid"].split("x")[0]), r["batch"]): r["ratio_hybridpgm_over_pgmax"] for r in rows}
    assert set(table) == set(measured)
    for key, ratio in measured.items():
        shown = table[key]
        digits = len(str(shown).replace("0.", "").lstrip("0"))  # the significant digits the docs show
        assert shown == _significant(ratio, digits), (key, shown, ratio)
