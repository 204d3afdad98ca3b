"""Weights & Biases (`log.wandb.project`): the run's scalars, pictures, summary and evaluations."""
from __future__ import annotations

import logging
from pathlib import Path

from vaecli import config as config_lib
from vaecli.config import dotted
from vaecli.rundir.trackers.common import eval_metrics, scalars


class Wandb:
    name = "wandb"

    def __init__(self, run, cfg, previous: dict | None):
        import wandb

        self._wandb = wandb
        self.run = _wandb_init(wandb, run.path, cfg, previous, config=config_lib.to_dict(cfg))
        if previous:  # resume: allowed keys (epochs, eval.*, log.*, ...) may have changed
            self.run.config.update(config_lib.to_dict(cfg), allow_val_change=True)
        self.ids = {"id": self.run.id, "project": cfg.log.wandb.project, "entity": cfg.log.wandb.entity,
                    "mode": cfg.log.wandb.mode}

    def log(self, record: dict) -> None:
        self.run.log(scalars(record), step=int(record["step"]))

    def pictures(self, paths: list[Path], step: int) -> None:
        self.run.log({f"samples/{p.name.split('-step')[0]}": self._wandb.Image(str(p), caption=p.name)
                      for p in paths}, step=step)

    def end(self, summary: dict) -> None:
        self.run.summary.update({k: v for k, v in dotted.flatten(summary, sep="/").items()
                                 if isinstance(v, (int, float, str, bool))})
        self.run.finish(exit_code=0 if summary.get("status") in ("completed", "paused", "pruned") else 1)

    @staticmethod
    def log_eval(run, ids: dict, report: dict) -> None:
        import wandb

        r = _wandb_init(wandb, run.path, run.config, ids)
        r.summary.update(eval_metrics(run, report))
        r.finish()


def _wandb_init(wandb, path: Path, cfg, previous: dict | None, config: dict | None = None):
    logging.getLogger("wandb").setLevel(logging.CRITICAL)  # a failure is our one warning line, not its traceback
    w = cfg.log.wandb
    return wandb.init(project=w.project, entity=w.entity, mode=w.mode, tags=list(w.tags) or None,
                      name=path.name, dir=str(path), config=config, id=previous["id"] if previous else None,
                      resume="allow" if previous else None, reinit="create_new",
                      # no stdout capture (the progress bar is ours); a dead network fails in 30 s, not 90
                      settings=wandb.Settings(console="off", silent=True, init_timeout=30))
