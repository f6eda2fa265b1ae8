"""hybridpgm/main_module.py: a class of the running script is recorded as ``__main__.<name>`` also in a ``spawn``
child, where the script is the module ``__mp_main__``; one real spawn run checks the journeys across that boundary
(a model saved on one side loads on the other, a run resumes), which the previous release refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hybridpgm.main_module import class_path, recorded_module, recorded_name


def _class(module: str, qualname: str = "Net") -> type:
    cls = type("Net", (), {})
    cls.__module__, cls.__qualname__ = module, qualname
    return cls


def test_the_script_of_a_spawn_child_is_recorded_as_main():
    assert class_path(_class("__mp_main__", "Outer.Net")) == "__main__.Outer.Net"
    assert class_path(_class("__main__")) == "__main__.Net"
    assert recorded_module("__mp_main__") == "__main__"


def test_other_modules_are_recorded_as_they_are():
    assert class_path(_class("torch.optim.sgd", "SGD")) == "torch.optim.sgd.SGD"
    for module in ("__mp_main__x", "pkg.__mp_main__", "__main__"):
        assert recorded_module(module) == module


def test_a_name_an_older_release_wrote_in_a_child_reads_as_main():
    assert recorded_name("__mp_main__.Net") == "__main__.Net"
    for unchanged in ("__main__.Net", "__mp_main__x.Net", "pkg.__mp_main__.Net", "__mp_main__", None, 3):
        assert recorded_name(unchanged) == unchanged


def test_the_same_script_saves_loads_and_resumes_across_a_spawn_boundary(tmp_path):
    """tests/main_module_worker.py, run as a script (a few seconds): its spawn child loads the model the parent
    saved and resumes the parent's run (a callback and an optimizer of the script), the parent loads the child's
    model."""
    worker = Path(__file__).with_name("main_module_worker.py")
    done = subprocess.run([sys.executable, str(worker), str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" ok\n") == 4
