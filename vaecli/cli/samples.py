"""`vae train-features` and `vae eval-samples`: sample quality (FID, KID, precision/recall)
in the features of a small classifier vaecli trains itself, offline."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vaecli.cli.app import JsonOpt, RawParamsOpt, StepOpt, app, complete_set
from vaecli.cli.process import echo, run as _run, use_compile_cache as _use_compile_cache


@app.command("train-features")
def train_features(
    dataset: Annotated[Optional[str], typer.Option(help="The dataset (same as --set data.dataset=NAME).")] = None,
    label: Annotated[str, typer.Option(
        help="What to classify: 'label' (the dataset's labels) or a factor's name (toy_sprites: shape).")] = "label",
    config: Annotated[Optional[Path], typer.Option(help="A config whose data.* section names the data.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Override a data key: --set data.cache_dir=DIR (repeatable).", autocompletion=complete_set)] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training split.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and the shuffling.")] = 0,
    out: Annotated[Optional[Path], typer.Option(
        help="Weights file NAME.npz (its record: NAME.json) [default: $XDG_CACHE_HOME/vaecli/features/"
             "<dataset>-<label>.npz, where eval-samples looks].")] = None,
    as_json: JsonOpt = False,
):
    """Train the feature classifier of `vae eval-samples` on a labelled dataset; print its test accuracy."""

    def go():
        from vaecli import config as config_lib
        from vaecli.data import check_obtainable

        overrides = list(set_ or []) + ([f"data.dataset={dataset}"] if dataset else [])
        cfg = config_lib.load(config, overrides)
        check_obtainable(cfg.data)
        _use_compile_cache()
        from vaecli.evaluation.feature_file import train_features as train

        rec = train(cfg.data, label=label, epochs=epochs, seed=seed, out=out)
        if as_json:
            echo(json.dumps(rec, indent=2))
            return
        echo(f"{rec['dataset']} {rec['label']} ({len(rec['classes'])} classes): test accuracy "
             f"{rec['test_accuracy']:.4f} (chance {rec['chance_accuracy']:.4f}), train {rec['train_accuracy']:.4f}, "
             f"sha256 {rec['sha256'][:12]}")
        echo(rec["written_to"])

    _run(go)


@app.command("eval-samples")
def eval_samples(
    run: Annotated[Path, typer.Argument(help="Run folder written by `vae train`.")],
    features: Annotated[Optional[Path], typer.Option(
        help="Feature file from `vae train-features` (.npz or .json) [default: the one in vaecli's cache for "
             "the run's dataset].")] = None,
    n: Annotated[Optional[int], typer.Option(
        "--n", help="Prior samples, and images of the split [default: the split's size, at most 10000].")] = None,
    split: Annotated[str, typer.Option(help="The images compared with: train, validation or test.")] = "test",
    seed: Annotated[int, typer.Option(help="Seed of the prior draws, the images picked and KID's subsets.")] = 0,
    temperature: Annotated[float, typer.Option(help="z ~ N(0, T²I) (standard-normal priors only).")] = 1.0,
    k: Annotated[int, typer.Option("--k", help="Neighbours of precision/recall's k-NN balls.")] = 3,
    step: StepOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder of the JSON file (default: RUN/eval).")] = None,
    raw_params: RawParamsOpt = False,
    as_json: JsonOpt = False,
):
    """FID, KID and precision/recall of prior samples against a split; RUN/eval/samples-....json."""

    def go():
        from vaecli.evaluation import sample_metrics as m
        from vaecli.evaluation.sample_quality import check_arguments
        from vaecli.rundir.layout import open_run

        check_arguments(n, split, temperature, k, m.KID_SUBSETS, m.KID_SUBSET_SIZE)
        open_run(run)
        _use_compile_cache()
        from vaecli.evaluation import sample_quality

        res = sample_quality.evaluate(run, features=features, n=n, split=split, seed=seed, temperature=temperature,
                                      step=step, k=k, out=out, raw_params=raw_params)
        echo(json.dumps(res, indent=2) if as_json else sample_quality.format_table(res))
        if res.get("not_saved"):
            from vaecli.errors import StorageError

            raise StorageError(res["not_saved"])

    _run(go)
