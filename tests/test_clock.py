"""Durations as users write them."""
from __future__ import annotations

import pytest

from vaecli import clock

# ------------------------------------------------------------------------ durations


def test_durations():
    assert clock.parse_duration("9m30s") == 570 and clock.parse_duration("2h") == 7200
    assert clock.parse_duration("1h30m") == 5400 and clock.parse_duration("90s") == 90
    assert clock.parse_duration("90") == 90 and clock.parse_duration("0.5s") == 0.5
    for bad in ("", "5x", "m", "1h-3m", "s9"):
        with pytest.raises(ValueError):
            clock.parse_duration(bad)
