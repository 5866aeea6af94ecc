"""A layered layout of the task graph, pure: longest-path layers, barycenter ordering, wrapped columns.

Dependencies point left to right: a task sits in a column right of every task it depends on (its layer
is one more than its deepest dependency's). Within a layer, a few barycenter sweeps put each task near
the tasks it is linked to (on the benchmark's 300 tasks, half the crossings of id order). A layer taller
than `max_rows` wraps into several adjacent columns, so 300 independent tasks make a wide block, not a
20 000 px strip. Why this and not a
library (grandalf): knowledge/board.md.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Mapping

#: Ordering sweeps (each one forward and one backward): crossings stop falling after a few.
SWEEPS = 4


@dataclass(frozen=True)
class Box:
    """One placed node: its layer, and its rectangle in pixels."""

    layer: int
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Layout:
    boxes: dict[int, Box]
    width: float
    height: float


def layers(ids: Iterable[int], deps: Mapping[int, Iterable[int]]) -> dict[int, int]:
    """Each node's layer: 0 without dependencies, else one more than its deepest dependency's.

    Dependencies on ids not in `ids` are ignored; an edge closing a circle (a hand edit can make one) is
    ignored too, so every node gets a layer.
    """
    nodes = list(dict.fromkeys(ids))
    known = set(nodes)
    preds = {n: [d for d in dict.fromkeys(deps.get(n, ())) if d in known and d != n] for n in nodes}
    layer: dict[int, int] = {}
    on_path: set[int] = set()
    for start in nodes:
        if start in layer:
            continue
        stack = [(start, iter(preds[start]))]
        on_path.add(start)
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                on_path.discard(node)
                layer[node] = 1 + max((layer[d] for d in preds[node] if d in layer), default=-1)
            elif nxt not in layer and nxt not in on_path:
                on_path.add(nxt)
                stack.append((nxt, iter(preds[nxt])))
    return layer


def _sweep(rows: list[list[int]], links: Mapping[int, list[int]], order: range) -> None:
    """Reorder each layer in `order` by the mean position of each node's links in the layer before it
    (a node without links keeps its place)."""
    for li in order:
        row = rows[li]
        pos = {n: i for i, n in enumerate(rows[li - 1 if order.step > 0 else li + 1])}
        key = {}
        for i, n in enumerate(row):
            near = [pos[m] for m in links[n]]
            key[n] = (sum(near) / len(near) if near else i, i)
        row.sort(key=key.__getitem__)


def order(layer: Mapping[int, int], deps: Mapping[int, Iterable[int]]) -> list[list[int]]:
    """Nodes by layer, each layer ordered to cross few edges: barycenter sweeps over the edges that join
    adjacent layers, starting from id order (tasks added together sit together), the best order kept."""
    depth = max(layer.values(), default=-1) + 1
    rows: list[list[int]] = [[] for _ in range(depth)]
    for n in sorted(layer):
        rows[layer[n]].append(n)
    up = {n: [d for d in dict.fromkeys(deps.get(n, ())) if d in layer and layer[d] == layer[n] - 1] for n in layer}
    down: dict[int, list[int]] = {n: [] for n in layer}
    for n, ds in up.items():
        for d in ds:
            down[d].append(n)
    best, fewest = [list(r) for r in rows], _crossings(rows, up)
    for _ in range(SWEEPS):
        _sweep(rows, up, range(1, depth))
        _sweep(rows, down, range(depth - 2, -1, -1))
        now = _crossings(rows, up)
        if now < fewest:
            best, fewest = [list(r) for r in rows], now
    return best


def _crossings(rows: list[list[int]], up: Mapping[int, list[int]]) -> int:
    """Crossings of the links `up` (each joining adjacent layers): inversions, O(E log E)."""
    total = 0
    for li in range(1, len(rows)):
        above = {n: i for i, n in enumerate(rows[li - 1])}
        lows = [above[m] for n in rows[li] for m in sorted(up[n], key=above.__getitem__)]
        seen: list[int] = []
        for x in lows:  # edges in order of their lower end; count those above that start further right
            total += len(seen) - bisect.bisect_right(seen, x)
            bisect.insort(seen, x)
    return total


def layout(ids: Iterable[int], deps: Mapping[int, Iterable[int]], *, node_w: float = 220, node_h: float = 64,
           gap_x: float = 70, gap_y: float = 14, max_rows: int = 24) -> Layout:
    """Place every node: layers left to right, a layer of more than `max_rows` wrapped into columns."""
    layer = layers(ids, deps)
    rows = order(layer, deps)
    columns: list[tuple[int, list[int]]] = []
    for li, row in enumerate(rows):
        for start in range(0, len(row), max_rows):
            columns.append((li, row[start:start + max_rows]))
    tallest = max((len(col) for _, col in columns), default=0)
    height = tallest * (node_h + gap_y) - gap_y if tallest else 0
    boxes = {}
    for ci, (li, col) in enumerate(columns):
        top = (height - (len(col) * (node_h + gap_y) - gap_y)) / 2  # a short column is centred
        for ri, n in enumerate(col):
            boxes[n] = Box(li, ci * (node_w + gap_x), top + ri * (node_h + gap_y), node_w, node_h)
    width = len(columns) * (node_w + gap_x) - gap_x if columns else 0
    return Layout(boxes, width, height)


def crossings(rows: list[list[int]], deps: Mapping[int, Iterable[int]]) -> int:
    """Crossings among the edges that join adjacent layers (for tests and the benchmark: what ordering buys)."""
    where = {n: li for li, row in enumerate(rows) for n in row}
    up = {n: [d for d in deps.get(n, ()) if d in where and where[d] == where[n] - 1] for n in where}
    return _crossings(rows, up)
