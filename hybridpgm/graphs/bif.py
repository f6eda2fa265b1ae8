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

import array
import collections
import gzip
import itertools
import math
import os

import numpy as np
import torch

from hybridpgm.bounded_read import read_at_most
from hybridpgm.checks import positive_int, shown_items
from hybridpgm.errors import CheckpointError, DataError, DataNotFoundError, ModelSpecError
# re-exported: the pgmpy conversions this module held before they moved to hybridpgm.graphs.bif_pgmpy
from hybridpgm.graphs.bif_pgmpy import discrete_table, from_pgmpy, to_pgmpy
from hybridpgm.graphs.bif_scanning import _PROB, _TYPE, _UNREADABLE, _blocks, _statements, _strip_comments
from hybridpgm.paths import file_path
from hybridpgm.train.atomic_write import write_atomically

__all__ = ["MAX_BIF_BYTES", "MAX_TABLE_ENTRIES", "from_pgmpy", "load_network", "read_bif", "to_pgmpy", "write_bif"]


#: the default ``max_bytes`` of :func:`read_bif`: the largest network bnlearn bundles (``munin``) is 1.9 MB
MAX_BIF_BYTES = 256 * 2**20
#: the default ``max_table_entries`` of :func:`read_bif`, the entries of all tables together: 128 MiB of float64
#: (the largest network bnlearn bundles, ``mildew``, has 547,158)
MAX_TABLE_ENTRIES = 2**24
#: the most digits a declared state count may have (a count with more could never match its list of states)
_MAX_COUNT_DIGITS = 18


def _read_text(path: str, at: str, max_bytes: int) -> str:
    """The text of the (gzip-compressed) BIF file ``path``, at most ``max_bytes`` bytes of it once uncompressed
    (read in binary, so that a few kilobytes of gzip cannot inflate to gigabytes in memory), its newlines
    translated as text mode does (``\\r\\n`` and ``\\r`` to ``\\n``).

    :raises DataError: the file cannot be read as (gzip-compressed) UTF-8 text, or holds more than ``max_bytes``.
    """
    gz = path.endswith(".gz")
    try:
        with (gzip.open if gz else open)(path, "rb") as f:
            raw = read_at_most(f, max_bytes + 1)  # f.read(max_bytes + 1) would allocate max_bytes first
        if len(raw) > max_bytes:
            raise DataError(f"the BIF file {at} holds more than max_bytes={max_bytes} bytes"
                            f"{' once uncompressed' if gz else ''}; pass a larger max_bytes to read_bif if the "
                            "file is trusted")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        kind = "gzip-compressed UTF-8 text" if gz else "UTF-8 text"
        raise DataError(f"cannot read the BIF file {at} as {kind}: {e}") from e
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _declared_count(digits: str, listed: int) -> bool:
    """Whether the state count ``digits`` (of any length) equals ``listed``, without ``int()`` of a count too long
    for it (Python refuses more than 4300 digits)."""
    digits = digits.lstrip("0") or "0"
    return len(digits) <= _MAX_COUNT_DIGITS and int(digits) == listed


