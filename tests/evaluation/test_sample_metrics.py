"""FID, KID and precision/recall (vaecli.evaluation.sample_metrics) against independent float64
NumPy/SciPy computations on the same inputs: scipy.linalg.sqrtm's FID, the unbiased MMD²
written from its definition, and k-NN manifolds by brute force over all pairs."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from vaecli.errors import UsageError
from vaecli.evaluation import sample_metrics as sm


def _spd(rng, d: int, rank: int | None = None) -> np.ndarray:
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d + (0 if rank else 1e-3) * np.eye(d)


def _scipy_fid(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize("d", [2, 16, 64])
def test_frechet_distance_matches_scipy_sqrtm_on_random_covariances(d):
    rng = np.random.default_rng(d)
    for _ in range(3):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = _spd(rng, d), _spd(rng, d)
        ref = _scipy_fid(mu1, s1, mu2, s2)
        assert sm.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_frechet_distance_of_rank_deficient_covariances_and_of_a_gaussian_with_itself():
    rng = np.random.default_rng(1)
    s1, s2 = _spd(rng, 20, rank=5), _spd(rng, 20, rank=8)  # as from fewer samples than features
    mu = rng.normal(size=20)
    ref = _scipy_fid(mu, s1, mu + 0.1, s2)
    assert sm.frechet_distance(mu, s1, mu + 0.1, s2) == pytest.approx(ref, rel=1e-6)
    # the round-off eigenvalues of a singular product (~1e-16) enter as their square roots
    assert abs(sm.frechet_distance(mu, s1, mu, s1)) < 1e-6 * np.trace(s1)


def test_fid_of_features_uses_the_unbiased_covariance():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 8)), rng.normal(1.0, 2.0, size=(200, 8))
    mu1, mu2 = a.mean(0), b.mean(0)
    s1 = (a - mu1).T @ (a - mu1) / 299
    s2 = (b - mu2).T @ (b - mu2) / 199
    assert sm.fid(a.astype(np.float32), b.astype(np.float32)) == pytest.approx(
        _scipy_fid(mu1, s1, mu2, s2), rel=1e-5)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² from its definition, loops over pairs in float64."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / m**2


def test_kid_is_the_unbiased_mmd_of_the_polynomial_kernel():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (rng.normal(size=(40, 6)) * 1.3 + 0.4).astype(np.float32)
    ref = _mmd2_unbiased(x, y)
    # subsets of half the rows, drawn without replacement: the mean over many is the full
    # sets' U-statistic in expectation; one subset of the first half is the U-statistic of it
    got = sm.kid(np.concatenate([x, x]), np.concatenate([y, y]), seed=0, subsets=1, subset_size=40)
    assert got["subset_size"] == 40
    sub = np.random.default_rng(0)
    ix, iy = sub.choice(80, 40, replace=False), sub.choice(80, 40, replace=False)
    xs, ys = np.concatenate([x, x])[ix], np.concatenate([y, y])[iy]
    assert got["mean"] == pytest.approx(_mmd2_unbiased(xs, ys), rel=1e-4, abs=1e-6)
    # the same distribution: unbiased, so near 0 and of either sign over seeds
    same = [sm.kid(x[:20], x[20:], seed=s, subsets=1, subset_size=20)["mean"] for s in range(2)]
    assert all(abs(v) < abs(ref) for v in same)


def test_kid_over_subsets_reports_their_spread():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(60, 4)), rng.normal(0.5, 1.0, size=(60, 4))
    got = sm.kid(x, y, seed=7, subsets=6, subset_size=30)
    again = sm.kid(x, y, seed=7, subsets=6, subset_size=30)
    assert got == again
    assert got["std"] > 0 and got["stderr"] == pytest.approx(got["std"] / np.sqrt(6))


def _brute_pr(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(p):
        d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def share(rows, points):
        d = np.sqrt(((rows[:, None, :] - points[None, :, :]) ** 2).sum(-1))
        return float(np.mean((d <= radii(points)[None, :]).any(1)))

    real, fake = real.astype(np.float64), fake.astype(np.float64)
    return share(fake, real), share(real, fake)


def test_precision_recall_of_a_known_layout():
    # Real points: a 5x5 grid of spacing 1, so every k=3 radius is 1 (inside) or √2 (corners).
    # Samples: the same grid moved by (0.3, 0.3), inside those balls, and a copy 100 away:
    # precision is 1/2; each real point is 0.42 from a sample whose radius is ≥ 1, recall 1.
    grid = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0)), -1).reshape(-1, 2)
    real = grid
    fake = np.concatenate([grid + 0.3, grid + 100.0])
    got = sm.precision_recall(real, fake, k=3)
    assert got["precision"] == 0.5 and got["recall"] == 1.0


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_matches_brute_force(monkeypatch, k):
    monkeypatch.setattr(sm, "DISTANCE_ROWS", 16)  # several blocks and a padded last one
    rng = np.random.default_rng(10 + k)
    real = rng.normal(size=(70, 5)).astype(np.float32)
    fake = (rng.normal(size=(45, 5)) * 1.5 + 0.7).astype(np.float32)
    got = sm.precision_recall(real, fake, k=k)
    assert (got["precision"], got["recall"]) == pytest.approx(_brute_pr(real, fake, k), abs=1e-12)


def test_bad_features_are_refused():
    ok = np.zeros((5, 3), np.float32)
    with pytest.raises(UsageError, match="differ in width"):
        sm.fid(ok, np.zeros((5, 4)))
    with pytest.raises(UsageError, match="NaN"):
        sm.fid(ok, np.full((5, 3), np.nan))
    with pytest.raises(UsageError, match="k=5"):
        sm.precision_recall(ok + np.arange(5)[:, None], ok, k=5)
