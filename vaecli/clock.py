"""The clock that time limits are measured with, durations as users write them ("9m30s"), and
the UTC time that names run folders.

What a run decides by the time (a time limit, its budget, a folder's name) reads it here,
through `now()` or `utc_now()`, so a test fixes it by patching this module; a duration that is
only reported (wall_s, compile_s, elapsed_s) is read from time.perf_counter where it is measured.
No JAX here: config validation parses durations with it.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import time

from vaecli.errors import UsageError

_PART = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"(?:{_PART}h)?(?:{_PART}m)?(?:{_PART}s)?")


def parse_duration(text) -> float:
    """'9m30s', '2h', '1h30m', '90s' or '90' (seconds) -> seconds; ValueError otherwise."""
    s = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(_PART, s):
        return float(s)
    m = _DURATION.fullmatch(s)
    if not s or m is None:
        raise ValueError(f"not a duration: {text!r}")
    h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + sec


def parse_duration_option(text, option: str = "--time-limit") -> float:
    """parse_duration for a command-line option: a UsageError naming the option and the fix."""
    try:
        return parse_duration(text)
    except ValueError:
        raise UsageError(f"{option} {text}: not a duration; write e.g. 9m30s, 2h or 90s") from None


def format_duration(seconds: float) -> str:
    """`12.3s`, `4m05s`, `1h02m03s`: how long, for people reading stderr."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"


def is_duration(text) -> bool:
    try:
        return parse_duration(text) >= 0
    except ValueError:
        return False


clock = time.perf_counter  # what time limits are measured with (read through `now`)


def now() -> float:
    return clock()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def process_age() -> float:
    """Seconds since this process started (Linux /proc; 0 elsewhere), so that a time limit
    given to the `vae` command counts its interpreter and JAX start-up too."""
    try:
        with open("/proc/self/stat") as f:
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
