"""``docs/vae.md``'s speed table quotes ``benchmarks/results/vae_step.json`` as its run 1: the two must agree
(an audit found the table left over from an earlier run, every hybridpgm row shown faster than measured)."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = {  # the table's row label -> the JSON's key
    "`hybridpgm.fit`": "fit",
    "plain `SVI`, `DirectTrace_ELBO`, `GroupedAdam`": "svi_direct_grouped",
    "plain `SVI`, `DirectTrace_ELBO`, `pyro.optim.Adam`": "svi_direct",
    "plain `SVI`, Pyro's `Trace_ELBO`, `pyro.optim.Adam`": "svi_trace",
    "`DirectTrace_ELBO` in a hand-written loop": "loop_direct",
}


def test_the_docs_run_1_column_is_the_committed_json():
    ratios = json.loads((ROOT / "benchmarks/results/vae_step.json").read_text())["ratio_over_reference"]
    table = {}
    for line in (ROOT / "docs/vae.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"\d\.\d{3}", cells[1]):
            table[cells[0]] = float(cells[1])
    for label, key in ROWS.items():
        assert table[label] == round(ratios[key], 3), label
