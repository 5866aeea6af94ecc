"""Path globs: the syntax, matching, and `overlap` checked against every path of a small universe."""
from __future__ import annotations

import itertools

import pytest

from mavps import globs
from mavps.errors import InvalidInput


@pytest.mark.parametrize("glob,path,expected", [
    ("src/auth/**", "src/auth/login.py", True),
    ("src/auth/**", "src/authx/login.py", False),
    ("src/auth", "src/auth/login.py", True),  # a directory covers what is under it
    ("src/auth", "src/auth", True),
    ("src/auth", "src/authz", False),
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/a/b.py", False),  # '*' stays within a segment
    ("*.py", "a.py", True),
    ("*.py", "src/a.py", False),  # anchored at the root, unlike gitignore
    ("**/*.py", "src/a/b.py", True),
    ("**/*.py", "b.py", True),
    ("src/**/test_*.py", "src/test_a.py", True),
    ("src/**/test_*.py", "src/x/y/test_a.py", True),
    ("src/**/test_*.py", "src/x/y/a_test.py", False),
    ("v?.txt", "v1.txt", True),
    ("v?.txt", "v12.txt", False),
    ("file[0-9].md", "file7.md", True),
    ("file[!0-9].md", "file7.md", False),
    ("file[!0-9].md", "filex.md", True),
    ("docs/", "docs/a/b.md", True),
    ("a.b", "aXb", False),  # '.' is a literal
])
def test_matches(glob: str, path: str, expected: bool) -> None:
    assert globs.matches(globs.check(glob), path) is expected


@pytest.mark.parametrize("bad", ["", "  ", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "~/x", "!a", "a/**b",
                                 "a\\b", "a[bc", "a\x00", "x" * 2000])
def test_bad_globs_are_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(InvalidInput) as err:
        globs.check(bad)
    assert "glob" in str(err.value)


def test_normal_form() -> None:
    assert globs.check("docs/") == "docs/**"
    assert globs.check("a/**/**/b") == "a/**/b"
    assert globs.check_all(["a", "b", "a"]) == ["a", "b"]


@pytest.mark.parametrize("glob,base", [
    ("src/auth/**", "src/auth"), ("src/*.py", "src"), ("**/*.py", ""), ("src/auth/login.py", "src/auth"),
    ("src", ""), ("a/b*/c", "a"),
])
def test_base_dir_is_where_a_walk_starts(glob: str, base: str) -> None:
    assert globs.base_dir(glob) == base


# ----- overlap against brute force ---------------------------------------------------------------
#: Names holding a witness for every pair of SEGMENTS that can meet ("ba" for "b*a" and "??", "x1" for "x[0-9]").
NAMES = ["a", "b", "ab", "ba", "a.py", "b.py", "x1", "aa"]
SEGMENTS = ["a", "b", "*", "a*", "*a", "*.py", "?", "??", "[ab]", "[!a]*", "**", "x[0-9]", "b*a", "*b*"]


def test_overlap_agrees_with_every_path_of_a_universe() -> None:
    """For every pair of globs of up to two segments: overlap(a, b) is true exactly when some path is covered by
    both, among all paths of up to four NAMES (two globs of two segments meet, if at all, within four).

    A `False` that should be `True` would let two tasks write one file at once; a `True` that should be `False`
    would make a task wait for nothing. Both show here."""
    universe = ["/".join(p) for n in (1, 2, 3, 4) for p in itertools.product(NAMES, repeat=n)]
    all_globs = sorted({globs.check("/".join(p)) for n in (1, 2) for p in itertools.product(SEGMENTS, repeat=n)})
    covered = {g: sum(1 << i for i, path in enumerate(universe) if globs.matches(g, path)) for g in all_globs}
    wrong = [(a, b) for a in all_globs for b in all_globs if globs.overlap(a, b) is not bool(covered[a] & covered[b])]
    assert len(all_globs) > 150
    assert wrong == []


@pytest.mark.parametrize("a,b,expected", [
    ("src/auth/**", "src/auth/login.py", True),
    ("src/auth/**", "src/models/**", False),
    ("src/*.py", "src/**/x.py", True),
    ("src/a*b.py", "src/a*c.py", False),
    ("*.py", "test_*", True),
    ("[a-m]*", "[k-z]*", True),
    ("[a-c]x", "[!a-c]x", False),
    ("src", "src/deep/file.txt", True),
    ("**", "anything/at/all", True),
])
def test_overlap_examples(a: str, b: str, expected: bool) -> None:
    assert globs.overlap(globs.check(a), globs.check(b)) is expected
    assert globs.overlapping([a], [b]) == ([(a, b)] if expected else [])
