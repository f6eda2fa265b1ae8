"""read_bif scans a file in time linear in its length (hybridpgm/graphs/bif_scanning.py): its regular expressions
cannot backtrack catastrophically, and comments and quoted strings are scanned once.

Found by a fuzzing audit: a ``probability (`` header with a long run of spaces and no ``)`` took 4.4 s at 2.1 kB
(cubic), and unterminated strings, unterminated ``/*`` and keywords with no ``{`` after them took 47 s, 16 s and
5 s at 100 kB (quadratic).  No test here measures time: the patterns are checked by their structure, and the
scanning by the characters the searches run over, counted.
"""

import functools
import itertools
import re

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import bif_scanning  # the scanner's patterns and functions, read and patched
from hybridpgm.graphs import read_bif

try:  # Python >= 3.11
    from re import _constants as sre
    from re import _parser as sre_parse
except ImportError:  # Python 3.10
    import sre_constants as sre
    import sre_parse

#: the characters the sets are compared on: ASCII, Latin and more, and every Unicode space up to U+3000
_SAMPLE = frozenset(chr(i) for i in range(0x3001))
_CATEGORIES = {"CATEGORY_SPACE": r"\s", "CATEGORY_NOT_SPACE": r"\S", "CATEGORY_DIGIT": r"\d",
               "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W"}
