"""What a `vae tune` trial is judged by (`--objective`): its final validation ELBO, maximised
(the default), or the quality of its prior samples, minimised: `fid`, or `kid` (the mean
over KID's subsets), as `vae eval-samples` computes them (vaecli.evaluation.sample_quality).

A sample objective is computed once per trial, when its training completes, on its final
checkpoint (its EMA parameters where the run keeps them): N prior samples against N images
of the validation split, never the test split, so the test split stays unseen by the search.
Every trial uses seed SEED, so all draw the same prior noise and compare with the same images,
and differ only by their model. N defaults to the validation split's size, at most DEFAULT_N:
the metrics' cost grows as N² (precision/recall's k-NN passes) and the evaluation runs
between epochs while the other slots wait. The features are those of one feature file,
named when the study is created; its SHA-256 is kept in study.json and checked before each
evaluation. The evaluation's JSON lands in the trial's RUN/eval/, the file
`vae eval-samples RUN --split validation --n N --features FILE` writes, and `vae runs`
shows it (val_fid, val_kid).

Pruning judges a trial during its training, but a sample metric exists only at its end, and
the validation ELBO is no stand-in for it (a model with a good likelihood can draw poor
samples), so a sample objective runs without a pruner. No JAX at import.
"""
from __future__ import annotations

from pathlib import Path

from vaecli import finite
from vaecli.errors import RunError, UsageError
from vaecli.evaluation import feature_file

OBJECTIVES = ("elbo", "fid", "kid")
DEFAULT_N = 2000
SPLIT, SEED = "validation", 0
ELBO = {"name": "elbo", "direction": "maximize"}  # the objective of a study whose study.json names none
LABELS = {"elbo": "validation ELBO (nats)", "fid": "FID, validation split", "kid": "KID, validation split"}
SUMMARY_KEYS = {"elbo": "validation_elbo", "fid": "fid", "kid": "kid"}  # the best trial's value in summary.json


def default_pruner(objective: str | None) -> str:
    return "median" if objective in (None, "elbo") else "none"


def check_args(objective: str, features, n, pruner: str) -> None:
    """`--objective`, `--features`, `--objective-n` and `--pruner` together, and the feature
    file's record and hash; no JAX, no data (UsageError / DataError)."""
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective {objective}: expected one of {', '.join(OBJECTIVES)}")
    if objective == "elbo":
        if features is not None or n is not None:
            raise UsageError("--features and --objective-n choose how a sample objective is measured; add "
                             "--objective fid (or kid), or drop them")
        return
    if features is None:
        raise UsageError(f"--objective {objective} needs --features FILE, the feature classifier every trial is "
                         f"measured with (train one with `vae train-features`)")
    if n is not None and (isinstance(n, bool) or n < 2):
        raise UsageError(f"--objective-n {n}: must be at least 2")
    if pruner != "none":
        raise UsageError(f"--pruner {pruner}: a trial's {objective} is measured once, when its training ends, so "
                         f"there is nothing to prune on; with --objective {objective} leave --pruner out (none)")
    feature_file.read_record(features)


def settings(objective: str, features, n, data_cfg) -> dict:
    """The objective as study.json keeps it: the feature file (absolute path, hash) checked
    against the validation split's image shape, and N against its size."""
    if objective == "elbo":
        return dict(ELBO)
    from vaecli import data

    record, npz = feature_file.read_record(features)
    split = data.load_split(data_cfg, SPLIT)
    feature_file.check_shape(record, features, split.image_shape, f"the {data_cfg.dataset} images")
    n = min(len(split), DEFAULT_N) if n is None else n
    if n > len(split):
        raise UsageError(f"--objective-n {n}: the {SPLIT} split of '{data_cfg.dataset}' has only {len(split)} "
                         f"images; choose --objective-n {len(split)} or fewer")
    return {"name": objective, "direction": "minimize", "features": str(npz.resolve()), "sha256": record["sha256"],
            "n": n, "split": SPLIT, "seed": SEED}


def sample_value(objective: dict, run_dir: Path) -> float | None:
    """The sample objective of a trial's final checkpoint (None when it is not finite); its
    JSON written into the trial's eval/. RunError when the feature file changed since the
    study began: trials measured with other features could not be compared."""
    from vaecli.evaluation import sample_quality

    record, _ = feature_file.read_record(objective["features"])
    if record["sha256"] != objective["sha256"]:
        raise RunError(f"{objective['features']}: the feature file was replaced since the study began (SHA-256 "
                       f"{record['sha256'][:12]}…, the study's {objective['sha256'][:12]}…); put the study's back, "
                       f"or start a new study: trials measured with other features cannot be compared")
    doc = sample_quality.evaluate(run_dir, features=objective["features"], n=objective["n"],
                                  split=objective["split"], seed=objective["seed"])
    return finite.number(doc["fid"] if objective["name"] == "fid" else doc["kid"]["mean"])
