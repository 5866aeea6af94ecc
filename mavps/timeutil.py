"""Timestamps: ISO 8601 UTC with a trailing Z; zone-less ones read as UTC."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def iso(moment: datetime) -> str:
    """Format as `2025-11-09T10:15:00Z` (no microseconds: people read these)."""
    return moment.astimezone(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def parse(text: object) -> datetime | None:
    """Read an ISO timestamp; None for None, empty or unreadable values."""
    if not isinstance(text, str) or not text:
        return None
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def after(moment: datetime, seconds: float) -> datetime:
    return moment + timedelta(seconds=seconds)
