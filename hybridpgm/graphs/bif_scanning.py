"""The lexical layer of the BIF reader: comments, blocks, tokens and the statements of a probability block.

:func:`~hybridpgm.graphs.bif.read_bif` reads a file in four steps, the first three of them here:
:func:`_strip_comments` removes the comments (``//`` to the end of the line, ``/* ... */``) and keeps quoted
strings whole; :func:`_blocks` cuts the text into its top-level ``network``, ``variable`` and ``probability``
blocks; :func:`_statements` reads the body of a ``probability`` block statement by statement by the BIF grammar
into ``table``, ``default`` and entry statements.  The last step, building the network from the variables' states and
the statements' numbers, is :mod:`hybridpgm.graphs.bif`'s.

The regular expressions of the format are here too, with ``_UNREADABLE``, what a name cannot hold for the
reader to read it back (:func:`~hybridpgm.graphs.bif.write_bif` refuses such names).  Every pattern and every
scan is linear in the text it reads, and no Python loop runs per character or per number (braces are found by a
search, a statement's numbers split in C): ``tests/graphs/test_bif_scanning.py`` checks the patterns' structure, counts
the characters the scans run over, and counts the calls the scanner makes.
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
#: a token of a probability block's body after any whitespace: a punctuation character or a word
_TOKEN = re.compile(r"\s*(?:([(),;|])|([^\s(),;|]+))")
#: the tokens of a statement's part that holds no ";", its commas left out (found, not matched: no repeat is
#: tried from a comma or a space)
_WORDS = re.compile(r"[()|]|[^\s(),;|]+")
#: what ends the parent states of an entry: its ")", or a ";", "(" or "|", which cannot stand in them
_ENTRY_STOP = re.compile(r"[();|]")
#: a brace, for matching a block's braces (:func:`_blocks`)
_BRACE = re.compile(r"[{}]")
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
        for found in _BRACE.finditer(text, brace + 1):  # brace by brace, not character by character
            depth += 1 if found.group() == "{" else -1
            if not depth:
                i = found.end()
                break
        if depth:
            raise ModelSpecError(f"{path}: unbalanced braces: the block {m.group(1) + ' ' + header.strip()!r} "
                                 "lacks its closing '}'")
        yield m.group(1), header.strip(), text[brace + 1:i - 1]
        pos = i


def _words(segment: str) -> list[str]:
    """The tokens of ``segment`` but its commas, in order (``segment`` holds no ``;``).

    A segment without ``(``, ``)`` or ``|`` (the numbers of a statement, as a rule) is split by ``str.split``,
    three times faster than :data:`_WORDS`: its tokens are then the runs of what is neither whitespace nor a
    comma, and ``str.split``'s whitespace is ``\\s``'s (both are ``str.isspace``; the tests check every code
    point)."""
    if "(" in segment or ")" in segment or "|" in segment:
        return _WORDS.findall(segment)
    return segment.replace(",", " ").split()


def _until_semicolon(body: str, pos: int, where: str) -> tuple[list[str], int]:
    """The tokens from ``pos`` to the next ``;`` but the commas, and the position after that ``;``."""
    end = body.find(";", pos)
    if end < 0:
        out = _words(body[pos:])
        raise ModelSpecError(f"{where}: a statement lacks its closing ';' after {' '.join(out)[:60]!r}")
    return _words(body[pos:end]), end + 1


def _statements(body: str, where: str):
    """Parse the body of a ``probability`` block by the BIF grammar::

        body      := statement*
        statement := "table" numbers ";" | "default" numbers ";"
                   | "(" state ("," state)* ")" numbers ";" | "property" ... ";"
        numbers   := number ([","] number)*

    and yield ``(kind, states, numbers)`` with ``kind`` ``"table"``,
    ``"default"`` or ``"entry"``.  A word is a keyword only where a statement
    starts, so states named ``table`` or ``default`` are read as states.

    The tokens are the punctuation ``( ) , ; |`` and the words between them and whitespace (:data:`_TOKEN`); a
    ``;`` always ends a statement.  The body is read statement by statement, each found with a search in C
    (the next ``;``, the ``)`` of an entry) and its numbers split by one ``findall`` and converted by one
    ``map``: the Python work is a constant per statement, however many numbers a statement holds
    (``tests/graphs/test_bif_scanning.py`` counts the calls).
    """
    pos = 0
    while True:
        m = _TOKEN.match(body, pos)
        if m is None:  # only whitespace is left
            return
        head = m.group(1) or m.group(2)
        if head == "(":
            close = _ENTRY_STOP.search(body, m.end())
            if close is not None and close.group() != ")":
                raise ModelSpecError(f"{where}: unexpected {close.group()!r} in the parent states of an entry")
            if close is None:
                states = _words(body[m.end():])
                raise ModelSpecError(f"{where}: an entry {'( ' + ' '.join(states)!r} lacks its ')'")
            states = _words(body[m.end():close.start()])
            words, pos = _until_semicolon(body, close.end(), where)
            yield "entry", states, _floats(words, where)
        elif head in ("table", "default"):
            words, pos = _until_semicolon(body, m.end(), where)
            yield head, [], _floats(words, where)
        elif head == "property":
            _, pos = _until_semicolon(body, m.end(), where)
        elif head == ";":
            pos = m.end()
        else:
            raise ModelSpecError(f"{where}: expected 'table', 'default', '(' or 'property', found {head!r}")


def _floats(words: list[str], where: str) -> list[float]:
    """``words`` as floats (Python's ``float``), or :class:`ModelSpecError` showing them (``where`` names the
    file and the variable)."""
    try:
        return list(map(float, words))
    except ValueError as e:
        raise ModelSpecError(f"{where}: cannot parse numbers in {' '.join(words)[:60]!r}") from e
