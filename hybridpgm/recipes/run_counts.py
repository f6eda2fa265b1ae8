"""The compute counts ``hybridpgm evaluate RUN`` and ``hybridpgm sample RUN`` take from a run's ``model.pt``.

A run records the counts its evaluation used (``--ais-chains``, ``--ais-steps``, ``--eval-samples``,
``--classifier-steps``; ``--gibbs-steps`` for the samples of a DBN or DBM) and the sizes of the data an ``evaluate``
draws again from the run's seed (a bayes-net run's ``--num-data`` and ``--num-test`` rows, a crf run's
``--num-train`` and ``--num-test`` sequences of at most ``--max-len`` tokens: the test set follows the training one
in the same random stream, so both are drawn), and ``evaluate``/``sample`` use them again, so a run scores with the
effort it was trained with (its draws seeded by ``--seed``). A model file can come from elsewhere (a downloaded
run), and those counts decide how long the command takes: a count read from the file above its cap in :data:`CAPS`
(at least ten times every recipe's default for it) is refused, one line naming the count, unless the user passes it
on the command line (``evaluate RUN --ais-steps 200000``), which also sets a count below its cap (the run's own
value passed gives what the run's file gives: for the data sizes, the same test set). A count given for a run whose
recipe takes none (``--ais-steps`` for a VAE run) is refused too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hybridpgm.errors import ConfigError

__all__ = ["CAPS", "COUNTS", "add_count_arguments", "resolve_counts"]

#: count -> the largest value taken from a run's file without being passed on the command line
CAPS = {"ais_chains": 1_000, "ais_steps": 100_000, "eval_samples": 20_000, "classifier_steps": 5_000,
        "gibbs_steps": 10_000, "num_data": 50_000, "num_train": 40_000, "num_test": 10_000, "max_len": 300}

#: command -> model name -> the counts its recipe reads from the run's file
COUNTS = {
    "evaluate": {"rbm": ("ais_chains", "ais_steps"), "dbm": ("ais_chains", "ais_steps"),
                 **{m: ("eval_samples",) for m in ("vae", "iwae", "sbn")},
                 **{m: ("eval_samples", "classifier_steps") for m in ("gan", "iwgan", "infogan", "aavae")},
                 "bayes-net": ("num_data", "num_test"), "crf": ("num_train", "num_test", "max_len")},
    "sample": {"dbn": ("gibbs_steps",), "dbm": ("gibbs_steps",)},
}

_HELP = {"ais_chains": "AIS chains of the log Z estimate (rbm, dbm)",
         "ais_steps": "AIS temperatures of the log Z estimate (rbm, dbm)",
         "eval_samples": "importance samples per test example (vae, iwae, sbn), or generated samples scored "
                         "(gan, iwgan, infogan, aavae)",
         "classifier_steps": "training steps of the reference classifier (gan, iwgan, infogan, aavae)",
         "gibbs_steps": "Gibbs sweeps per sample (dbn, dbm)",
         "num_data": "training rows drawn before the held-out ones (bayes-net; the held-out rows follow them)",
         "num_train": "training sequences drawn before the test ones (crf; the test sequences follow them)",
         "num_test": "held-out rows (bayes-net) or test sequences (crf) scored",
         "max_len": "longest sequence of the task drawn (crf)"}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_count_arguments(parser: argparse.ArgumentParser, command: str, positive) -> None:
    """Add ``command``'s count options (``--ais-chains`` ...; default: the run's, up to its cap) to ``parser``.

    :param positive: the parser of a positive integer (:func:`~hybridpgm.recipes.common.positive_int`).
    """
    for name in sorted({n for counts in COUNTS[command].values() for n in counts}):
        parser.add_argument(_option(name), type=positive, default=None, metavar="N",
                            help=f"{_HELP[name]}; default: the run's own, refused above {CAPS[name]:,} (pass a "
                                 "larger one here)")


def resolve_counts(meta: dict[str, Any], args: argparse.Namespace, command: str, model: str, run: Path) -> None:
    """Set in ``meta`` (the run's metadata, changed in place) each count ``command`` reads for a ``model`` run:
    the one passed on the command line, else the run's own, which must be a positive ``int`` at most its cap
    (:data:`CAPS`).

    :raises ConfigError: a count was passed for a run that takes none, or the run's count (none passed) is
        missing, not a positive integer, or above its cap; one line naming the count, the run and the option.
    """
    wanted = COUNTS[command].get(model, ())
    for name in sorted({n for counts in COUNTS[command].values() for n in counts}):
        given, option = getattr(args, name, None), _option(name)
        if given is not None and name not in wanted:
            takes = ", ".join(m for m, counts in sorted(COUNTS[command].items()) if name in counts)
            raise ConfigError(f"{option} {given} was given, but the run {str(run)!r} is a {model} run; {option} "
                              f"applies to {command} of {takes} runs")
        if given is not None:
            meta[name] = given
        elif name in wanted:
            value = meta.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"the run {str(run)!r} records {name} {value!r}, not a positive integer; "
                                  f"pass {option} N")
            if value > CAPS[name]:
                raise ConfigError(f"the run {str(run)!r} records {option} {value:,}, above the cap {CAPS[name]:,} "
                                  f"on a count read from a run's file (it sets how long {command} takes); pass "
                                  f"{option} {value} to {command} with it anyway, or a smaller count")
