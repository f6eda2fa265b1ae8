"""Read and write BIF files.

The Bayesian Interchange Format [1] declares discrete variables and their
conditional probability tables::

    variable tub { type discrete [ 2 ] { yes, no }; }
    probability ( tub | asia ) { (yes) 0.05, 0.95; (no) 0.01, 0.99; }

:func:`read_bif` parses it directly (plain or gzip-compressed, such as the
``.bif.gz`` networks bundled with pgmpy and the bnlearn repository [2]) into a
:class:`~hybridpgm.graphs.BayesNet` of :class:`~hybridpgm.graphs.cpd.Table` CPDs, and
:func:`write_bif` writes one back.  The conversions to and from pgmpy networks, :func:`from_pgmpy` and
:func:`to_pgmpy`, live in :mod:`hybridpgm.graphs.bif_pgmpy` (re-exported here), and the scanning of a file's
text -- comments, blocks, the statements of a probability block -- in :mod:`hybridpgm.graphs.bif_scanning`; this
module builds the network from what that scanning yields, and writes one.

**References**

[1] F. G. Cozman, *The Interchange Format for Bayesian Networks*, 1998.

[2] M. Scutari, *Learning Bayesian Networks with the bnlearn R Package*, 2010.
"""

from __future__ import annotations

import collections
import gzip
import itertools
import os

import numpy as np
import torch

from hybridpgm.checks import shown_items
from hybridpgm.errors import CheckpointError, DataError, DataNotFoundError, ModelSpecError
# re-exported: the pgmpy conversions this module held before they moved to hybridpgm.graphs.bif_pgmpy
from hybridpgm.graphs.bif_pgmpy import discrete_table, from_pgmpy, to_pgmpy
from hybridpgm.graphs.bif_scanning import _PROB, _TYPE, _UNREADABLE, _blocks, _statements, _strip_comments
from hybridpgm.paths import file_path
from hybridpgm.train.atomic_write import write_atomically

__all__ = ["from_pgmpy", "load_network", "read_bif", "to_pgmpy", "write_bif"]


