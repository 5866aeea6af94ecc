"""Fault injection against the real sshd: run with `pytest -m faults` (skip with `-m "not faults"`)."""