_REPEATS = tuple(getattr(sre, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(sre, name))


@functools.lru_cache(maxsize=None)
def _category(name: str) -> frozenset:
    return frozenset(c for c in _SAMPLE if re.fullmatch(_CATEGORIES[name], c))


def _chars(op, av, flags) -> frozenset | None:
    """The sample characters that the one-character item ``(op, av)`` matches; ``None`` for any other item."""
    if op == sre.LITERAL:
        return frozenset({chr(av)})
    if op == sre.NOT_LITERAL:
        return _SAMPLE - {chr(av)}
    if op == sre.ANY:
        return _SAMPLE if flags & re.S else _SAMPLE - {"\n"}
    if op == sre.IN:
        chars, negate = set(), False
        for item, value in av:
            if item == sre.NEGATE:
                negate = True
            elif item == sre.LITERAL:
                chars.add(chr(value))
            elif item == sre.RANGE:
                chars |= {chr(i) for i in range(value[0], value[1] + 1)}
            elif item == sre.CATEGORY:
                chars |= _category(str(value))
            else:
                raise AssertionError(f"the check does not know the set item {item}")
        return _SAMPLE - chars if negate else frozenset(chars)
    return None


def _first(items, flags) -> tuple[frozenset, bool]:
    """The characters a match of the sequence ``items`` can start with, and whether it can match empty."""
    out: set = set()
    for op, av in items:
        chars, nullable = _first_of(op, av, flags)
        out |= chars
        if not nullable:
            return frozenset(out), False
    return frozenset(out), True


def _first_of(op, av, flags) -> tuple[frozenset, bool]:
    chars = _chars(op, av, flags)
    if chars is not None:
        return chars, False
    if op == sre.AT:
        return frozenset(), True
    if op == sre.SUBPATTERN:
        return _first(av[-1], flags)
    if op == sre.BRANCH:
        firsts = [_first(alternative, flags) for alternative in av[1]]
        return frozenset().union(*(f for f, _ in firsts)), any(n for _, n in firsts)
    if op in _REPEATS:
        chars, nullable = _first(av[2], flags)
        return chars, nullable or av[0] == 0
    raise AssertionError(f"the check does not know the item {op}")


def _problems(items, after: frozenset, flags, in_unbounded: bool, out: list) -> list:
    """Append to ``out`` what could make the sequence ``items`` (followed by a match starting with one of
    ``after``) backtrack more than linearly: an unbounded repeat inside another or of something that matches
    empty; an unbounded repeat whose item can also start what follows it (then a failing match tries every
    split between them: the cubic ``\\s*([^|)]+?)\\s*`` of the old header pattern); alternatives inside an
    unbounded repeat that can start with one character."""
    for k, (op, av) in enumerate(items):
        rest, rest_nullable = _first(items[k + 1:], flags)
        follow = rest | after if rest_nullable else rest
        if op in _REPEATS:
            low, high, body = av
            body_first, body_nullable = _first(body, flags)
            unbounded = high == sre.MAXREPEAT
            if unbounded and in_unbounded:
                out.append(f"an unbounded repeat inside another: {body}")
            if unbounded and body_nullable:
                out.append(f"an unbounded repeat of what can match empty: {body}")
            if unbounded and body_first & follow:
                shown = sorted(body_first & follow)[:4]
                out.append(f"an unbounded repeat of {body} can stop or go on at {shown}: the two overlap")
            _problems(body, follow | body_first if high > 1 else follow, flags, in_unbounded or unbounded, out)
        elif op == sre.SUBPATTERN:
            _problems(av[-1], follow, flags, in_unbounded, out)
        elif op == sre.BRANCH:
            firsts = [_first(alternative, flags)[0] for alternative in av[1]]
            if in_unbounded and any(a & b for a, b in itertools.combinations(firsts, 2)):
                out.append(f"alternatives inside an unbounded repeat start alike: {av[1]}")
            for alternative in av[1]:
                _problems(alternative, follow, flags, in_unbounded, out)
    return out


def _parsed(pattern: re.Pattern):
    return sre_parse.parse(pattern.pattern, pattern.flags)


def _unbounded_repeats(items) -> int:
    count = 0
    for op, av in items:
        if op in _REPEATS:
            count += (av[1] == sre.MAXREPEAT) + _unbounded_repeats(av[2])
        elif op == sre.SUBPATTERN:
            count += _unbounded_repeats(av[-1])
        elif op == sre.BRANCH:
            count += sum(_unbounded_repeats(alternative) for alternative in av[1])
    return count


_PATTERNS = sorted(name for name, value in vars(bif_scanning).items() if isinstance(value, re.Pattern))


def test_the_check_finds_the_backtracking_it_is_for():
    """Guard (passes before and after): the check itself flags the old header pattern (cubic), the old comment
    pattern's lazy ``.*?\\*/`` and nested or ambiguous repeats, and passes simple linear patterns."""
    def flagged(source, flags=0):
        pattern = re.compile(source, flags)
        return _problems(_parsed(pattern), frozenset(), pattern.flags, False, [])

    assert flagged(r"\(\s*([^|)]+?)\s*(?:\|\s*([^)]*?))?\s*\)\s*$", re.S)
    assert flagged(r'("(?:[^"\\\n]|\\.)*")|//[^\n]*|/\*.*?\*/', re.S)
    assert flagged(r"(a+)+b") and flagged(r"(?:\wb|\db)*x") and flagged(r"(?:a?)*")
    assert not flagged(r"\(([^|)]+)(?:\|([^)]*))?\)") and not flagged(r"[^{]*\{") and not flagged(r"\s*x")


@pytest.mark.parametrize("name", _PATTERNS)
def test_no_pattern_can_backtrack_more_than_linearly(name):
    """Before, _PROB (cubic: three adjacent repeats that all match spaces) and _COMMENT (a lazy ``.*?`` before
    ``*/``) failed this; for _TOKEN, _TYPE and _UNREADABLE (unchanged) it is a guard."""
    pattern = getattr(bif_scanning, name)
    assert _problems(_parsed(pattern), frozenset(), pattern.flags, False, []) == []


@pytest.mark.parametrize("name", ["_HEAD", "_COMMENT_OPEN", "_BLOCK_END"])
def test_the_patterns_searched_through_a_whole_file_hold_no_unbounded_repeat(name):
    """A search tries every start; an unbounded repeat in the pattern could run to the end of the file from each
    (before, _HEAD's ``[^{]*`` did from every keyword when no ``{`` followed: 5 s at 100 kB)."""
    assert _unbounded_repeats(_parsed(getattr(bif_scanning, name))) == 0


class _Counting:
    """A pattern that counts the characters its searches and matches run over (to their match's end, or to
    the end of the text when a search fails)."""

    def __init__(self, pattern: re.Pattern):
        self.pattern, self.scanned = pattern, 0

    def search(self, text, pos=0):
        found = self.pattern.search(text, pos)
        self.scanned += (found.end() if found else len(text)) - pos
        return found

    def match(self, text, pos=0):
        found = self.pattern.match(text, pos)
        assert found is not None  # the patterns counted by match() match empty
        self.scanned += found.end() - pos
        return found


_GOOD = "variable A { type discrete [ 2 ] { yes, no }; }\nprobability ( A ) { table 0.5, 0.5; }\n"
_N = 100_000
_ADVERSARIAL = {
    "keywords_without_a_brace": (_GOOD + "variable " * (_N // 9), None),
    "header_of_spaces_without_a_paren": (_GOOD + "probability ( A" + " " * _N + "A {}", "cannot parse"),
    "header_of_bars": (_GOOD + "probability ( A |" + " |" * (_N // 2) + " {}", "cannot parse"),
    "header_of_parens": (_GOOD + "probability " + "(" * _N + " {}", "cannot parse"),
    "unterminated_block_comments": (_GOOD + "/*" * (_N // 2), None),
    "unterminated_block_comments_spaced": (_GOOD + "/* " * (_N // 3), None),
    "unterminated_strings_of_escapes": (_GOOD + '"\\' * (_N // 2), None),
    "unterminated_strings_with_line_comments": (_GOOD + '"a // b\\"' * (_N // 9), None),
    "unterminated_strings_and_comments": (_GOOD + '"/*\\"' * (_N // 5), None),
}


@pytest.mark.parametrize("name", sorted(_ADVERSARIAL))
def test_adversarial_100_kb_files_are_read_scanning_each_character_a_bounded_number_of_times(tmp_path, monkeypatch,
                                                                                              name):
    """The crafted 100 kB files of the audit are read (the garbage after the network's blocks is ignored, as
    before) or refused naming the file, and the whole-file searches run over at most twice the text."""
    counters = {key: _Counting(getattr(bif_scanning, key))
                for key in ("_HEAD", "_COMMENT_OPEN", "_STRING_BODY", "_BLOCK_END")}
    for key, counter in counters.items():
        monkeypatch.setattr(bif_scanning, key, counter)
    text, error = _ADVERSARIAL[name]
    path = tmp_path / "x.bif"
    path.write_text(text)
    if error is None:
        assert read_bif(path).nodes == ["A"]
    else:
        with pytest.raises(ModelSpecError, match=rf"^{re.escape(repr(str(path)))}: {error} 'probability .*\.\.\. "
                                                 rf"\(\d+ characters\)$") as caught:
            read_bif(path)
        assert len(str(caught.value)) < 200 + len(str(path))
    for key, counter in counters.items():
        assert counter.scanned <= 2 * len(text), (key, counter.scanned, len(text))


#: the comment-and-string pattern read_bif used before, on which the scanner's behaviour is specified
_OLD_COMMENT = re.compile(r'("(?:[^"\\\n]|\\.)*")|//[^\n]*|/\*.*?\*/', re.S)


def test_comments_and_strings_are_removed_and_kept_exactly_as_before():
    """Every text of up to 7 characters from ``"``, ``\\``, newline, ``/``, ``*`` and ``a`` (335,923 of them):
    comments removed, strings kept, and an unterminated string or ``/*`` kept as text with the scan going on
    after its first character, as the old pattern did (which is linear on texts this short)."""
    for length in range(8):
        for chars in itertools.product('"\\\n/*a', repeat=length):
            text = "".join(chars)
            assert bif_scanning._strip_comments(text) == _OLD_COMMENT.sub(lambda m: m.group(1) or "", text), repr(text)


@pytest.mark.parametrize("text, expected", [
    ('a "x // y" b // c\nd', 'a "x // y" b \nd'),
    ('a /* b */ c /* d', "a  c /* d"),
    ('"open // comment\nnext', '"open \nnext'),
    ('"escaped \\" quote" /* x */', '"escaped \\" quote" '),
    ('"line \\\ncontinued" // x', '"line \\\ncontinued" '),
    ('/* "unterminated */ "x"', ' "x"'),
])
def test_comments_are_removed_around_strings(text, expected):
    """The cases the exhaustive test above covers only in part, spelled out (as the old pattern gave them)."""
    assert bif_scanning._strip_comments(text) == expected


def test_an_unterminated_block_comment_is_read_as_text_as_before(tmp_path):
    """Guard (passes before and after): a ``/*`` that nothing closes is no comment, so the blocks after it are
    read."""
    path = tmp_path / "open.bif"
    path.write_text(_GOOD + "/* unterminated\nvariable B { type discrete [ 2 ] { y, n }; }\n"
                    "probability ( B | A ) { (yes) 0.1, 0.9; (no) 0.5, 0.5; }\n")
    assert read_bif(path).nodes == ["A", "B"]


@pytest.mark.parametrize("length", range(7))
def test_a_probability_header_is_split_exactly_as_before(length):
    """Guard (passes before and after): every stripped header of ``length`` characters from ``( ) | , a``, space
    and newline gives the same child and parents (or the same refusal) as the old, cubic pattern."""
    old = re.compile(r"\(\s*([^|)]+?)\s*(?:\|\s*([^)]*?))?\s*\)\s*$", re.S)

    def split(m):
        return None if m is None else (m.group(1).strip(), [x.strip() for x in (m.group(2) or "").split(",")])

    for chars in itertools.product("()|,a \n", repeat=length):
        head = "".join(chars).strip()
        assert split(bif_scanning._PROB.fullmatch(head)) == split(old.match(head)), repr(head)


def _scanner_calls(path) -> int:
    """The calls :func:`read_bif` makes into and from the scanner's functions (bif_scanning.py), counted by
    cProfile: a generator's every resumption counts, and every call its code makes (``len``, ``dict.get``,
    ``re.Pattern.match``, ``str.split`` ...); ``float``, a type, is not counted."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    read_bif(path)
    profile.disable()
    ours, calls = bif_scanning.__file__, 0
    for (file, _, _), (_, primitive_and_recursive, _, _, callers) in pstats.Stats(profile).stats.items():
        calls += primitive_and_recursive if file == ours else 0  # calls into the scanner
        calls += sum(counts[1] for caller, counts in callers.items() if caller[0] == ours)  # calls it makes
    return calls


def _wide_entries_file(path, k: int, spaces: int):
    """A network ``B | A``: ``A`` with 4 states, ``B`` with ``k``, one entry of ``k`` numbers per state of ``A``
    and ``spaces`` spaces after each number."""
    gap = "," + " " * spaces
    states = ", ".join(f"b{i}" for i in range(k))
    row = gap.join([repr(1 / k)] * k)
    entries = "\n".join(f"  (a{j}) {row};" for j in range(4))
    path.write_text(f"network n {{ }}\nvariable A {{ type discrete [ 4 ] {{ a0, a1, a2, a3 }}; }}\n"
                    f"variable B {{ type discrete [ {k} ] {{ {states} }}; }}\n"
                    f"probability ( A ) {{ table 0.25, 0.25, 0.25, 0.25; }}\n"
                    f"probability ( B | A ) {{\n{entries}\n}}\n")
    return path


def test_the_scanners_calls_do_not_grow_with_the_numbers_or_characters_of_a_statement(tmp_path):
    """Found by a speed audit (pgmpy's diabetes, 5.5 MB of text: 2.2 s): _blocks matched a block's braces one
    character at a time (two calls a character), and _statements tokenised a body one regular-expression match at
    a time (four calls a token).  Counted, not timed: the same four entries with 3 or 3000 numbers each, 1 or 20
    spaces after each number, make the same number of scanner calls (before: 1,230 against 1,240,168)."""
    small = _scanner_calls(_wide_entries_file(tmp_path / "small.bif", 3, 1))
    large_path = _wide_entries_file(tmp_path / "large.bif", 3000, 20)
    assert large_path.stat().st_size > 250_000
    assert _scanner_calls(large_path) == small
    table = read_bif(large_path).cpds["B"].probs
    torch.testing.assert_close(table, torch.full((4, 3000), 1 / 3000, dtype=torch.float64), rtol=1e-14, atol=0)


def test_str_split_whitespace_is_the_patterns_whitespace():
    """Guard (passes before and after): _words splits numbers with ``str.split`` where the token pattern splits
    with ``\\s``; they agree on every code point."""
    every = "".join(chr(i) for i in range(0x110000) if not 0xD800 <= i <= 0xDFFF)
    assert re.findall(r"\s", every) == [c for c in every if c.isspace()]


def _reference_statements(body: str, where: str):
    """The token-by-token parse read_bif used before (one match a token), on which _statements is specified."""
    tokens, pos, body = [], 0, body.rstrip()
    while pos < len(body):
        m = re.compile(r"\s*(?:([(),;|])|([^\s(),;|]+))").match(body, pos)
        tokens.append(m.group(1) or m.group(2))
        pos = m.end()
    i, n = 0, len(tokens)

    def until_semicolon(j):
        out = []
        while j < n and tokens[j] != ";":
            out += [tokens[j]] if tokens[j] != "," else []
            j += 1
        if j == n:
            raise ModelSpecError(f"{where}: a statement lacks its closing ';' after {' '.join(out)[:60]!r}")
        return out, j + 1

    def floats(words):
        try:
            return [float(t) for t in words]
        except ValueError as e:
            raise ModelSpecError(f"{where}: cannot parse numbers in {' '.join(words)[:60]!r}") from e

    while i < n:
        head = tokens[i]
        if head == "(":
            j, states = i + 1, []
            while j < n and tokens[j] != ")":
                if tokens[j] in (";", "(", "|"):
                    raise ModelSpecError(f"{where}: unexpected {tokens[j]!r} in the parent states of an entry")
                states += [tokens[j]] if tokens[j] != "," else []
                j += 1
            if j == n:
                raise ModelSpecError(f"{where}: an entry {'( ' + ' '.join(states)!r} lacks its ')'")
            words, i = until_semicolon(j + 1)
            yield "entry", states, floats(words)
        elif head in ("table", "default"):
            words, i = until_semicolon(i + 1)
            yield head, [], floats(words)
        elif head == "property":
            _, i = until_semicolon(i + 1)
        elif head == ";":
            i += 1
        else:
            raise ModelSpecError(f"{where}: expected 'table', 'default', '(' or 'property', found {head!r}")


def _outcome(statements, body):
    try:
        return "read", repr(list(statements(body, "'f.bif': 'b'")))
    except ModelSpecError as e:
        return "refused", str(e)


@pytest.mark.parametrize("length", range(5))
def test_every_short_body_is_read_or_refused_as_token_by_token(length):
    """Guard (passes before and after): every body of ``length`` items from the punctuation, spaces (a Unicode
    one too), keywords, numbers and words gives the same statements, or the same message, as the token-by-token
    reference."""
    items = ["(", ")", ",", ";", "|", " ", "\n\u2003", "table", "default", "property", "0.5", "1e-3", "x", "nan"]
    for chosen in itertools.product(items, repeat=length):
        body = "".join(chosen)
        assert _outcome(bif_scanning._statements, body) == _outcome(_reference_statements, body), repr(body)
