"""Sample-quality metrics of two sets of features (real, generated), each (N, F): the Fréchet
distance (FID), the kernel inception distance (KID) and k-NN precision and recall.

- FID: ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½, in float64 on the host. The trace
  of the matrix square root is taken from the eigenvalues of the symmetric product
  Σ₁^½ Σ₂ Σ₁^½ (`numpy.linalg.eigh`, negative round-off clipped to 0), which has the same
  eigenvalues as Σ₁Σ₂: no complex parts to discard, as scipy.linalg.sqrtm of the
  non-symmetric Σ₁Σ₂ leaves, and no iteration that may not converge.
- KID (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
  k(x, y) = (xᵀy / F + 1)³, over `subsets` random subsets of `subset_size` rows of each set;
  the mean, the standard deviation over subsets and its standard error std/√subsets (the
  subsets overlap, so that error is a rough guide, as in the tools that report it). A subset
  holds at most half of the smaller set, so that subsets differ (KID is unbiased at any size). Each
  subset's kernel matrices are computed in JAX (one compiled program per subset size).
- Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
  around its points, radius the distance to the k-th nearest other point of the same set;
  precision is the share of generated points inside the real manifold, recall the share of
  real points inside the generated one. Distances in row blocks of DISTANCE_ROWS against the
  whole other set, so memory is DISTANCE_ROWS × N floats whatever N (50,000: 50 MB).
"""
from __future__ import annotations

import numpy as np

from vaecli.errors import UsageError

DISTANCE_ROWS = 256
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PR_K = 3


def check_features(real, fake) -> tuple[np.ndarray, np.ndarray]:
    """Two feature arrays (N, F) with the same F, finite, at least two rows each."""
    out = []
    for name, a in (("real features", real), ("sample features", fake)):
        a = np.asarray(a, np.float32)
        if a.ndim != 2 or len(a) < 2:
            raise UsageError(f"{name} must be an array (N, F) with N >= 2, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise UsageError(f"{name} contain NaN or infinity")
        out.append(a)
    if out[0].shape[1] != out[1].shape[1]:
        raise UsageError(f"real and sample features differ in width: {out[0].shape[1]} and {out[1].shape[1]}")
    return out[0], out[1]


def moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) in float64, the covariance with N − 1 as every FID tool has it."""
    f = np.asarray(features, np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, s1, mu2, s2) -> float:
    """The Fréchet distance of two Gaussians N(mu1, s1), N(mu2, s2), in float64."""
    mu1, mu2, s1, s2 = (np.asarray(a, np.float64) for a in (mu1, mu2, s1, s2))
    r = _sqrt_psd(s1)
    product = r @ s2 @ r
    eig = np.linalg.eigvalsh((product + product.T) / 2)
    tr_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def fid(real, fake) -> float:
    real, fake = check_features(real, fake)
    return frechet_distance(*moments(real), *moments(fake))


def _mmd_program():
    import jax
    import jax.numpy as jnp

    from vaecli.compiled import cache

    def mmd(x, y):
        m, d = x.shape
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        off = lambda k: (jnp.sum(k) - jnp.sum(jnp.diag(k))) / (m * (m - 1))  # noqa: E731
        return off(kxx) + off(kyy) - 2.0 * jnp.mean(kxy)

    return cache.get(("kid-mmd",), lambda: jax.jit(mmd))


def kid(real, fake, seed: int = 0, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE) -> dict:
    """{"mean", "std", "stderr", "subsets", "subset_size"}: the unbiased MMD² over subsets
    drawn with numpy's Generator(seed), without replacement within a subset."""
    real, fake = check_features(real, fake)
    # At most half of the smaller set: subsets of every row would all be the same (std 0).
    m = min(subset_size, len(real) // 2, len(fake) // 2)
    if m < 2:
        raise UsageError(f"KID needs at least 4 rows of each set, got {len(real)} and {len(fake)}")
    if subsets < 1:
        raise UsageError(f"KID subsets {subsets}: must be at least 1")
    rng = np.random.default_rng(seed)
    mmd = _mmd_program()
    values = np.empty(subsets, np.float64)
    for s in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        values[s] = float(mmd(x, y))
    std = float(values.std(ddof=1)) if subsets > 1 else 0.0
    return {"mean": float(values.mean()), "std": std, "stderr": std / float(np.sqrt(subsets)), "subsets": subsets,
            "subset_size": m}


def _distance_programs():
    import jax
    import jax.numpy as jnp

    from vaecli.compiled import cache

    def sq(a, b):
        d = jnp.sum(a * a, 1)[:, None] + jnp.sum(b * b, 1)[None, :] - 2.0 * a @ b.T
        return jnp.maximum(d, 0.0)

    def kth(rows, points, k):  # the (k+1)-th smallest squared distance: the row's own 0 is the first
        return -jax.lax.top_k(-sq(rows, points), k + 1)[0][:, k]

    def inside(rows, points, radii2):  # whether each row lies in some point's ball
        return jnp.any(sq(rows, points) <= radii2[None, :], axis=1)

    return cache.get(("pr-distances",), lambda: (jax.jit(kth, static_argnums=2), jax.jit(inside)))


def _blocks(a: np.ndarray):
    """`a` in blocks of DISTANCE_ROWS rows, the last padded (one compiled shape): (block, valid rows)."""
    for i in range(0, len(a), DISTANCE_ROWS):
        block = a[i:i + DISTANCE_ROWS]
        n = len(block)
        if n < DISTANCE_ROWS:
            block = np.concatenate([block, np.zeros((DISTANCE_ROWS - n, a.shape[1]), a.dtype)])
        yield block, n


def knn_radii2(points: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of each point to its k-th nearest other point of the same set."""
    kth, _ = _distance_programs()
    return np.concatenate([np.asarray(kth(b, points, k))[:n] for b, n in _blocks(points)])


def coverage(rows: np.ndarray, points: np.ndarray, radii2: np.ndarray) -> float:
    """The share of `rows` inside the union of the balls around `points` (squared radii `radii2`)."""
    _, inside = _distance_programs()
    hits = sum(int(np.asarray(inside(b, points, radii2))[:n].sum()) for b, n in _blocks(rows))
    return hits / len(rows)


def precision_recall(real, fake, k: int = PR_K) -> dict:
    """{"precision", "recall", "k"} of the generated set `fake` against `real`."""
    real, fake = check_features(real, fake)
    if not 1 <= k < min(len(real), len(fake)):
        raise UsageError(f"precision/recall k={k}: must be at least 1 and below the number of points")
    precision = coverage(fake, real, knn_radii2(real, k))
    recall = coverage(real, fake, knn_radii2(fake, k))
    return {"precision": precision, "recall": recall, "k": k}


def all_metrics(real, fake, seed: int = 0, k: int = PR_K, kid_subsets: int = KID_SUBSETS,
                kid_subset_size: int = KID_SUBSET_SIZE) -> dict:
    """FID, KID and precision/recall of one pair of feature sets."""
    real, fake = check_features(real, fake)
    return {"fid": fid(real, fake), "kid": kid(real, fake, seed, kid_subsets, kid_subset_size),
            **precision_recall(real, fake, k)}
