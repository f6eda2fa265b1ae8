"""Write the golden model files, a golden checkpoint and their answers (``tests/golden/models/*.pt``,
``tests/golden/checkpoints/*.pt``, ``answers.json``).

Run only when a new file format or family is added, never to make ``tests/test_golden_files.py`` pass: the files
are the promise that a model saved by an earlier hybridpgm still loads and answers the same.  Each file's answers
record the query results (float64 lists), the state dict's keys and shapes, and the hybridpgm commit that wrote it.

    python -m tests.golden.make_golden [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import torch

import hybridpgm
from tests.golden.queries import QUERIES, build, checkpoint_run

HERE = Path(__file__).parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="names to (re)write; default: those without a file")
    args = parser.parse_args(argv)
    answers_path = HERE / "answers.json"
    answers = json.loads(answers_path.read_text()) if answers_path.exists() else {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    (HERE / "models").mkdir(exist_ok=True)
    for name, model in build().items():
        path = HERE / "models" / f"{name}.pt"
        if (args.only is None and path.exists()) or (args.only is not None and name not in args.only):
            continue
        hybridpgm.save(model, path, golden=name)
        with torch.no_grad():
            result = QUERIES[name](model)
        answers[name] = {"written_by": f"hybridpgm {hybridpgm.__version__} ({commit})",
                         "state_dict": {k: list(v.shape) for k, v in model.state_dict().items()},
                         "query": {k: v.detach().double().reshape(-1).tolist() for k, v in result.items()}}
        print(f"wrote {path}")
    path = HERE / "checkpoints" / "vae_plateau.pt"
    if (args.only is None and not path.exists()) or (args.only is not None and "vae_plateau" in args.only):
        path.parent.mkdir(exist_ok=True)
        result = checkpoint_run(path, 2)
        answers["checkpoint:vae_plateau"] = {"written_by": f"hybridpgm {hybridpgm.__version__} ({commit})",
                                             "steps": 2, "loss": result.history.loss["elbo"]}
        print(f"wrote {path}")
    answers_path.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
