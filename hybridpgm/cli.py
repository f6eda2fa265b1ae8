"""The ``hybridpgm`` command: ``list`` and ``train <model>``.

Multi-process: ``torchrun --nproc_per_node=N -m hybridpgm train <model> ...``.
"""

from __future__ import annotations

import argparse
import json
import sys

from hybridpgm.errors import HybridPGMError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from hybridpgm.recipes import RECIPES

    parser = argparse.ArgumentParser(prog="hybridpgm", description="graphical models and deep networks with Pyro")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list model families and data sets")
    train = commands.add_parser("train", help="train a model family on a data set")
    models = train.add_subparsers(dest="model", required=True, metavar="model")
    for name, (recipe, description) in sorted(RECIPES.items()):
        sub = models.add_parser(name, help=description, description=description)
        recipe.add_arguments(sub, name)
    return parser


def _list() -> None:
    from hybridpgm.data import DATASETS
    from hybridpgm.recipes import RECIPES

    print("models:")
    for name, (_, description) in sorted(RECIPES.items()):
        print(f"  {name:<12} {description}")
    print("datasets:")
    for name, (shape, description) in sorted(DATASETS.items()):
        print(f"  {name:<14} {shape[0]}x{shape[1]}  {description}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        _list()
        return 0
    from hybridpgm.recipes import RECIPES

    try:
        metrics = RECIPES[args.model][0].run(args)
    except HybridPGMError as error:
        print(f"hybridpgm: error: {error}", file=sys.stderr)
        return 2
    if metrics:
        print(json.dumps({k: v for k, v in metrics.items() if k != "machine"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
