"""``docs/vae.md``'s speed table quotes ``benchmarks/results/vae_step.json`` as its run 1: the two must agree
(an audit found the table left over from an earlier run, every hybridpgm row shown faster than measured)."""

import json
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
ROWS = {  # the table's row label -> the JSON's key
    "`hybridpgm.fit`": "fit",
    "plain `SVI`, `DirectTrace_ELBO`, `GroupedAdam`": "svi_direct_grouped",
    "plain `SVI`, `DirectTrace_ELBO`, `pyro.optim.Adam`": "svi_direct",
    "plain `SVI`, Pyro's `Trace_ELBO`, `pyro.optim.Adam`": "svi_trace",
    "`DirectTrace_ELBO` in a hand-written loop": "loop_direct",
}


def test_the_docs_column_of_the_committed_run_is_the_committed_json():
    """The column of the run the docs name as ``benchmarks/results/vae_step.json`` holds its ratios."""
    ratios = json.loads((ROOT / "benchmarks/results/vae_step.json").read_text())["ratio_over_reference"]
    text = (ROOT / "docs/vae.md").read_text()
    run = int(re.search(r"`benchmarks/results/vae_step\.json` is run (\d+)", text).group(1))
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > run and re.fullmatch(r"\d\.\d{3}", cells[1]) and re.fullmatch(r"\d\.\d{3}", cells[run]):
            table[cells[0]] = float(cells[run])
    for label, key in ROWS.items():
        assert table[label] == round(ratios[key], 3), label


def test_the_run_interleaved_mode_times_every_row_in_whole_runs(tmp_path):
    """``--interleave run``: every row timed once per round over its own run of steps, ``fit`` too (its steps from
    its callback, its whole call apart); the ratios are over the hand-written reference's median."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import vae_step

    out = tmp_path / "runs.json"
    args = vae_step.parse_args(["--interleave", "run", "--rounds", "2", "--run-steps", "3", "--x-dim", "12",
                                "--hidden", "6", "--z-dim", "2", "--batch-size", "4", "--out", str(out)])
    threads = torch.get_num_threads()
    try:
        result = vae_step.main(args)  # sets torch's thread count (one, as the benchmark runs)
    finally:
        torch.set_num_threads(threads)
    assert json.loads(out.read_text())["ratio_over_reference"] == result["ratio_over_reference"]
    rows = {"fit", "reference_shuffled", "svi_direct", "svi_direct_fused", "svi_direct_grouped", "svi_trace",
            "loop_direct"}
    assert set(result["ratio_over_reference"]) == rows
    assert all(len(ts) == 2 and min(ts) > 0 for ts in result["per_round_step_ms"].values())
    median = result["median_step_ms"]
    assert result["ratio_over_reference"]["fit"] == median["fit"] / median["reference"]
    assert result["fit_whole_call_ms_per_step"] > 0
