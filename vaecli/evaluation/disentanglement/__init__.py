"""Disentanglement metrics as google-research/disentanglement_lib (dlib) defines them, in JAX,
and `vae eval-disentanglement`, which scores a run's encoder with them.

    sampling        inputs checked, factor rows drawn, `represent` called in chunks (no JAX)
    observational   MIG, DCI, SAP, modularity/explicitness: scores of (codes, factors) samples
    interventional  FactorVAE and BetaVAE scores: batches whose factors they choose
    probes          the JAX solvers standing in for scikit-learn's (logistic, linear SVM, lasso, AUC)
    run             a run folder's encoder as `represent`, the metrics, the JSON file, the table

Here (no JAX at import: the CLI's help reads it): METRICS, the registry, with dlib's sample
sizes and the small ones of `--sizes small`; `parse_metrics`; `sizes_for`.
`METRICS[name].run(represent, factor_sizes, seed, **sizes)` runs one; every result is a
JSON-able dict: `metric`, the headline `score`, the metric's own numbers, and `protocol`
(sample sizes, bins, classifier, seed).

Where this differs from dlib (the rest follows its code and its study's gin defaults):
  - DCI's default regressor is a lasso on standardised codes and factors (Eastwood &
    Williams' own choice), not gradient-boosted trees; importances are |weights|, each
    factor's alpha chosen by 5-fold cross-validation with the one-standard-error rule, so
    that codes that predict nothing get no importance (a fixed small alpha let one chance
    weight make noise look perfectly disentangled; a ridge leaked weight onto every noise
    code) and weak dependence on every code, which a fixed larger alpha cut down to a few
    chance weights at small N, is kept. Informativeness is the accuracy of a least-squares refit on the codes
    the lasso keeps, rounded to the nearest factor value. `regressor="gbt"` is dlib's
    (needs scikit-learn; trees seeded with 0, dlib leaves them unseeded).
  - sklearn's LogisticRegression and LinearSVC are replaced by JAX solvers of the same
    objectives (probes); their optima agree, float32 here, float64 there.
  - FactorVAE's `num_active_dims` counts the active dimensions (dlib reports the length of
    its mask, i.e. all of them); votes are indexed by the full latent index.
  - Random draws come from numpy's Generator(seed), not dlib's RandomState: same
    distributions, different numbers. `represent` gets up to CHUNK_ROWS rows per call.
  - Explicitness' AUC averages over the classes seen in training that have both positives
    and negatives in the scored set (sklearn raises otherwise).
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from vaecli.errors import UsageError

_PKG = "vaecli.evaluation.disentanglement"


@dataclass(frozen=True)
class Metric:
    """One metric: `impl` "module:function" run(represent, factor_sizes, seed, **sizes, **options)
    (imported on first use: that is where JAX is); `sizes` dlib's sample sizes, `small` those
    of `--sizes small`; `eval_key` the size `--eval-size` sets (None: the metric has no
    second sample)."""

    impl: str
    help: str
    sizes: Mapping[str, int]
    small: Mapping[str, int]
    eval_key: str | None = "num_test"
    options: tuple[str, ...] = field(default=())  # keyword options the metric takes besides sizes

    def load(self):
        module, _, attr = self.impl.partition(":")
        return getattr(importlib.import_module(f"{_PKG}.{module}"), attr)

    def run(self, represent, factor_sizes, seed: int = 0, **kwargs) -> dict:
        return self.load()(represent, factor_sizes, seed=seed, **kwargs)


_OBS, _OBS_SMALL = {"num_train": 10000, "num_test": 5000}, {"num_train": 1000, "num_test": 500}
_BATCHES, _BATCHES_SMALL = ({"batch_size": 64, "num_train": 10000, "num_eval": 5000},
                            {"batch_size": 64, "num_train": 200, "num_eval": 100})

METRICS: Mapping[str, Metric] = {
    "mig": Metric("observational:run_mig", "mutual information gap (10000 points, 20 bins)",
                  {"num_train": 10000}, {"num_train": 1000}, eval_key=None),
    "factor_vae": Metric("interventional:factor_vae_score",
                         "FactorVAE majority-vote accuracy (batches of 64; 10000 train, 5000 eval)",
                         {**_BATCHES, "num_variance_estimate": 10000},
                         {**_BATCHES_SMALL, "num_variance_estimate": 1000}, eval_key="num_eval"),
    "dci": Metric("observational:run_dci", "DCI disentanglement, completeness, informativeness (10000/5000)",
                  _OBS, _OBS_SMALL, options=("regressor",)),
    "sap": Metric("observational:run_sap", "SAP score, 1-code linear SVMs (10000/5000)", _OBS, _OBS_SMALL),
    "beta_vae": Metric("interventional:beta_vae_score",
                       "BetaVAE logistic-regression accuracy (batches of 64; 10000 train, 5000 eval)",
                       _BATCHES, _BATCHES_SMALL, eval_key="num_eval"),
    "modularity": Metric("observational:run_modularity", "modularity and explicitness (10000/5000, 20 bins)",
                         _OBS, _OBS_SMALL),
}
SIZE_PRESETS = ("dlib", "small")
DCI_REGRESSORS = ("lasso", "gbt")


def parse_metrics(text: str) -> tuple[str, ...]:
    """'mig, dci' -> ('mig', 'dci'); 'all' -> every metric; an unknown name is a UsageError
    that lists the valid ones."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if names == ["all"]:
        return tuple(METRICS)
    if not names:
        raise UsageError(f"no metric named: choose from {', '.join(METRICS)} (or all)")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise UsageError(f"unknown metric {unknown[0]!r}: choose from {', '.join(METRICS)} (or all)")
    return tuple(dict.fromkeys(names))


def sizes_for(name: str, preset: str = "dlib", train_size: int | None = None,
              eval_size: int | None = None) -> dict:
    """The sample sizes metric `name` runs with: the preset's (dlib's or small), then
    `train_size` as its num_train and `eval_size` as its second sample (num_test or num_eval)."""
    if preset not in SIZE_PRESETS:
        raise UsageError(f"--sizes {preset!r}: choose one of {', '.join(SIZE_PRESETS)}")
    for flag, value in (("--train-size", train_size), ("--eval-size", eval_size)):
        if value is not None and value < 2:
            raise UsageError(f"{flag} {value}: must be at least 2")
    metric = METRICS[name]
    out = dict(metric.sizes if preset == "dlib" else metric.small)
    if train_size is not None:
        out["num_train"] = int(train_size)
    if eval_size is not None and metric.eval_key is not None:
        out[metric.eval_key] = int(eval_size)
    return out
