"""What loading a model file imports (hybridpgm/serialization.py)."""

import os
import subprocess
import sys


def _python(code):
    return subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_loading_a_model_file_imports_its_own_module_only(tmp_path):
    """Before, loading any model file imported every model module, GPyTorch's included (whose import warns under
    ``python -W error``)."""
    path = str(tmp_path / "rbm.pt")
    saved = _python(f"import hybridpgm; hybridpgm.save(hybridpgm.RBM(4, 3), {path!r})")
    assert saved.returncode == 0, saved.stderr
    done = _python(f"import sys, hybridpgm; hybridpgm.load({path!r}); print('gpytorch' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
