"""Every ``python`` code block of the README and of ``docs/*.md`` runs: users copy them.

The blocks of one file run in order in one namespace (a later block continues an earlier one), in a
temporary working directory, under tiny settings: ``hybridpgm.fit`` is limited to two steps and
sample counts of 100 or more become 32.  Blocks that continue an example given in prose get the
names they need from ``SETUP`` (run before that block); the few that are not runnable code say why
in ``NOT_RUN``.  A block that raises fails its file's test, naming the block and its first line; one that
reads Fashion-MNIST is left out, and its file's test reported skipped, where that data set is not installed.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pyro
import pytest
import torch

import hybridpgm

ROOT = Path(__file__).resolve().parents[1]
FILES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

GRAPHS = "from hybridpgm.graphs import load_network\n"
# (file, block index) -> code that defines what the block takes from the surrounding prose (a setup's
# names stay in the file's namespace: keep them to what the prose gives, so a block's missing import fails)
SETUP = {
    ("docs/bayes_nets.md", 3): GRAPHS + 'sprinkler, bn = bn, load_network("alarm")',
    ("docs/bayes_nets.md", 4): ('bn = sprinkler\n'
                                'data_with_nans = bn.to_tensor(bn.sample(600))\n'
                                'data_with_nans[::3, 1] = float("nan")'),
    ("docs/bayes_nets.md", 6): GRAPHS + 'asia = load_network("asia")',
    ("docs/bayes_nets.md", 7): (GRAPHS + 'from hybridpgm.graphs import write_bif\n'
                                'write_bif(load_network("asia"), "asia.bif.gz")\n'
                                'pgmpy_model = load_network("asia").to_pgmpy()'),
    ("docs/gaussian_processes.md", 0): ('import torch\n'
                                        'x, y = torch.rand(64, 3), torch.rand(64)\n'
                                        'x_test = torch.rand(16, 3)'),
    ("docs/gaussian_processes.md", 1): ('import pyro, pyro.distributions as dist\n'
                                        'from hybridpgm.gp import SVDeepKernelGP\n'
                                        'net, N = mlp([3, 8, 2]), len(x)'),
    ("docs/gaussian_processes.md", 4): 'x_test, y_test = x[-16:], y[-16:]',
    # a model.pt as `hybridpgm train dkl` writes it (its standardization in the meta), under private names
    ("docs/gaussian_processes.md", 5): ('from hybridpgm.recipes.gp import STANDARDIZATION as _keys, '
                                        'load_regression as _load\n'
                                        'from hybridpgm import save as _save\n'
                                        'from hybridpgm.gp import DeepKernelGP as _DKL\n'
                                        'from hybridpgm.nn import mlp as _mlp\n'
                                        '_d = _load(0)\n'
                                        '_save(_DKL(_d["x_train"], _d["y_train"], _mlp([10, 8, 2])), '
                                        '"runs/dkl-diabetes/model.pt", recipe="dkl", **{k: _d[k] for k in _keys})'),
    ("docs/gaussian_processes.md", 6): 'x, y, x_test = torch.rand(64, 1), torch.rand(64), torch.rand(16, 1)',
    ("docs/pyro_native.md", 0): 'import torch\nx = torch.randint(0, 2, (32, 64)).float()',
    ("docs/sbn.md", 0): ('import torch\nfrom hybridpgm.generative import SigmoidBeliefNet\n'
                         'sbn, x = SigmoidBeliefNet([6, 3]), torch.randint(0, 2, (5, 6)).float()'),
    ("docs/vae.md", 0): 'from hybridpgm import VAE\nvae = VAE(64, 8)',
}
NOT_RUN = {
    ("docs/training.md", 0): "the Objective protocol's signature, not code to run",
}


def have_fashion_mnist() -> bool:
    from hybridpgm.data.fashion_mnist import find_fashion_mnist
    from hybridpgm.errors import DataError

    try:
        find_fashion_mnist()
    except DataError:
        return False
    return True


def blocks(file: str) -> list[tuple[int, int, str]]:
    """``(index, line, code)`` of the file's python blocks."""
    text = (ROOT / file).read_text(encoding="utf-8")
    return [(i, text[:m.start()].count("\n") + 2, m.group(1)) for i, m in enumerate(BLOCK.finditer(text))]


def tiny(code: str) -> str:
    """Sample counts of 100 or more (``num_samples=1000``, ``sample(2500)``, ...) become 32."""
    code = re.sub(r"\b(num_samples|num_steps|num_chains|warmup_steps)=\d{3,}", r"\1=32", code)
    return re.sub(r"\b(sample|log_likelihood)\(([^()]*?)(\d{3,})\)", r"\1(\g<2>32)", code)


def two_steps(fit):
    @functools.wraps(fit)
    def limited(*args, **kwargs):
        kwargs.update(max_steps=2, progress=False)
        return fit(*args, **kwargs)
    return limited


@pytest.mark.parametrize("file", [f for f in FILES if blocks(f)])
def test_code_blocks_run(file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hybridpgm, "fit", two_steps(hybridpgm.fit))
    namespace: dict = {"__name__": f"docs_{Path(file).stem}"}
    with torch.random.fork_rng(), pyro.get_param_store().scope():
        torch.manual_seed(0)
        skipped = []
        for index, line, code in blocks(file):
            if (file, index) in NOT_RUN:
                continue
            if '"fashion-mnist"' in code and not have_fashion_mnist():
                skipped.append(f"block {index} (line {line})")
                continue
            try:
                exec(SETUP.get((file, index), ""), namespace)
                exec(compile(tiny(code), f"{file}:{line}", "exec"), namespace)
            except Exception as error:
                pytest.fail(f"{file}, python block {index} (line {line}): {type(error).__name__}: {error}")
    if skipped:
        pytest.skip(f"{file}: the other blocks ran; {', '.join(skipped)} need Debian's dataset-fashion-mnist")


def test_setup_and_skips_name_existing_blocks():
    """A stale key (a block removed or renumbered) fails here rather than silently running nothing."""
    for file, index in [*SETUP, *NOT_RUN]:
        assert index < len(blocks(file)), (file, index)


def test_a_failing_block_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(pytest, "fail", lambda message: (_ for _ in ()).throw(AssertionError(message)))
    (tmp_path / "broken.md").write_text("text\n\n```python\nx = 1\n```\n\n```python\nundefined_name\n```\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    with pytest.raises(AssertionError, match=r"broken.md, python block 1 \(line 8\): NameError"):
        test_code_blocks_run("broken.md", tmp_path, monkeypatch)


def test_tiny_shrinks_sample_counts_only():
    assert tiny("f(x, num_samples=1000, k=5000)") == "f(x, num_samples=32, k=5000)"
    assert tiny("vae.log_likelihood(data.test.x[:1000], 5000)") == "vae.log_likelihood(data.test.x[:1000], 32)"
    assert tiny("mrf.sample(1000, num_sweeps=50)") == "mrf.sample(1000, num_sweeps=50)"
    assert tiny("iwgan.sample(2500)") == "iwgan.sample(32)"
