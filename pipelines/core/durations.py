"""Durations as users write them on the command line ("90s", "30m", "2h", "1h30m") and as olymp prints them."""

from __future__ import annotations

import re

from pipelines.core.errors import ConfigError

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$", re.IGNORECASE)


def parse_duration(text: str, option: str = "--time-budget") -> float:
    """'90s', '30m', '2h', '1h30m' -> seconds; anything else is refused naming `option`."""
    match = _DURATION.match(text or "")
    if not text or not str(text).strip() or match is None or not any(match.groups()):
        raise ConfigError(f"{option} {text!r} is not a duration; write e.g. 90s, 30m, 2h or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ConfigError(f"{option} {text!r} is zero; give a positive duration such as 30m")
    return total


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
