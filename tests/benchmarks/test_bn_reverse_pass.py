"""The reverse-pass benchmark times the hand-written pass against autograd on the same queries, same answers."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bn_reverse_pass  # noqa: E402

from hybridpgm.graphs import reverse_pass  # noqa: E402
from hybridpgm.infer import bn_contract  # noqa: E402


def test_a_tiny_run_compares_both_passes_on_the_same_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(reverse_pass, "LARGE", 0)  # alarm's small contractions take the hand-written pass too
    out = tmp_path / "rp.json"
    budget = bn_contract.ROW_CHUNK_BYTES
    bn_reverse_pass.main(bn_reverse_pass.parse_args(
        ["--networks", "alarm", "--rows", "6", "--rounds", "2", "--min-timing-s", "0", "--max-calls", "1",
         "--out", str(out)]))
    (res,) = json.loads(out.read_text())["results"]
    assert res["network"] == "alarm" and res["workspace_mib"] > 0
    for kind in ("mixed", "single"):
        r = res[kind]
        assert r["max_abs_diff"] < 1e-12
        assert r["speedup_hand_written_over_autograd"] == r["autograd_s_per_row"] / r["hand_written_s_per_row"]
        assert set(r["minor_faults_per_call"]) == {"hand_written", "autograd"}
    assert reverse_pass.LARGE == 0 and bn_contract.ROW_CHUNK_BYTES is budget  # left as the script found them


def test_every_network_gets_the_hand_written_pass(tmp_path, monkeypatch):
    """The ways are set per timing; the second network still sees the library's own settings."""
    monkeypatch.setattr(reverse_pass, "LARGE", 0)
    out = tmp_path / "rp.json"
    bn_reverse_pass.main(bn_reverse_pass.parse_args(
        ["--networks", "alarm,child", "--rows", "4", "--rounds", "1", "--min-timing-s", "0", "--max-calls", "1",
         "--out", str(out)]))  # one round: autograd's timing comes last
    assert all(r["workspace_mib"] > 0 for r in json.loads(out.read_text())["results"])
