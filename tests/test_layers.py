"""The import contract: the package's layers point one way, and only the storage layer builds request batches.

README's layout section states the same layers. Imports inside functions count too (a lazy import is
still a dependency). Pure logic, read from the source with `ast`: no import of mavps is needed.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mavps"

#: Lowest first. A module may import from its own layer and the layers below it, never above.
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"errors", "defaults", "timeutil", "validate", "localfile", "codec", "config", "templates"}),
    ("domain (pure rules and records)", {"models", "state", "rules", "globs", "window"}),
    ("transport", {"transport"}),
    ("storage (the only layer that builds batches)", {"lockpaths", "recovery", "lock", "transaction", "store",
                                                      "files", "exchange", "riders"}),
    ("queue, workers, log", {"queue", "workers", "log", "plan", "reservations", "inbox"}),
    ("workspace", {"workspace", "retry", "session"}),
    ("edges: CLI, hooks, rendering", {"render", "hooks", "hook", "hookcli", "cli", "admin", "demo", "trust",
                                      "install", "__init__", "__main__"}),
]
BATCH_BUILDERS = {"transport", "lockpaths", "recovery", "lock", "transaction", "store", "files", "exchange", "riders"}


def top(module: str) -> str:
    """The layer key of a module path relative to the package: 'transport.sftp' -> 'transport'."""
    return module.split(".")[0]


def layer_of(module: str) -> int:
    key = top(module)
    for i, (_name, members) in enumerate(LAYERS):
        if key in members:
            return i
    raise AssertionError(f"mavps.{module} is in no layer: add it to LAYERS (and to README's layout)")


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        name = ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)
        out[name] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """Modules of the package this file imports (relative or absolute, at top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            elif (node.module or "").startswith("mavps"):
                target = (node.module or "")[len("mavps."):] if node.module != "mavps" else "__init__"
            else:
                continue
            for alias in node.names:  # `from . import lock` imports the module lock
                sub = f"{target}.{alias.name}" if target else alias.name
                is_module = (PACKAGE / Path(*sub.split("."))).with_suffix(".py").exists()
                found.add(sub if is_module else target or "__init__")
        elif isinstance(node, ast.Import):
            found |= {a.name[len("mavps."):] for a in node.names if a.name.startswith("mavps.")}
    return {f for f in found if f and f != name}


def test_every_module_is_in_a_layer():
    for name in modules():
        layer_of(name)


def test_imports_point_one_way():
    upward = []
    for name, path in modules().items():
        mine = layer_of(name)
        for dep in imports(name, path):
            if layer_of(dep) > mine:
                upward.append(f"mavps.{name} ({LAYERS[mine][0]}) imports mavps.{dep} ({LAYERS[layer_of(dep)][0]})")
    assert not upward, "imports must point down the layers:\n" + "\n".join(sorted(upward))


def test_only_the_storage_layer_builds_batches():
    builders = sorted(name for name, path in modules().items()
                      if "Batch(" in path.read_text() and top(name) not in BATCH_BUILDERS)
    assert not builders, f"these build request batches themselves; call the store instead: {builders}"


def test_the_checks_can_fail(tmp_path, monkeypatch):
    """A planted upward import is found (the contract is not vacuous)."""
    fake = tmp_path / "mavps"
    (fake / "transport").mkdir(parents=True)
    (fake / "errors.py").write_text("from .queue import Queue\n")
    (fake / "queue.py").write_text("from .errors import MavpsError\nfrom .transport.base import Batch\nBatch()\n")
    (fake / "transport" / "__init__.py").write_text("")
    (fake / "transport" / "base.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    try:
        test_imports_point_one_way()
    except AssertionError as exc:
        assert "mavps.errors (base) imports mavps.queue" in str(exc)
    else:
        raise AssertionError("an upward import went unnoticed")
    try:
        test_only_the_storage_layer_builds_batches()
    except AssertionError as exc:
        assert "queue" in str(exc)
    else:
        raise AssertionError("a batch built outside the storage layer went unnoticed")
