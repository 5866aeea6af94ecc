#!/usr/bin/env python3
"""Claude Code SessionStart hook shim: `mavps hook session-start [--role worker|coordinator]`.

In .claude/settings.json:
  {"type": "command", "command": "\"$CLAUDE_PROJECT_DIR\"/hooks/session_start.py --role worker", "timeout": 60}
"""
import sys

try:
    from mavps.hookcli import session_start
except ImportError as exc:
    sys.stderr.write(f"hooks/session_start.py: cannot import mavps ({exc}); no mavps context for this session\n")
    sys.exit(0)

if __name__ == "__main__":
    session_start(args=sys.argv[1:], prog_name="hooks/session_start.py")
