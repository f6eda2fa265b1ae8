"""The lexical layer of the BIF reader: comments, blocks, tokens and the statements of a probability block.

:func:`~hybridpgm.graphs.bif.read_bif` reads a file in four steps, the first three of them here:
:func:`_strip_comments` removes the comments (``//`` to the end of the line, ``/* ... */``) and keeps quoted
strings whole; :func:`_blocks` cuts the text into its top-level ``network``, ``variable`` and ``probability``
blocks; :func:`_statements` tokenises the body of a ``probability`` block and parses it by the BIF grammar into
``table``, ``default`` and entry statements.  The last step, building the network from the variables' states and
the statements' numbers, is :mod:`hybridpgm.graphs.bif`'s.

The regular expressions of the format are here too, with ``_UNREADABLE``, what a name cannot hold for the
reader to read it back (:func:`~hybridpgm.graphs.bif.write_bif` refuses such names).  Every pattern and every
scan is linear in the text it reads: ``tests/graphs/test_bif_scanning.py`` checks their structure and counts the
characters the scans run over.
"""

from __future__ import annotations

import re

from hybridpgm.errors import ModelSpecError

# The patterns are linear in the text they scan: no unbounded repeat inside another, and every unbounded
# repeat stops at a character that what follows it cannot start with (a failing attempt gives each character
# back once).  The ones searched through a whole file (_HEAD, _COMMENT_OPEN, _BLOCK_END) hold no unbounded
# repeat, which a failing attempt from each of many starts would run to the end of the file; _strip_comments
# runs _STRING_BODY over each character once.  tests/graphs/test_bif_scanning.py checks all three.
#: a block's keyword; its header runs to the next "{" (:func:`_blocks`)
_HEAD = re.compile(r"\b(network|variable|probability)\b")
_TYPE = re.compile(r"type\s+discrete\s*\[\s*(\d+)\s*\]\s*\{([^}]*)\}")
#: a probability block's (stripped) header, ``( child | parent, ... )``, matched whole; the groups are stripped
_PROB = re.compile(r"\(([^|)]+)(?:\|([^)]*))?\)")
_TOKEN = re.compile(r"\s*(?:([(),;|])|([^\s(),;|]+))")
# what may open a quoted string (kept whole: a property may hold "http://...") or a comment (// to the end of the
# line, /* */): see _strip_comments
_COMMENT_OPEN = re.compile(r'"|//|/\*')
#: the inside of a quoted string: no raw newline, a backslash escapes any character (a newline too)
_STRING_BODY = re.compile(r'(?:[^"\\\n]|\\.)*', re.S)
_BLOCK_END = re.compile(r"\*/")
# what read_bif cannot read back in a name: an entry's token separators, braces, the openings of comments
_UNREADABLE = re.compile(r"[\s(),;|{}]|//|/\*")


def _strip_comments(text: str) -> str:
    """``text`` without its comments (``//`` to the end of the line, ``/* ... */``), its quoted strings kept whole
    (a ``//`` inside one is no comment).

    Scanning from the start, the first ``"``, ``//`` or ``/*`` opens a string or a comment.  A string runs to
    its closing ``"``; one that meets a raw newline (or the end) first is no string, and its ``"`` stays as text.
    A ``/*`` that no ``*/`` closes stays as text too, and the scan goes on from the character after it (as the
    regular expression this replaces did).  Linear in ``len(text)``: a failed string fails for every ``"`` up
    to where it failed (each was escaped in it), and a ``/*`` with no ``*/`` after it means none after a later
    one either, so neither is scanned again.
    """
    out, pos, n = [], 0, len(text)
    string_fails_before = 0  # a '"' before this position opens no string (it lies inside a failed one)
    block_end = -2  # the last "*/" found (its index), or -1: there is none after it
    while True:
        m = _COMMENT_OPEN.search(text, pos)
        if m is None:
            out.append(text[pos:])
            return "".join(out)
        start = m.start()
        if m.group() == '"':
            close = start if start < string_fails_before else _STRING_BODY.match(text, start + 1).end()
            if start < close < n and text[close] == '"':
                out.append(text[pos:close + 1])
                pos = close + 1
                continue
            string_fails_before = max(string_fails_before, close)
        elif m.group() == "//":
            line_end = text.find("\n", start)
            out.append(text[pos:start])
            pos = n if line_end < 0 else line_end
            continue
        else:
            if block_end != -1 and block_end < start + 2:
                found = _BLOCK_END.search(text, start + 2)
                block_end = -1 if found is None else found.start()
            if block_end != -1:
                out.append(text[pos:start])
                pos = block_end + 2
                continue
        out.append(text[pos:start + 1])  # an opening that opens nothing: kept as text
        pos = start + 1


