"""benchmarks/bn_inference.py's ``machine()``: the machine's description is taken once (found by a review: it
was taken twice, once per key read from it)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bn_inference  # noqa: E402

import hybridpgm.recipes.common as common  # noqa: E402


def test_machine_describes_the_cpu_once(monkeypatch):
    calls = []
    described = common.machine_description

    def counted():
        calls.append(1)
        return described()

    monkeypatch.setattr(common, "machine_description", counted)
    found = bn_inference.machine()
    assert len(calls) == 1
    assert found["cpu_model"] == described()["cpu_model"] and found["cpu_capability"] == described()["cpu_capability"]
