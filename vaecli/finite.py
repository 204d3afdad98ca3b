"""The one rule for a number the host may log, compare or write as JSON: a finite real (an int
or a float, numpy's included, never a bool). NaN and ±Inf are not JSON and compare with nothing."""
from __future__ import annotations

import math
import numbers


def number(value) -> float | None:
    """`value` as a float if it is a finite real number, else None."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
