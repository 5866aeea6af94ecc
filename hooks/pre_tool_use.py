#!/usr/bin/env python3
"""Claude Code PreToolUse hook shim: `mavps hook pre-tool-use` (the path guard) for settings that name a file.

In .claude/settings.json, under "PreToolUse" with "matcher": "Edit|Write|MultiEdit|NotebookEdit":
  {"type": "command", "command": "\"$CLAUDE_PROJECT_DIR\"/hooks/pre_tool_use.py", "timeout": 10}
Needs the mavps package importable by this python (pip install mavps).
"""
import sys

try:
    from mavps.hookcli import pre_tool_use
except ImportError as exc:  # never block or crash the agent because mavps is missing
    sys.stderr.write(f"hooks/pre_tool_use.py: cannot import mavps ({exc}); the edit is allowed\n")
    sys.exit(0)

if __name__ == "__main__":
    pre_tool_use(args=[], prog_name="hooks/pre_tool_use.py")
