"""Host-side summaries of the estimator's per-example arrays: the means a report shows, the
standard error of log p̂(x), bits per dimension, and the active units of the latent space.
NumPy in float64, whatever precision the arrays were computed in."""
from __future__ import annotations

import math

import numpy as np

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (IWAE): unit d is active if Var_x(E_q[z_d|x]) > 0.01


def _stderr(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")


def summarize(values: dict[str, np.ndarray], num_pixels: int) -> dict:
    """Means over examples, the standard error of log p̂(x), and bits per dimension.

    With `kl_mc`: its mean and the standard error of its Monte Carlo noise, from the paired
    differences kl_mc − kl (the analytic KL is each example's exact expectation, so their
    spread over examples is the sampling noise alone).
    """
    n = len(values["log_likelihood"])
    ll = values["log_likelihood"].astype(np.float64)
    recon = float(values["recon"].astype(np.float64).mean())
    kl = values["kl"].astype(np.float64)
    mean_ll = float(ll.mean())
    out = {
        "elbo": -(recon + float(kl.mean())),
        "recon": recon,
        "kl": float(kl.mean()),
        "log_likelihood": mean_ll,
        "log_likelihood_stderr": _stderr(ll),
        "nll": -mean_ll,
        "bits_per_dim": -mean_ll / (num_pixels * math.log(2)),
        "num_examples": n,
    }
    if "kl_mc" in values:
        kl_mc = values["kl_mc"].astype(np.float64)
        out["kl_mc"] = float(kl_mc.mean())
        out["kl_mc_stderr"] = _stderr(kl_mc - kl)
    return out


def latent_units(values: dict[str, np.ndarray]) -> dict:
    """Per latent dimension: mean KL over examples (where the model has a closed form; else
    None), Var_x of the encoder mean, and whether the unit is active (that variance >
    ACTIVE_UNIT_THRESHOLD); and the count of active units (of the first stochastic layer)."""
    variance = values["encoder_mean"].astype(np.float64).var(axis=0)
    active = variance > ACTIVE_UNIT_THRESHOLD
    kl_dims = values.get("kl_per_dim")
    return {
        "active_units": int(active.sum()),
        "latent_dim": int(len(active)),
        "active_unit_threshold": ACTIVE_UNIT_THRESHOLD,
        "kl_per_dim": kl_dims.astype(np.float64).mean(axis=0).tolist() if kl_dims is not None else None,
        "encoder_mean_variance": variance.tolist(),
        "active": active.tolist(),
    }
