"""A new run: its folder's first files, its state at step 0, then the one training loop.

`train` trains one config; `train_replicas` trains configs that differ only in replica keys
(vaecli.config.schema: seed, learning rate, weight decay, β, warm-up, free bits) as ONE
compiled program with a replica axis, each replica writing an ordinary run folder.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from vaecli import clock, data, progress as progress_lib
from vaecli.compiled import devices, state as state_lib
from vaecli.compiled.epoch import MATMUL_PRECISION
from vaecli import config as config_lib
from vaecli.config import Config
from vaecli.errors import RunError
from vaecli.rundir import layout, recorder as recorder_lib
from vaecli.training.loop import session
from vaecli.training.records import Model, Opened, Start


def train(cfg: Config, runs_dir: str | Path, name: str, argv: list[str], progress: str | None = None,
          clock_start: float | None = None) -> Path:
    """Train a model as `cfg` says in a new run folder; return the folder. `progress`
    overrides log.progress (auto | bar | lines | none). `clock_start`: the `clock.now()` reading
    from which `train.time_limit` counts (default: this call)."""
    return train_replicas([cfg], runs_dir, [name], argv, progress=progress, clock_start=clock_start)[0]


def train_replicas(cfgs: list[Config], runs_dir: str | Path, names: list[str], argv: list[str],
                   progress: str | None = None, clock_start: float | None = None) -> list[Path]:
    """Train configs that differ only in replica keys as one compiled program; return their
    folders. Raises `Paused` (with the folders) when `train.time_limit` stopped it."""
    t_start = time.perf_counter()
    clock_start = clock.now() if clock_start is None else clock_start
    if devices.is_primary():
        for name in names:
            layout.check_target(runs_dir, name)  # a bad --name or --runs-dir is reported before any data work
    # Data and devices first: a dataset that cannot be loaded, or a batch the devices cannot
    # share, leaves no run folder behind.
    cfgs = [with_classes(c, progress) for c in cfgs]
    train_split, val_split = load_data(cfgs[0], progress)
    devices.replica_layout(cfgs[0], len(cfgs)) or devices.check_layout(cfgs[0])
    paths = devices.share_paths([layout.create(runs_dir, name) for name in names] if devices.is_primary() else None)
    with contextlib.ExitStack() as locks:
        run_list, starts = [], []
        for i, (cfg, path) in enumerate(zip(cfgs, paths)):
            extra = {"replica": {"index": i, "count": len(cfgs), "program": [p.name for p in paths]}} if len(cfgs) > 1 else {}
            locks.enter_context(recorder_lib.lock(path))
            opened = new_run(path, cfg, argv, train_split, val_split, extra)
            run_list.append(opened.run), starts.append(opened.start)
        session(run_list, opened.model, train_split, val_split, starts, t_start, progress, clock_start=clock_start)
    return paths


def new_run(path: Path, cfg: Config, argv: list[str], train_split: data.Split, val_split: data.Split,
            extra_meta: dict) -> Opened:
    """A new run folder's first files and its state at step 0."""
    meta = layout.environment_meta(argv)
    meta["data"] = {"dataset": data.dataset_name(cfg.data), "image_shape": list(train_split.image_shape),
                    "num_train": len(train_split), "num_validation": len(val_split),
                    "binarize": cfg.data.binarize, "train_scale": train_split.scale}
    if train_split.class_names is not None:  # what each label number stands for (class folder names)
        meta["data"]["classes"] = list(train_split.class_names)
    # the matmul precision the step runs at (XLA's CPU backend computes every setting in float32)
    meta["precision"] = {"train": cfg.train.precision, "matmul": MATMUL_PRECISION[cfg.train.precision],
                         "effective": cfg.train.precision if meta["backend"] != "cpu" else "float32"}
    run = recorder_lib.start(path, cfg, {**meta, **extra_meta})
    fn, tx, state = state_lib.init_state(cfg, train_split.image_shape, train=train_split)
    return Opened(run, Model(fn, tx), Start(state))


def with_classes(cfg: Config, progress: str | None = None) -> Config:
    """`cfg` with model.num_classes from the data's labels where it is conditional and left null,
    so the run's config.yaml (and every later reader) holds the number."""
    if not cfg.model.conditional or cfg.model.num_classes is not None:
        return cfg
    with progress_lib.reporting(progress or cfg.log.progress):
        train = data.load_split(cfg.data, "train")
    train.with_labels(train.num_classes or 1)  # data without labels refused here, in the config's words
    return config_lib.replace(cfg, model={"num_classes": train.num_classes})


def load_data(cfg: Config, progress: str | None = None) -> tuple[data.Split, data.Split]:
    """The training and validation splits of `cfg`, checked against its batch size; a dataset
    prepared on the way says so as `progress` (else log.progress) asks. A conditional model's
    splits carry the one-hot label in their rows (data.Split.with_labels)."""
    with progress_lib.reporting(progress or cfg.log.progress):
        train_split = data.load_split(cfg.data, "train")
        val_split = data.load_split(cfg.data, "validation")
    if cfg.model.conditional:
        n = cfg.model.num_classes or train_split.with_labels(train_split.num_classes or 1).num_classes
        train_split, val_split = (s.with_labels(n) for s in (train_split, val_split))
    if len(train_split) < cfg.train.batch_size:
        raise RunError(f"train.batch_size={cfg.train.batch_size} is larger than the training split "
                       f"({len(train_split)} images); lower it")
    return train_split, val_split
