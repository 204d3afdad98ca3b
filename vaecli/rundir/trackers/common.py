"""What every tracker client sends, named as TensorBoard and `vae eval-elbo` name it."""
from __future__ import annotations

from vaecli import finite

from vaecli.rundir.names import marks_raw

_NOT_SCALARS = {"step", "epoch", "split"}  # as in metrics.MetricsLog: the rest are TensorBoard scalars


def scalars(record: dict) -> dict:
    """A log point's TensorBoard scalars: `<split>/<name>` -> value."""
    split = record.get("split", "train")
    return {f"{split}/{k}": finite.number(v) for k, v in record.items()
            if k not in _NOT_SCALARS and finite.number(v) is not None}


def eval_metrics(run, report: dict) -> dict:
    """eval-elbo's figures as `eval/<split>/k<K>/<name>` (`k<K>-raw`: the raw parameters of a run with EMA)."""
    raw = "-raw" if marks_raw(run.config, report.get("params")) else ""
    out = {}
    for doc in report["results"]:
        for name in ("log_likelihood", "log_likelihood_stderr", "nll", "bits_per_dim", "elbo", "recon", "kl",
                     "active_units"):
            v = finite.number(doc.get(name))
            if v is not None:
                out[f"eval/{report['split']}/k{doc['samples']}{raw}/{name}"] = v
    return out
