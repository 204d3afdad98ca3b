"""`vae eval-disentanglement`: a trained run's encoder scored by the disentanglement metrics.

The representation is the encoder's mean E[z|x] (of the first stochastic layer), compiled
and batched (vaecli.compiled.encode_decode.CompiledModel). `represent(factors)` draws the
images with those factor values (vaecli.data.factor_images: drawn for toy_sprites, looked
up in the prepared train split for dSprites and shapes3d), scales them to [0, 1] (image /
scale: binary images as they are, grey or colour ones as intensities) and encodes them, in
blocks of ENCODE_ROWS rows, so that the encoder compiles once for every metric.

One JSON file per checkpoint, `RUN/eval/disentanglement-step<S>[-raw].json`: the common
protocol (dataset, factors, checkpoint step, representation, vaecli version) and one entry
per metric (its result, its own protocol: sample sizes, seed, classifier; its seconds and
the images it encoded). A later call adds its metrics to that file, replacing those it ran
again.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

import vaecli
from vaecli.errors import DataError, UsageError
from vaecli.evaluation.disentanglement import DCI_REGRESSORS, METRICS, parse_metrics, sizes_for
from vaecli.evaluation.disentanglement.observational import require_scikit_learn

ENCODE_ROWS = 4000  # images per encoder call (4 of CompiledModel's batches): one shape, one compile
REPRESENTATION = "encoder mean E[z|x], inputs = images / scale in [0, 1]"


def plan(metrics: str = "all", sizes: str = "dlib", train_size: int | None = None, eval_size: int | None = None,
         dci_regressor: str = "lasso") -> dict[str, dict]:
    """{metric: its keyword arguments (sample sizes, options)}: every argument checked before
    any run folder or data is read (UsageError, exit 2)."""
    names = parse_metrics(metrics)
    if dci_regressor not in DCI_REGRESSORS:
        raise UsageError(f"--dci-regressor {dci_regressor!r}: choose one of {', '.join(DCI_REGRESSORS)}")
    if dci_regressor == "gbt" and "dci" in names:
        require_scikit_learn()
    out = {}
    for name in names:
        out[name] = sizes_for(name, sizes, train_size, eval_size)
        if "regressor" in METRICS[name].options:
            out[name]["regressor"] = dci_regressor
    return out


def representer(model, images, counter: list[int]):
    """represent(factors, rng) -> encoder means (n, D) of the images with those factors;
    `counter[0]` counts the images encoded."""
    def represent(factors: np.ndarray, rng) -> np.ndarray:
        x = images.draw(factors)
        out = []
        for i in range(0, len(x), ENCODE_ROWS):
            block = x[i:i + ENCODE_ROWS].astype(np.float32) / images.scale
            n = len(block)
            if n < ENCODE_ROWS:  # padded to the one compiled shape
                block = np.concatenate([block, np.zeros((ENCODE_ROWS - n, *block.shape[1:]), np.float32)])
            out.append(model.encode(block)[0][:n])
        counter[0] += len(x)
        return np.concatenate(out)
    return represent


def evaluate(run_path: str | Path, metrics: str = "all", seed: int = 0, step=None, sizes: str = "dlib",
             train_size: int | None = None, eval_size: int | None = None, dci_regressor: str = "lasso",
             out: str | Path | None = None, raw_params: bool = False, write: bool = True) -> dict:
    """Score a run's checkpoint with `metrics` and write them into `out` (default RUN/eval);
    return the report: the file's common fields, the metrics of this call, `written_to` (or
    `not_saved`, the line saying why the file could not be written)."""
    todo = plan(metrics, sizes, train_size, eval_size, dci_regressor)
    from vaecli import data
    from vaecli.compiled.encode_decode import CompiledModel
    from vaecli.rundir import evaluated

    ckpt = evaluated.open_checkpoint(run_path, step, raw_params, out)
    run = ckpt.run
    images = data.load_factor_images(run.config.data)  # a dataset without factors: DataError, nothing written
    _check_fits(run, images, todo)
    model = CompiledModel(ckpt.fn, ckpt.params, run.image_shape)
    counter = [0]
    represent = representer(model, images, counter)
    t0 = time.perf_counter()
    represent(np.zeros((1, len(images.sizes)), np.int64), None)  # compiles the encoder: not any metric's time
    compile_s = time.perf_counter() - t0
    results = {}
    for name, kwargs in todo.items():
        counter[0], t0 = 0, time.perf_counter()
        result = METRICS[name].run(represent, images.sizes, seed=seed, **kwargs)
        results[name] = {**result, "seconds": time.perf_counter() - t0, "images_encoded": counter[0]}
        results[name]["protocol"]["sizes"] = sizes
    report = {"run": str(run.path), "checkpoint_step": ckpt.step, "params": ckpt.params_kind,
              "protocol": _protocol(run, images, ckpt.step, ckpt.params_kind, compile_s), "metrics": results}
    if write:
        target = ckpt.output("disentanglement")
        report.update(ckpt.write_json(target, _merged(report, target),
                                      "write the file elsewhere with --out DIR (the results are on stdout)"))
    return report


def _check_fits(run, images, todo: dict) -> None:
    """The run's images are the dataset's, and its codes are enough for the metrics asked for."""
    drawn = images.draw(np.zeros((1, len(images.sizes)), np.int64)).shape[1:]
    if tuple(drawn) != tuple(run.image_shape):
        raise DataError(f"dataset '{images.dataset}' now draws images of shape {tuple(drawn)}, but the run was "
                        f"trained on {tuple(run.image_shape)}")
    needs_two = [n for n in todo if n in ("mig", "sap")]
    if run.config.model.latent_dim < 2 and needs_two:
        raise UsageError(f"--metrics {needs_two[0]} compares the two best codes; this run has model.latent_dim=1")


def _protocol(run, images, chosen: int, which: str, compile_s: float) -> dict:
    import jax

    m = run.config.model
    return {"dataset": images.dataset, "factors": {"names": list(images.names), "sizes": list(images.sizes)},
            "images": images.source, "representation": REPRESENTATION, "checkpoint_step": chosen, "params": which,
            "model": {"kind": m.kind, "latent_dim": m.latent_dim, "objective": run.config.objective.name,
                      "beta": run.config.objective.beta},
            "encode_rows": ENCODE_ROWS, "compile_s": compile_s, "device": str(jax.devices()[0]),
            "vaecli_version": vaecli.__version__}


def _merged(report: dict, target: Path) -> dict:
    """The file's document: this call's metrics added to those it has for the same step."""
    from vaecli.rundir.layout import read_json

    old = read_json(target) or {}
    kept = old.get("metrics", {}) if old.get("checkpoint_step") == report["checkpoint_step"] else {}
    doc = {k: v for k, v in report.items() if k != "metrics"}
    doc["metrics"] = {**kept, **report["metrics"]}
    return doc


def _details(name: str, r: dict) -> str:
    if name == "mig":
        return "per factor " + " ".join(f"{v:.2f}" for v in r["per_factor"])
    if name == "factor_vae":
        return f"train {r['train_accuracy']:.3f}, active codes {r['num_active_dims']}"
    if name == "dci":
        return (f"D {r['disentanglement']:.3f}  C {r['completeness']:.3f}  I {r['informativeness_train']:.3f} "
                f"(train) {r['informativeness_test']:.3f} (test), {r['protocol']['regressor']}")
    if name == "beta_vae":
        return f"train {r['train_accuracy']:.3f}"
    if name == "modularity" and "explicitness_test" in r:
        return f"explicitness {r['explicitness_train']:.3f} (train) {r['explicitness_test']:.3f} (test)"
    return ""


def _sizes(r: dict) -> str:
    """'10000/5000' (train/test codes), '10000+5000 x64, var 10000' (batches of 64)."""
    p = r["protocol"]
    if "batch_size" in p:
        var = f", var {p['num_variance_estimate']}" if "num_variance_estimate" in p else ""
        return f"{p['num_train']}+{p['num_eval']} x{p['batch_size']}{var}"
    return str(p["num_train"]) + (f"/{p['num_test']}" if "num_test" in p else "")


def format_table(report: dict) -> str:
    """The terminal table: one row per metric (score, its other numbers, sizes, seconds)."""
    p = report["protocol"]
    factors = ", ".join(f"{n} {s}" for n, s in zip(p["factors"]["names"], p["factors"]["sizes"]))
    first = next(iter(report["metrics"].values()))
    lines = [f"{p['dataset']} ({factors}), step {report['checkpoint_step']}"
             + (" (EMA params)" if report["params"] == "ema" else "")
             + f", seed {first['protocol']['seed']}, {report['run']}",
             f"  {'metric':<12}{'score':>7}  {'sizes':<28}{'time, s':>8}  details"]
    for name, r in report["metrics"].items():
        score = f"{r['score']:.3f}" if math.isfinite(r["score"]) else "—"
        lines.append(f"  {name:<12}{score:>7}  {_sizes(r):<28}{r['seconds']:>8.1f}  {_details(name, r)}")
    if "written_to" in report:
        lines.append(f"written to {report['written_to']}")
    return "\n".join(lines)
