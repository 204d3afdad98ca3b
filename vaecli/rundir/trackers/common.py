"""What every tracker client sends, named as TensorBoard and `vae eval-elbo` name it."""
from __future__ import annotations

import math

from vaecli.rundir.names import marks_raw

_NOT_SCALARS = {"step", "epoch", "split"}  # as in metrics.MetricsLog: the rest are TensorBoard scalars


def flatten(tree: dict, prefix: str = "", sep: str = ".") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}{sep}", sep))
        else:
            out[f"{prefix}{k}"] = v
    return out


def scalars(record: dict) -> dict:
    """A log point's TensorBoard scalars: `<split>/<name>` -> value."""
    split = record.get("split", "train")
    return {f"{split}/{k}": float(v) for k, v in record.items()
            if k not in _NOT_SCALARS and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


def eval_metrics(run, report: dict) -> dict:
    """eval-elbo's figures as `eval/<split>/k<K>/<name>` (`k<K>-raw`: the raw parameters of a run with EMA)."""
    raw = "-raw" if marks_raw(run.config, report.get("params")) else ""
    out = {}
    for doc in report["results"]:
        for name in ("log_likelihood", "log_likelihood_stderr", "nll", "bits_per_dim", "elbo", "recon", "kl",
                     "active_units"):
            v = doc.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[f"eval/{report['split']}/k{doc['samples']}{raw}/{name}"] = float(v)
    return out