def _blocks(text: str, path: str):
    """Yield ``(keyword, header, body)`` for each top-level block of a file; ``path`` names it in errors.

    A block is a keyword, its header up to the next ``{``, and its body up to the matching ``}``.
    """
    pos = 0
    while True:
        m = _HEAD.search(text, pos)
        if m is None:
            return
        brace = text.find("{", m.end())
        if brace < 0:  # no block follows (a later keyword would find no "{" either)
            return
        header = text[m.end():brace]
        depth, i = 1, brace + 1
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth:
            raise ModelSpecError(f"{path}: unbalanced braces: the block {m.group(1) + ' ' + header.strip()!r} "
                                 "lacks its closing '}'")
        yield m.group(1), header.strip(), text[brace + 1:i - 1]
        pos = i


def _split_list(s: str) -> list[str]:
    return [t.strip() for t in re.split(r"[,\s]+", s) if t.strip()]


def _tokens(body: str, where: str) -> list[str]:
    tokens, pos = [], 0
    body = body.rstrip()
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if m is None or m.end() == pos:
            raise ModelSpecError(f"{where}: cannot read {body[pos:pos + 40].strip()!r}")
        tokens.append(m.group(1) or m.group(2))
        pos = m.end()
    return tokens


def _statements(body: str, where: str):
    """Parse the body of a ``probability`` block by the BIF grammar::

        body      := statement*
        statement := "table" numbers ";" | "default" numbers ";"
                   | "(" state ("," state)* ")" numbers ";" | "property" ... ";"
        numbers   := number ([","] number)*

    and yield ``(kind, states, numbers)`` with ``kind`` ``"table"``,
    ``"default"`` or ``"entry"``.  A word is a keyword only where a statement
    starts, so states named ``table`` or ``default`` are read as states.
    """
    tokens = _tokens(body, where)
    i, n = 0, len(tokens)

    def until_semicolon(j: int) -> tuple[list[str], int]:
        out = []
        while j < n and tokens[j] != ";":
            if tokens[j] != ",":
                out.append(tokens[j])
            j += 1
        if j == n:
            raise ModelSpecError(f"{where}: a statement lacks its closing ';' after {' '.join(out)[:60]!r}")
        return out, j + 1

    while i < n:
        head = tokens[i]
        if head == "(":
            j = i + 1
            states = []
            while j < n and tokens[j] != ")":
                if tokens[j] not in (",", ";", "(", "|"):
                    states.append(tokens[j])
                elif tokens[j] != ",":
                    raise ModelSpecError(f"{where}: unexpected {tokens[j]!r} in the parent states of an entry")
                j += 1
            if j == n:
                raise ModelSpecError(f"{where}: an entry {'( ' + ' '.join(states)!r} lacks its ')'")
            words, i = until_semicolon(j + 1)
            yield "entry", states, _floats(" ".join(words), where)
        elif head in ("table", "default"):
            words, i = until_semicolon(i + 1)
            yield head, [], _floats(" ".join(words), where)
        elif head == "property":
            _, i = until_semicolon(i + 1)
        elif head == ";":
            i += 1
        else:
            raise ModelSpecError(f"{where}: expected 'table', 'default', '(' or 'property', found {head!r}")


def _floats(s: str, where: str) -> list[float]:
    try:
        return [float(t) for t in _split_list(s)]
    except ValueError as e:
        raise ModelSpecError(f"{where}: cannot parse numbers in {s.strip()[:60]!r}") from e