def read_bif(path, *, dtype: torch.dtype = torch.float64, learnable: bool = False, atol: float = 1e-4,
             max_bytes: int = MAX_BIF_BYTES, max_table_entries: int = MAX_TABLE_ENTRIES):
    """Read a BIF file (``.bif`` or ``.bif.gz``) into a :class:`~hybridpgm.graphs.BayesNet`.

    A file from an untrusted source can make the reader allocate no more than its two limits allow: the text
    is read up to ``max_bytes`` (once uncompressed, in chunks: no more memory than the file holds), and the
    tables are allocated only if all of them together hold at most ``max_table_entries`` entries (checked
    before the first is allocated; a ``default`` entry of a few bytes can fill a large table), each after
    its statements are checked (without a ``default`` entry, they must give every parent configuration).

    :param path: file path, a ``str`` or :class:`os.PathLike` (``~`` expanded; ``bytes`` refused).
    :param dtype: dtype of the tables (float64 by default, as in the file).
    :param bool learnable: make the tables trainable parameters.
    :param float atol: row-sum tolerance (rows are renormalised).
    :param int max_bytes: the most bytes of text read (of a ``.bif.gz`` once uncompressed), 256 MiB by default
        (:data:`MAX_BIF_BYTES`; bnlearn's largest network is 1.9 MB).
    :param int max_table_entries: the most entries of all the tables together, :math:`\\sum_v k_v \\prod_{p}
        k_p` for variables :math:`v` of :math:`k_v` states whose parents :math:`p` have :math:`k_p`;
        :math:`2^{24}` by default (:data:`MAX_TABLE_ENTRIES`, 128 MiB of float64; bnlearn's largest network,
        ``mildew``, has 547,158).
    :raises ConfigError: ``max_bytes`` or ``max_table_entries`` is not a positive integer.
    :returns: the network; one of no node for a file whose ``network`` block is followed by no variable, as
        :func:`write_bif` writes an empty network (the BIF grammar [1] allows it; pgmpy reads and writes it too).
    :raises DataError: if the path is not a path, does not exist, is not a
        regular file, cannot be read as (gzip-compressed) UTF-8 text, holds more than ``max_bytes``, or
        declares neither a network nor a variable (not a BIF file).
    :raises ModelSpecError: naming the file and the variable whose declaration or
        table is malformed (a state name listed twice, a parent listed twice, a
        block without its closing brace, no states, tables of more than ``max_table_entries`` entries in all,
        entries that leave a parent configuration out without a ``default``), declared twice, or given two
        probability blocks.
    """
    from hybridpgm.graphs.bayes_net import BayesNet
    from hybridpgm.graphs.cpd import Table

    path = str(file_path(path, "BIF file", DataError))  # bytes refused by name, ~ expanded
    at = repr(path)  # the file as messages name it: quoted, a newline in its name escaped
    max_bytes = positive_int(max_bytes, "read_bif max_bytes")
    max_table_entries = positive_int(max_table_entries, "read_bif max_table_entries")
    if not os.path.exists(path):
        raise DataNotFoundError(f"BIF file not found: {at}")
    if not os.path.isfile(path):
        raise DataError(f"BIF path {at} is not a regular file (a directory?)")
    text = _strip_comments(_read_text(path, at, max_bytes))  # comments out, quoted strings kept
    states: dict[str, list[str]] = {}
    probs = []
    network = False  # a network block: a BIF file, even of no variable
    for kind, head, body in _blocks(text, at):
        if kind == "variable" and head in states:
            raise ModelSpecError(f"{at}: variable {head!r} is declared twice")
        if kind == "variable":
            t = _TYPE.search(body)
            if t is None:
                raise ModelSpecError(f"{at}: variable {head!r} is not 'type discrete [k] {{...}}'")
            names = [x.strip() for x in t.group(2).split(",") if x.strip()]
            if not _declared_count(t.group(1), len(names)):
                count = t.group(1) if len(t.group(1)) <= 20 else f"{t.group(1)[:12]}... ({len(t.group(1))} digits)"
                raise ModelSpecError(f"{at}: variable {head!r} declares {count} states, lists {len(names)}")
            if not names:  # before any table: a 0 in a table's shape divides by zero in its checks
                raise ModelSpecError(f"{at}: variable {head!r} declares 0 states; every variable needs at least one "
                                     "state")
            counts = collections.Counter(names)
            dup = sorted(x for x, n in counts.items() if n > 1)
            if dup:
                raise ModelSpecError(f"{at}: variable {head!r}: state names must be distinct, [{shown_items(dup)}] "
                                     f"repeat in {{ {shown_items(names, quote=str)} }}")
            states[head] = names
        elif kind == "probability":
            probs.append((head, body))
        else:
            network = True
    if not states and not network:
        raise DataError(f"{at} declares no variable and no network; is it a BIF file ('network x {{ }} variable x "
                        "{ type discrete [k] { ... }; }')?")
    bn = BayesNet()
    tables = {}
    positions = {v: {s: i for i, s in enumerate(names)} for v, names in states.items()}  # names are distinct
    blocks, total = {}, 0  # every block's head and size checked before any table is allocated
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
        if child in blocks:
            raise ModelSpecError(f"{at}: variable {child!r} has two probability blocks")
        dup = sorted({p for p in parents if parents.count(p) > 1})
        if dup:
            raise ModelSpecError(f"{at}: probability of {child!r} lists the parent(s) {dup} more than once")
        card = len(states[child])
        pcards = [len(states[p]) for p in parents]
        size = math.prod(pcards) * card  # Python ints: no overflow, whatever the number of parents
        if size > max_table_entries:
            raise ModelSpecError(f"{at}: the table of {child!r} would hold {size} entries ({card} states x "
                                 f"{size // card} configurations of its {len(parents)} parents), more than "
                                 f"max_table_entries={max_table_entries}; pass a larger max_table_entries to "
                                 "read_bif if the file is trusted")
        blocks[child] = (body, parents, card, pcards)
        total += size
    if total > max_table_entries:
        raise ModelSpecError(f"{at}: the tables of its {len(blocks)} variables would hold {total} entries in all, "
                             f"more than max_table_entries={max_table_entries}; pass a larger max_table_entries to "
                             "read_bif if the file is trusted")
    for child, (body, parents, card, pcards) in blocks.items():
        tables[child] = (_table(_statements(body, f"{at}: {child!r}"), at, child, parents, positions, card,
                                pcards), parents)
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


