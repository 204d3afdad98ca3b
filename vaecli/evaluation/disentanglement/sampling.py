"""What every disentanglement metric checks and draws: codes (N, D) and factor indices (N, F)
as arrays, factor rows drawn uniformly, and `represent` called over them in chunks.

`represent(factors, rng) -> codes` draws observations with the given factor rows (n, F) of
indices and encodes them (for a run: vaecli.evaluation.disentanglement.run). No JAX here.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vaecli.errors import UsageError

CHUNK_ROWS = 16384  # rows per represent() call: large batches for an encoder, bounded memory

Represent = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def check_codes(codes, what: str = "codes") -> np.ndarray:
    c = np.asarray(codes, np.float32)
    if c.ndim != 2 or c.shape[0] < 2:
        raise UsageError(f"{what} must be an array (N, D) with N >= 2, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise UsageError(f"{what} contain NaN or infinity")
    return c


def check_factors(factors, n: int, what: str = "factors") -> np.ndarray:
    f = np.asarray(factors)
    if f.ndim != 2 or f.shape[0] != n or not np.issubdtype(f.dtype, np.integer) or (f < 0).any():
        raise UsageError(f"{what} must be non-negative integer indices (N, F) with N = {n} as the "
                         f"codes, got {f.dtype} {f.shape}")
    return f.astype(np.int32)


def check_pair(codes_train, factors_train, codes_test, factors_test):
    """Train and test samples, checked and agreeing in their numbers of codes and factors."""
    ctr, cte = check_codes(codes_train, "codes_train"), check_codes(codes_test, "codes_test")
    ftr = check_factors(factors_train, len(ctr), "factors_train")
    fte = check_factors(factors_test, len(cte), "factors_test")
    if ctr.shape[1] != cte.shape[1] or ftr.shape[1] != fte.shape[1]:
        raise UsageError("train and test must have the same number of codes and of factors")
    return ctr, ftr, cte, fte


def check_sizes(factor_sizes) -> tuple:
    sizes = tuple(int(s) for s in factor_sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise UsageError(f"factor_sizes must list at least two factors of one or more values, got {sizes}")
    return sizes


def sample_factors(factor_sizes, shape, rng: np.random.Generator) -> np.ndarray:
    """Factor rows drawn uniformly and independently: an int64 array `shape + (F,)`."""
    sizes = np.asarray(factor_sizes, np.int64)
    return rng.integers(0, sizes, size=tuple(np.atleast_1d(shape)) + (len(sizes),))


def encode(represent: Represent, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """represent() over factor rows of any leading shape (..., F), CHUNK_ROWS rows a call."""
    flat = factors.reshape(-1, factors.shape[-1])
    parts = [np.asarray(represent(flat[i:i + CHUNK_ROWS], rng), np.float32) for i in range(0, len(flat), CHUNK_ROWS)]
    codes = np.concatenate(parts)
    if codes.ndim != 2 or len(codes) != len(flat):
        raise UsageError(f"represent must return codes (n, D) for n factor rows, got {codes.shape} for {len(flat)}")
    return codes.reshape(factors.shape[:-1] + codes.shape[1:])


def sample_codes(represent: Represent, factor_sizes, n: int, rng: np.random.Generator):
    """(codes (n, D), factors (n, F)) for n factor rows drawn uniformly."""
    factors = sample_factors(factor_sizes, n, rng)
    return encode(represent, factors, rng), factors
