"""A layered layout of the task graph, pure: longest-path layers, barycenter ordering, wrapped columns.

Dependencies point left to right: a task sits in a column right of every task it depends on (its layer
is one more than its deepest dependency's). Within a layer, a few barycenter sweeps put each task near
the tasks it is linked to, which removes most crossings. A layer taller than `max_rows` wraps into several
adjacent columns, so 300 independent tasks make a wide block, not a 20 000 px strip. Why this and not a
library (grandalf): knowledge/board.md.
"""
from __future__ import annotations

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


def _positions(rows: list[list[int]]) -> dict[int, float]:
    return {n: (i + 0.5) / len(row) for row in rows for i, n in enumerate(row)}


def _sweep(rows: list[list[int]], links: Mapping[int, list[int]], order: range) -> None:
    """Reorder each layer in `order` by the mean position of its nodes' links (kept in place without)."""
    pos = _positions(rows)
    for li in order:
        row = rows[li]
        key = {}
        for i, n in enumerate(row):
            near = [pos[m] for m in links[n]]
            key[n] = (sum(near) / len(near) if near else pos[n], i)
        row.sort(key=key.__getitem__)
        pos.update({n: (i + 0.5) / len(row) for i, n in enumerate(row)})


def order(layer: Mapping[int, int], deps: Mapping[int, Iterable[int]]) -> list[list[int]]:
    """Nodes by layer, each layer ordered to keep linked nodes close (barycenter heuristic)."""
    depth = max(layer.values(), default=-1) + 1
    rows: list[list[int]] = [[] for _ in range(depth)]
    for n in sorted(layer):
        rows[layer[n]].append(n)
    preds = {n: [d for d in deps.get(n, ()) if d in layer and layer[d] < layer[n]] for n in layer}
    succs: dict[int, list[int]] = {n: [] for n in layer}
    for n, ds in preds.items():
        for d in ds:
            succs[d].append(n)
    for _ in range(SWEEPS):
        _sweep(rows, preds, range(1, depth))
        _sweep(rows, succs, range(depth - 2, -1, -1))
    return rows


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
    """Edge crossings between adjacent layers (for tests and the benchmark: what ordering buys)."""
    where = {n: (li, i) for li, row in enumerate(rows) for i, n in enumerate(row)}
    total = 0
    for li in range(1, len(rows)):
        edges = sorted((where[d][1], where[n][1]) for n in rows[li] for d in deps.get(n, ())
                       if d in where and where[d][0] == li - 1)
        total += sum(1 for a in range(len(edges)) for b in range(a + 1, len(edges))
                     if edges[a][0] < edges[b][0] and edges[a][1] > edges[b][1])
    return total
