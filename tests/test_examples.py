"""Runs every example in examples/ with tiny arguments.

Each example must appear in EXAMPLES; an example file that is not listed fails
``test_every_example_is_listed``.  Add one line per new example (shared file:
edit it minimally).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

EXAMPLES = [
    "bayes_net.py --num-steps 3 --batch-size 64 --num-data 200 --num-queries 20 --quiet --device cpu",
    "crf_tagger.py --num-steps 3 --batch-size 16 --num-train 64 --num-test 32 --max-len 12 --device cpu",
    "dbn_dbm.py --num-steps 3 --batch-size 16 --hidden 8 4 --chains 5 --ais-chains 4 --ais-steps 20 --gibbs-steps 3 "
    "--quiet --device cpu",
    "deep_kernel.py --num-steps 3 --batch-size 32 --num-data 100 --hidden 8 --num-inducing 8 --quiet --device cpu",
    "domain_adaptation.py --num-steps 3 --batch-size 16 --hidden 16 --features 8 --quiet --device cpu",
    "gan_family.py --num-steps 3 --batch-size 16 --hidden 16 --classifier-steps 3 --quiet --device cpu",
    "gp_lstm.py --num-steps 3 --batch-size 16 --hidden 4 --forecast-samples 8 --horizon 3 --quiet --device cpu",
    "mrf_denoising.py --num-steps 2 --batch-size 16 --num-iters 3 --device cpu",
    "mrf_denoising.py --num-steps 2 --batch-size 16 --inference exact --device cpu",
    "rbm.py --num-steps 3 --batch-size 16 --hidden 8 --ais-chains 4 --ais-steps 20 --gibbs-steps 3 --quiet "
    "--device cpu",
    "sbn.py --num-steps 3 --batch-size 32 --hidden 8 4 --eval-samples 5 --num-test 20 --gibbs --quiet --device cpu",
    "vae.py --num-steps 3 --batch-size 32 --accumulate 2 --particles 3 --eval-samples 5 --quiet --device cpu",
]


def _script(line: str) -> str:
    return line.split()[0]


def test_every_example_is_listed():
    listed = {_script(line) for line in EXAMPLES}
    present = {p.name for p in (ROOT / "examples").glob("*.py")}
    assert present == listed, f"unlisted: {sorted(present - listed)}; missing: {sorted(listed - present)}"


@pytest.mark.parametrize("line", EXAMPLES, ids=_script)
def test_example_runs(line, tmp_path):
    script, *args = line.split()
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("script", sorted({_script(line) for line in EXAMPLES}))
def test_example_refuses_a_seed_torch_refuses(script, tmp_path):
    """``--seed -1`` was parsed as an int and reached ``torch.manual_seed``: a traceback.  Now argparse's one
    usage line and exit 2, as ``hybridpgm train`` gives."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--seed", "-1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "--seed" in proc.stderr


@pytest.mark.parametrize("line", [
    "vae.py --particles -5",  # was read as "not > 1": trained the ELBO without a word
    "vae.py --particles 0",
    "sbn.py --particles 1",  # was max(k, 2): VIMCO trained with K=2
    "sbn.py --objectives rws vimco --particles 0",
], ids=lambda line: line.replace(" ", "_"))
def test_example_refuses_particles_it_would_not_use(line, tmp_path):
    """Found by an audit: a --particles the example would not train with was taken and silently changed or
    ignored.  Now argparse's usage line and exit 2, before anything runs."""
    script, *args = line.split()
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "--particles" in proc.stderr


@pytest.mark.parametrize("script", sorted({_script(line) for line in EXAMPLES}))
def test_example_help_gives_the_whole_first_paragraph(script, tmp_path):
    """Found by an audit: six examples took ``__doc__.splitlines()[0]`` as the --help description, cut
    mid-sentence ("... trained with the ELBO or").  Now the docstring's first paragraph on one line."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    description = proc.stdout.split("\n\n")[1]  # usage, description, options
    assert description.rstrip().endswith((".", ")")), description


def test_rbm_example_writes_a_model_that_hybridpgm_load_reads(tmp_path):
    """Found by an audit: --out wrote torch.save(rbm.state_dict()) as rbm.pt, which hybridpgm.load refuses."""
    import hybridpgm
    from hybridpgm.energy import RBM

    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    args = ("--num-steps 3 --batch-size 16 --hidden 8 --ais-chains 4 --ais-steps 20 --gibbs-steps 3 --quiet "
            "--device cpu").split()
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "rbm.py"), *args, "--out", str(tmp_path / "run")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rbm = hybridpgm.load(tmp_path / "run" / "rbm.pt")
    assert isinstance(rbm, RBM) and rbm.weight.shape in {(64, 8), (8, 64)}


def test_mrf_denoising_s_default_ising_reference_beats_the_noisy_input(tmp_path):
    """Found by an audit: at the old default --ising-coupling 0.5 the hand-set Ising reference had a larger pixel
    error than the noisy input (20.49% against 20.23%, mean field).  The reference needs no training."""
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "mrf_denoising.py"), "--num-steps", "1",
                           "--batch-size", "16", "--num-iters", "10", "--device", "cpu"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    errors = {line.strip().split("  ")[0]: float(line.split()[-1].rstrip("%")) for line in proc.stdout.splitlines()
              if line.startswith("  ")}  # "  noisy input          20.23%", "  hand-set Ising (J=0.35)  18.48%"
    ising = next(v for k, v in errors.items() if k.startswith("hand-set Ising"))
    assert ising < errors["noisy input"] - 1.0, errors
