"""The examples under ``torch.set_default_dtype(torch.float64)`` set before they run (a notebook's first cell).

Found by an audit of process-wide settings: three of them stopped, because the data stayed float32 while the
networks were built in float64: ``dbn_dbm.py`` (``load_dataset``'s images into ``DBN.to_classifier``: torch's raw
"mat1 and mat2 must have the same dtype"), ``gan_family.py`` (the same inside ``inception_score``) and
``gp_lstm.py`` (its ``.float()`` windows into the GP-LSTM: a ``DataError``).  The example lines are those of
``tests/test_examples.py``; the other examples ran under the setting before and are not repeated here."""

import os
import subprocess
import sys

import pytest

from tests.test_examples import EXAMPLES, ROOT

#: runs an example as ``__main__`` with torch's default dtype set to float64 first
_WRAPPER = ("import runpy, sys, torch; torch.set_default_dtype(torch.float64); sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
FAILED_BEFORE = ("dbn_dbm.py", "gan_family.py", "gp_lstm.py")


@pytest.mark.parametrize("line", [line for line in EXAMPLES if line.split()[0] in FAILED_BEFORE],
                         ids=lambda line: line.split()[0])
def test_example_runs_under_a_float64_default_dtype(line, tmp_path):
    script, *args = line.split()
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, str(ROOT / "examples" / script), *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
