#!/usr/bin/env python3
"""Claude Code Stop hook shim: `mavps hook stop` for settings that name a file.

In .claude/settings.json: {"type": "command", "command": "\"$CLAUDE_PROJECT_DIR\"/hooks/stop.py", "timeout": 600}
Needs the mavps package importable by this python (pip install mavps).
"""
import sys

try:
    from mavps.hookcli import stop
except ImportError as exc:  # never block or crash the agent because mavps is missing
    sys.stderr.write(f"hooks/stop.py: cannot import mavps ({exc}); letting the agent stop\n")
    sys.exit(0)

if __name__ == "__main__":
    stop(args=[], prog_name="hooks/stop.py")
