"""Path globs for `touches` and reservations: check one, match a path, and tell whether two can meet.

The syntax is gitignore's, anchored at the workspace root:

    *       any characters within one path segment        src/*.py
    ?       one character within a segment                 v?.txt
    [abc]   one of these ([!abc]: none of these)           file[0-9].md
    **      as a whole segment: any number of segments     src/**/test_*.py, **/*.lock
    dir/    a trailing slash: everything under dir          docs/  ==  docs/**

A glob also covers everything under a directory it names: `src/auth` covers
`src/auth/login.py` (a task that touches a directory touches its files).
Unlike gitignore, a glob without a slash is not matched at every depth:
`*.py` names the top level only; write `**/*.py` for every depth.

`overlap(a, b)` is exact: it says yes only if some path is covered by both
(an intersection of the two patterns' automata, segment by segment), so two
tasks wait for each other only when they really could write one file.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Sequence

from .errors import InvalidInput

#: A glob's longest accepted form (bytes of text).
MAX_GLOB = 1024
_MAGIC = re.compile(r"[*?\[]")


def check(value: object) -> str:
    """A glob in its normal form (trailing `/` becomes `/**`), or InvalidInput saying what is wrong."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"invalid path glob {value!r}: a non-empty pattern relative to the workspace root")
    if len(value) > MAX_GLOB or any(c in value for c in "\x00\n\r\\"):
        raise InvalidInput(f"invalid path glob {value!r}: too long, or a control character or backslash in it")
    if value.startswith(("/", "~", "!")):
        raise InvalidInput(f"invalid path glob {value!r}: give it relative to the workspace root "
                           "(no leading '/', '~' or '!')")
    glob = value[:-1] + "/**" if value.endswith("/") else value
    segments = glob.split("/")
    for seg in segments:
        if seg in ("", ".", ".."):
            raise InvalidInput(f"invalid path glob {value!r}: empty, '.' or '..' segment "
                               "(globs name paths inside the workspace, e.g. src/auth/**)")
        if "**" in seg and seg != "**":
            raise InvalidInput(f"invalid path glob {value!r}: '**' must be a whole segment (src/**/x.py), "
                               "use '*' within a segment")
        _tokens(seg)  # refuses an unclosed '['
    return "/".join(_squash(segments))


def check_all(values: Iterable[object]) -> list[str]:
    """Each glob checked, duplicates dropped, order kept."""
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(check(v), None)
    return list(seen)


def is_literal(glob: str) -> bool:
    """No wildcard in it: it names one path (and what lies under it)."""
    return not _MAGIC.search(glob)


def base_dir(glob: str) -> str:
    """The longest directory every path the glob covers lies in ("" for the root): where a walk starts."""
    segments = glob.split("/")
    fixed: list[str] = []
    for seg in segments[:-1]:
        if _MAGIC.search(seg):
            break
        fixed.append(seg)
    else:
        if is_literal(segments[-1]):  # a literal path: it may be a directory, walk from its parent
            return "/".join(segments[:-1])
    return "/".join(fixed)


def matches(glob: str, path: str) -> bool:
    """Whether the glob covers this path (relative, '/'-separated): the path or one of its parents matches."""
    return _regex(glob).match(path) is not None


def matching(globs: Sequence[str], path: str) -> bool:
    return any(matches(g, path) for g in globs)


def overlap(a: str, b: str) -> bool:
    """Whether some path is covered by both globs."""
    return _overlap(tuple(a.split("/")) + ("**",), tuple(b.split("/")) + ("**",))


def overlapping(mine: Sequence[str], theirs: Sequence[str]) -> list[tuple[str, str]]:
    """The pairs (my glob, their glob) that can meet."""
    return [(m, t) for m in mine for t in theirs if overlap(m, t)]


# ----- the automata --------------------------------------------------------------------------
def _squash(segments: list[str]) -> list[str]:
    """`**/**` is `**`."""
    out: list[str] = []
    for seg in segments:
        if not (seg == "**" and out and out[-1] == "**"):
            out.append(seg)
    return out


@lru_cache(maxsize=4096)
def _tokens(seg: str) -> tuple[tuple[str, object], ...]:
    """A segment as tokens: ("c", char), ("?", None), ("*", None), ("[", (negated, frozenset or ranges))."""
    out: list[tuple[str, object]] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            if not (out and out[-1][0] == "*"):
                out.append(("*", None))
            i += 1
        elif c == "?":
            out.append(("?", None))
            i += 1
        elif c == "[":
            end, cls = _char_class(seg, i)
            out.append(("[", cls))
            i = end
        else:
            out.append(("c", c))
            i += 1
    return tuple(out)


