"""The float32 benchmark times probability space against log space on the same queries, with float64's answers."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bn_float32  # noqa: E402

from hybridpgm.infer import bn_contract  # noqa: E402


def test_a_tiny_run_times_both_spaces_and_leaves_the_floors_as_found(tmp_path, monkeypatch):
    spaces = []
    real = bn_contract.factors

    def spy(facts, ev, keep, space):
        spaces.append((ev.dtype, space))
        return real(facts, ev, keep, space)

    monkeypatch.setattr(bn_contract, "factors", spy)
    found = dict(bn_contract.PROBABILITY_FLOOR)
    out = tmp_path / "f32.json"
    bn_float32.main(bn_float32.parse_args(
        ["--networks", "alarm", "--rows", "6", "--rounds", "2", "--min-timing-s", "0", "--max-calls", "1",
         "--out", str(out)]))
    (res,) = json.loads(out.read_text())["results"]
    for kind in ("mixed", "single", "train"):  # train: the loss and every table's gradient
        r = res[kind]
        assert r["speedup_probability_over_log_space"] == (r["float32_log_space_s_per_row"]
                                                           / r["float32_probability_s_per_row"])
        assert max(r["max_abs_diff_vs_float64"].values()) < 1e-5
    assert {(torch.float32, "prob"), (torch.float32, "log"), (torch.float64, "prob")} <= set(spaces)
    assert bn_contract.PROBABILITY_FLOOR == found