def read_bif(path, *, dtype: torch.dtype = torch.float64, learnable: bool = False, atol: float = 1e-4):
    """Read a BIF file (``.bif`` or ``.bif.gz``) into a :class:`~hybridpgm.graphs.BayesNet`.

    :param path: file path, a ``str`` or :class:`os.PathLike` (``~`` expanded; ``bytes`` refused).
    :param dtype: dtype of the tables (float64 by default, as in the file).
    :param bool learnable: make the tables trainable parameters.
    :param float atol: row-sum tolerance (rows are renormalised).
    :raises DataError: if the path is not a path, does not exist, is not a
        regular file, cannot be read as (gzip-compressed) UTF-8 text, or
        declares no variable.
    :raises ModelSpecError: naming the file and the variable whose declaration or
        table is malformed (a state name listed twice, a parent listed twice, a
        block without its closing brace), declared twice, or given two
        probability blocks.
    """
    from hybridpgm.graphs.bayes_net import BayesNet
    from hybridpgm.graphs.cpd import Table

    path = str(file_path(path, "BIF file", DataError))  # bytes refused by name, ~ expanded
    at = repr(path)  # the file as messages name it: quoted, a newline in its name escaped
    if not os.path.exists(path):
        raise DataNotFoundError(f"BIF file not found: {at}")
    if not os.path.isfile(path):
        raise DataError(f"BIF path {at} is not a regular file (a directory?)")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = _strip_comments(f.read())  # comments out, quoted strings kept
    except (OSError, UnicodeDecodeError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        kind = "gzip-compressed UTF-8 text" if path.endswith(".gz") else "UTF-8 text"
        raise DataError(f"cannot read the BIF file {at} as {kind}: {e}") from e
    states: dict[str, list[str]] = {}
    probs = []
    for kind, head, body in _blocks(text, at):
        if kind == "variable" and head in states:
            raise ModelSpecError(f"{at}: variable {head!r} is declared twice")
        if kind == "variable":
            t = _TYPE.search(body)
            if t is None:
                raise ModelSpecError(f"{at}: variable {head!r} is not 'type discrete [k] {{...}}'")
            names = [x.strip() for x in t.group(2).split(",") if x.strip()]
            if len(names) != int(t.group(1)):
                raise ModelSpecError(f"{at}: variable {head!r} declares {t.group(1)} states, lists {len(names)}")
            counts = collections.Counter(names)
            dup = sorted(x for x, n in counts.items() if n > 1)
            if dup:
                raise ModelSpecError(f"{at}: variable {head!r}: state names must be distinct, [{shown_items(dup)}] "
                                     f"repeat in {{ {shown_items(names, quote=str)} }}")
            states[head] = names
        elif kind == "probability":
            probs.append((head, body))
    if not states:
        raise DataError(f"{at} declares no variable; is it a BIF file ('variable x {{ type discrete [k] "
                        "{ ... }; }')?")
    bn = BayesNet()
    tables = {}
    positions = {v: {s: i for i, s in enumerate(names)} for v, names in states.items()}  # names are distinct
    for head, body in probs:
        m = _PROB.fullmatch(head)
        if m is None:
            shown = "probability " + head
            shown = repr(shown) if len(shown) <= 80 else f"{shown[:60]!r}... ({len(shown)} characters)"
            raise ModelSpecError(f"{at}: cannot parse {shown}")
        child = m.group(1).strip()
        parents = [x.strip() for x in (m.group(2) or "").split(",") if x.strip()]
        for v in [child] + parents:
            if v not in states:
                raise ModelSpecError(f"{at}: probability of {child!r} names undeclared variable {v!r}")
        if child in tables:
            raise ModelSpecError(f"{at}: variable {child!r} has two probability blocks")
        dup = sorted({p for p in parents if parents.count(p) > 1})
        if dup:
            raise ModelSpecError(f"{at}: probability of {child!r} lists the parent(s) {dup} more than once")
        card = len(states[child])
        pcards = [len(states[p]) for p in parents]
        table = np.full(pcards + [card], np.nan)
        where = f"{at}: {child!r}"
        seen: set = set()
        default = None
        for kind, key, nums in _statements(body, where):
            if kind == "default":  # fills the parent configurations no entry gives, wherever it stands
                if len(nums) != card:
                    raise ModelSpecError(f"{at}: default of {child!r} has {len(nums)} numbers, needs {card}")
                if default is not None:
                    raise ModelSpecError(f"{at}: {child!r} has two default entries")
                default = np.asarray(nums)
            elif kind == "table":
                if len(nums) != table.size:
                    raise ModelSpecError(f"{at}: table of {child!r} has {len(nums)} numbers, needs {table.size}")
                # as pgmpy reads it: the child's state slowest, then the parents in C order
                table = np.moveaxis(np.asarray(nums).reshape([card] + pcards), 0, -1)
            else:
                cond = ", ".join(key)
                if len(key) != len(parents):
                    raise ModelSpecError(f"{at}: entry ({cond}) of {child!r} does not list "
                                         f"{len(parents)} parent states")
                try:  # a dict per variable: a list's index() per entry made a table of k entries O(k^2)
                    idx = tuple(positions[p][s] for p, s in zip(parents, key))
                except KeyError as e:
                    raise ModelSpecError(f"{at}: entry ({cond}) of {child!r} names an unknown state") from e
                if len(nums) != card:
                    raise ModelSpecError(f"{at}: entry ({cond}) of {child!r} has {len(nums)} numbers, needs {card}")
                if idx in seen:
                    raise ModelSpecError(f"{at}: entry ({cond}) of {child!r} is given twice")
                seen.add(idx)
                table[idx] = nums
        if default is not None:
            table[np.isnan(table).all(-1)] = default
        if np.isnan(table).any():
            raise ModelSpecError(f"{at}: the table of {child!r} is incomplete")
        tables[child] = (table, parents)
    given = [v for v in states if v in tables]
    probs = []
    for v in given:
        table, parents = tables[v]
        table = table / table.sum(-1, keepdims=True) if np.all(np.abs(table.sum(-1) - 1) <= atol) else table
        probs.append((torch.as_tensor(table, dtype=dtype), parents))
    # every table checked in a few vectorised passes (Table.many); a malformed one is reported, naming the node
    # and the row, when it is declared below, as a table checked alone would be
    try:
        cpds = dict(zip(given, Table.many(probs, learnable=learnable, atol=atol)))
    except ModelSpecError:  # tables that are no tables (a complex dtype): which variable's, as each is built alone
        for v, (table, parents) in zip(given, probs):
            try:
                Table(table, parents, learnable=learnable, atol=atol)
            except ModelSpecError as e:
                raise ModelSpecError(f"{at}: variable {v!r}: {e}") from e
        raise
    for v in states:
        if v not in cpds:
            raise ModelSpecError(f"{at}: variable {v!r} has no probability block")
        try:
            bn.add(v, cpds[v], states=states[v])
        except ModelSpecError as e:
            raise ModelSpecError(f"{at}: {e}") from e
    return bn.check()


def load_network(name: str, **kwargs):
    """Read a BIF file by path, or a network bundled with pgmpy by name (``"alarm"``, ``"child"``, ...).

    :param name: a path to a ``.bif``/``.bif.gz`` file, or the name of one of
        pgmpy's bundled bnlearn networks.  It is read as a path when it names a regular file or holds a path
        separator or a ``.bif``/``.bif.gz`` suffix, and as a bundled name otherwise: a folder called ``asia``
        in the working directory does not hide the bundled ``asia``.
    :param kwargs: passed to :func:`read_bif`.
    :raises DataError: naming where it looked, the bundled networks, and how to
        get the file; or for a ``name`` that is neither a string nor a path.
    """
    try:
        name = os.fspath(name)
    except TypeError:
        raise DataError(f"load_network needs a file path or a network name, got {name!r}") from None
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    # a path when it is a regular file or reads like one (a separator, a .bif/.bif.gz suffix); otherwise a
    # bundled name, so that a folder or other entry of the working directory called "asia" hides nothing
    if os.path.isfile(name) or os.sep in name or (os.altsep and os.altsep in name) \
            or name.endswith((".bif", ".bif.gz")):
        return read_bif(name, **kwargs)  # DataError for a path that does not exist or is not a regular file
    looked = []
    try:
        import pgmpy

        base = os.path.join(os.path.dirname(pgmpy.__file__), "utils", "example_models")
        for ext in (".bif.gz", ".bif"):
            path = os.path.join(base, f"{name}{ext}")
            looked.append(path)
            if name and os.path.isfile(path):
                return read_bif(path, **kwargs)
        bundled = sorted({f.split(".bif")[0] for f in (os.listdir(base) if os.path.isdir(base) else [])
                          if f.endswith((".bif", ".bif.gz"))})
        known = f"the bundled networks are {bundled}" if bundled else f"pgmpy bundles no BIF network in {base}"
    except ImportError:
        known = "pgmpy is not installed (pip install 'hybridpgm[pgmpy]' for the bnlearn networks)"
    raise DataError(f"no BIF network {name!r}: it is not a file, and {known} (looked in {looked}); pass a path "
                    "to a BIF file, or a bundled name (install pgmpy, pip install 'hybridpgm[pgmpy]', for the "
                    "bnlearn networks)")


def _bif_name(name, what: str) -> str:
    """``str(name)``, or :class:`ModelSpecError` naming ``what`` where :func:`read_bif` could not read it back."""
    text = str(name)
    bad = _UNREADABLE.search(text)
    if not text or bad:
        found = "is empty" if not text else f"contains {bad.group()!r}"
        raise ModelSpecError(f"write_bif: {what} {text!r} {found}, which a BIF file cannot hold (read_bif and pgmpy "
                             "would misread it); use names without whitespace, '(', ')', ',', ';', '|', '{', '}', "
                             "'//' or '/*', e.g. 'very_hot'")
    return text


def write_bif(bn, path) -> None:
    """Write a network of discrete CPDs (without context inputs) as a BIF file, with its state names
    (``s0, s1, ...`` for a node without state names).  Every name is checked before anything is written.

    The file (gzip-compressed when ``path`` ends with ``.gz``) is built in memory, written to a temporary file
    beside ``path`` and renamed over it (:func:`~hybridpgm.train.atomic_write.write_atomically`): a full disk or
    a stopped run leaves the previous file, never a partial one.  Missing folders of ``path`` are created, as
    checkpoints, reports and figures are.

    :param bn: the :class:`~hybridpgm.graphs.BayesNet` to write (discrete :class:`~hybridpgm.graphs.cpd.Table`
        CPDs, or any CPD with a discrete table and no context input).
    :param path: the file to write, a ``str`` or :class:`os.PathLike` (:func:`~hybridpgm.paths.file_path`:
        ``~`` expanded, ``bytes`` refused).
    :raises DataError: naming the path: it is not a ``str``/``os.PathLike``, exists as something other than a
        regular file (a folder, a symbolic link, a FIFO, a device node), or the OS refused the write (with its
        reason: no permission, no space ...).
    :raises ModelSpecError: a continuous or context-dependent node; or, naming the node and state, a name that
        :func:`read_bif` could not read back (empty, or holding whitespace, ``(``, ``)``, ``,``, ``;``, ``|``,
        ``{``, ``}``, ``//`` or ``/*``).
    """
    path = file_path(path, "BIF file", DataError)
    bn.check()
    names, lines = {}, ["network unknown {", "}"]
    for v in bn.nodes:
        card = bn.cardinality(v)
        if card is None:
            raise ModelSpecError(f"node {v!r} is continuous; BIF holds discrete networks only")
        _bif_name(v, "node name")
        given = bn.state_names.get(v) or [f"s{i}" for i in range(card)]
        names[v] = [_bif_name(s, f"node {v!r}: state") for s in given]  # distinct strings (BayesNet.add)
        lines.append(f"variable {v} {{\n  type discrete [ {len(names[v])} ] {{ {', '.join(names[v])} }};\n}}")
    for v in bn.nodes:
        table = discrete_table(bn, v)
        parents = list(bn.parents(v))
        head = f"probability ( {v}{' | ' + ', '.join(parents) if parents else ''} ) {{"
        lines.append(head)
        if not parents:
            lines.append("  table " + ", ".join(repr(float(p)) for p in table) + ";")
        else:
            pstates = [names[p] for p in parents]
            for idx in itertools.product(*[range(len(s)) for s in pstates]):
                key = ", ".join(pstates[i][j] for i, j in enumerate(idx))
                lines.append(f"  ({key}) " + ", ".join(repr(float(p)) for p in table[idx]) + ";")
        lines.append("}")
    data = ("\n".join(lines) + "\n").encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime 0: the same network gives the same bytes
    try:
        write_atomically(path, data, "BIF file", save=lambda payload, file: file.write(payload))
    except CheckpointError as error:
        raise DataError(str(error)) from error.__cause__
