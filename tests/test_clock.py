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


def test_formatted_durations_read_back_as_the_same_seconds():
    for seconds in (0.0, 12.3, 59.94, 60, 245, 3599.6, 3723, 90061):
        text = clock.format_duration(seconds)
        assert clock.parse_duration(text) == pytest.approx(seconds if seconds < 60 else round(seconds), abs=0.05), text
    assert clock.format_duration(245) == "4m05s" and clock.format_duration(3723) == "1h02m03s"
    assert clock.format_duration(-3) == "0.0s"
