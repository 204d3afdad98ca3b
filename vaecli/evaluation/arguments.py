"""The evaluation commands' arguments that can be checked without JAX, so that `vae eval-elbo`
and `vae grad-snr` refuse a bad one at once, before JAX is imported (seconds on a busy CPU)."""
from __future__ import annotations

from vaecli.errors import UsageError


def parse_samples(text: str | int | list) -> list[int]:
    """'1,50,5000' -> [1, 50, 5000] (sorted, without repeats); UsageError on anything else."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        ks = sorted({int(str(k).strip()) for k in items})
    except ValueError:
        raise UsageError(f"--samples {text}: expected K or a comma-separated list of K, e.g. 1,50,5000") from None
    if not ks or ks[0] < 1:
        raise UsageError(f"--samples {text}: K must be at least 1 (K=1 is the ELBO, larger K tightens the bound)")
    return ks