def _table(statements, at: str, child: str, parents: list[str], positions: dict, card: int,
           pcards: list[int]) -> np.ndarray:
    """The table, ``pcards + [card]``, that the ``statements`` of ``child``'s probability block give.

    Every statement is checked before the table is allocated: the numbers of each, the parent states of each
    entry, and, without a ``default`` or ``table`` statement, that the entries give every parent configuration.
    The entries' numbers wait in a flat ``array('d')`` (8 bytes a number) and fill the table in one vectorised
    assignment.
    """
    size = math.prod(pcards) * card
    default = table = None
    seen: set = set()
    given: list[tuple] = []  # the parent configurations of the entries after the last table statement
    values = array.array("d")  # their numbers, in order
    for kind, key, nums in statements:
        if kind == "default":  # fills the parent configurations no entry gives, wherever it stands
            if len(nums) != card:
                raise ModelSpecError(f"{at}: default of {child!r} has {len(nums)} numbers, needs {card}")
            if default is not None:
                raise ModelSpecError(f"{at}: {child!r} has two default entries")
            default = nums
        elif kind == "table":
            if len(nums) != size:
                raise ModelSpecError(f"{at}: table of {child!r} has {len(nums)} numbers, needs {size}")
            table, given, values = nums, [], array.array("d")  # a table statement replaces the entries before it
        else:
            cond = ", ".join(key)
            if len(key) != len(parents):
                raise ModelSpecError(f"{at}: entry ({cond}) of {child!r} does not list {len(parents)} parent states")
            try:  # a dict per variable: a list's index() per entry made a table of k entries O(k^2)
                idx = tuple(positions[p][s] for p, s in zip(parents, key))
            except KeyError as e:
                raise ModelSpecError(f"{at}: entry ({cond}) of {child!r} names an unknown state") from e
            if len(nums) != card:
                raise ModelSpecError(f"{at}: entry ({cond}) of {child!r} has {len(nums)} numbers, needs {card}")
            if idx in seen:
                raise ModelSpecError(f"{at}: entry ({cond}) of {child!r} is given twice")
            seen.add(idx)
            given.append(idx)
            values.extend(nums)
    if table is None and default is None and len(given) != size // card:
        raise ModelSpecError(f"{at}: the table of {child!r} is incomplete: its entries give {len(given)} of the "
                             f"{size // card} parent configurations, and it has no default entry")
    if table is not None:  # as pgmpy reads it: the child's state slowest, then the parents in C order
        out = np.ascontiguousarray(np.moveaxis(np.asarray(table).reshape([card] + pcards), 0, -1))
    else:
        out = np.full(pcards + [card], np.nan)
    rows = out.reshape(-1, card)  # a view: one row per parent configuration, in C order
    if given:
        at_rows = np.ravel_multi_index(np.asarray(given, dtype=np.intp).T, pcards) if parents else 0
        rows[at_rows] = np.frombuffer(values, dtype=np.float64).reshape(len(given), card)
    if default is not None:  # a 2-d mask: a mask over every parent axis made numpy index each axis (seconds)
        rows[np.isnan(rows).all(-1)] = default
    if np.isnan(out).any():
        raise ModelSpecError(f"{at}: the table of {child!r} is incomplete")
    return out


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
    where = f" (looked in {looked})" if looked else ""
    raise DataError(f"no BIF network {name!r}: it is not a file, and {known}{where}; pass a path "
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
