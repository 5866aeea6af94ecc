"""Task instruction templates: `mavps task add --template NAME` fills one in.

    render_task_template("task-instructions", {"description": "Create the User model",
                                               "context_files": ["docs/schema.md"]})

A template is a Markdown file with `{field}` placeholders. Built-in ones live
in the package (`mavps/templates/NAME.md`); NAME may also be a path to a file
of your own. Only `{word}` placeholders are replaced, so other braces (code,
JSON examples) are left alone. A list value becomes a bullet list (numbered for steps, check
boxes for acceptance criteria); a field not
given is left as a visible `(to be filled in: field)` line, except
`objective`, which defaults to the description.
"""
from __future__ import annotations

import os
import re
from importlib import resources
from typing import Any, Mapping

from .errors import InvalidInput, NotFound

DEFAULT_TEMPLATE = "task-instructions"
FIELDS = ("description", "objective", "requirements", "context_files", "steps", "acceptance_criteria")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def list_templates() -> list[str]:
    """Names of the built-in templates."""
    folder = resources.files("mavps") / "templates"
    return sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".md"))


def load_template(name: str) -> str:
    """A built-in template by name ('default' = task-instructions), or a file by path."""
    name = DEFAULT_TEMPLATE if name in ("", "default") else name
    if os.sep in name or name.endswith(".md") and os.path.isfile(name):
        try:
            with open(name, encoding="utf-8") as fh:
                return fh.read()
        except OSError as exc:
            raise NotFound(f"cannot read template {name}: {exc.strerror}") from None
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise InvalidInput(f"invalid template name {name!r}")
    entry = resources.files("mavps") / "templates" / f"{name}.md"
    if not entry.is_file():
        raise NotFound(f"no template {name!r}: built-in ones are {', '.join(list_templates())}, "
                       "or give a path to a .md file")
    return entry.read_text(encoding="utf-8")


def _format(value: Any, key: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        if not value:
            return "- (none)"
        if key == "steps":
            return "\n".join(f"{i}. {v}" for i, v in enumerate(value, 1))
        if key == "acceptance_criteria":
            return "\n".join(f"- [ ] {v}" for v in value)
        return "\n".join(f"- {v}" for v in value)
    return str(value).strip()


def render_task_template(name: str, fields: Mapping[str, Any]) -> str:
    """The template's text with its `{field}` placeholders filled in."""
    text = load_template(name)
    values = {k: _format(v, k) for k, v in fields.items() if v is not None and v != ""}
    if "objective" not in values and "description" in values:
        values["objective"] = values["description"]
    values.setdefault("context_files", "- (none)")

    def fill(m: re.Match[str]) -> str:
        key = m.group(1)
        if key in values:
            return values[key]
        return f"(to be filled in: {key})" if key in FIELDS else m.group(0)

    return _PLACEHOLDER.sub(fill, text)