def _char_class(seg: str, start: int) -> tuple[int, tuple[bool, tuple[tuple[str, str], ...]]]:
    """Parse `[...]` at `start`: (index after it, (negated, ranges))."""
    i = start + 1
    negated = i < len(seg) and seg[i] in "!^"
    i += negated
    ranges: list[tuple[str, str]] = []
    first = True
    while i < len(seg) and (seg[i] != "]" or first):
        lo = seg[i]
        if i + 2 < len(seg) and seg[i + 1] == "-" and seg[i + 2] != "]":
            ranges.append((lo, seg[i + 2]))
            i += 3
        else:
            ranges.append((lo, lo))
            i += 1
        first = False
    if i >= len(seg):
        raise InvalidInput(f"invalid path glob segment {seg!r}: '[' without its ']'")
    return i + 1, (negated, tuple(ranges))


def _in_class(c: str, cls: object) -> bool:
    negated, ranges = cls  # type: ignore[misc]
    inside = any(lo <= c <= hi for lo, hi in ranges)
    return inside != negated


def _witnesses(cls: object) -> list[str]:
    """A few characters that may satisfy a class: enough to decide whether two classes share one."""
    negated, ranges = cls  # type: ignore[misc]
    chars = {c for lo, hi in ranges for c in (lo, hi, chr(ord(lo) + 1) if lo < hi else lo)}
    if negated:
        chars |= {chr(ord(hi) + 1) for _, hi in ranges} | {chr(ord(lo) - 1) for lo, _ in ranges if lo > "\x01"}
        chars.add("a")
    return [c for c in chars if c != "/" and _in_class(c, cls)]


def _chars_meet(x: tuple[str, object], y: tuple[str, object]) -> bool:
    """Whether one character (never '/') satisfies both single-character tokens ('*' acts as '?')."""
    kx, ky = x[0], y[0]
    if kx == "c" or ky == "c":
        lit, other = (x, y) if kx == "c" else (y, x)
        c = str(lit[1])
        if other[0] == "c":
            return other[1] == c
        return other[0] in "?*" or _in_class(c, other[1])
    if kx in "?*" and ky in "?*":
        return True
    if kx in "?*" or ky in "?*":
        cls = y[1] if kx in "?*" else x[1]
        return bool(_witnesses(cls))
    # two classes: the intersection of two sets of ranges is non-empty when a boundary of one lies in both
    return any(_in_class(c, y[1]) for c in _witnesses(x[1])) or any(_in_class(c, x[1]) for c in _witnesses(y[1]))


@lru_cache(maxsize=4096)
def _segments_meet(a: str, b: str) -> bool:
    """Whether some segment matches both segment patterns (their product automaton, searched depth first).

    Reaching both ends having read nothing means both are all stars: any one character then does."""
    x, y = _tokens(a), _tokens(b)
    seen = {(0, 0)}
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if i == len(x) and j == len(y):
            return True
        moves = []
        if i < len(x) and x[i][0] == "*":
            moves.append((i + 1, j))
        if j < len(y) and y[j][0] == "*":
            moves.append((i, j + 1))
        if i < len(x) and j < len(y) and _chars_meet(x[i], y[j]):
            moves.append((i if x[i][0] == "*" else i + 1, j if y[j][0] == "*" else j + 1))
        for m in moves:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return False


@lru_cache(maxsize=4096)
def _overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Whether some path matches both segment lists ('**' = any number of segments)."""
    if not a and not b:
        return True
    if a and a[0] == "**":
        if _overlap(a[1:], b) or (b and b[0] != "**" and _overlap(a, b[1:])):
            return True
        return bool(b) and b[0] == "**" and _overlap(a, b[1:])
    if b and b[0] == "**":
        return _overlap(b, a)
    if not a or not b:
        return False
    return _segments_meet(a[0], b[0]) and _overlap(a[1:], b[1:])


@lru_cache(maxsize=1024)
def _regex(glob: str) -> re.Pattern[str]:
    parts: list[str] = []
    segments = glob.split("/")
    for k, seg in enumerate(segments):
        last = k == len(segments) - 1
        if seg == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(seg) + ("" if last else "/"))
    return re.compile("(?:" + "".join(parts) + ")(?:/.*)?\\Z", re.DOTALL)


def _segment_regex(seg: str) -> str:
    out = []
    for kind, val in _tokens(seg):
        if kind == "*":
            out.append("[^/]*")
        elif kind == "?":
            out.append("[^/]")
        elif kind == "[":
            negated, ranges = val  # type: ignore[misc]
            body = "".join(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}" for lo, hi in ranges)
            out.append(f"(?![/])[{'^' if negated else ''}{body}]")
        else:
            out.append(re.escape(str(val)))
    return "".join(out)
