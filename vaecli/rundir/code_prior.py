"""A VQ-VAE run's code prior on disk: RUN/prior/, written by `vae train-prior`, read by
`vae eval-elbo`, `vae sample --mode prior` and `vaecli.load`.

    prior/prior.yaml      the code_prior section it trains with, and what it is a prior of: the
                          codebook size K, the code grid, the VQ-VAE checkpoint step whose codes it fits
    prior/checkpoints/    Orbax checkpoints of its state (vaecli.rundir.checkpoints), one per epoch kept
    prior/metrics.jsonl   one line per epoch: the training and validation −log p(codes)
    prior/summary.json    status (completed, paused), epochs, the last validation figures
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from vaecli import config, files
from vaecli.compiled import code_prior
from vaecli.errors import RunError
from vaecli.rundir.checkpoints import Checkpoints
from vaecli.rundir.restore import resolve_step

FOLDER = "prior"


@dataclass(frozen=True)
class PriorFolder:
    run_path: Path

    path = property(lambda self: Path(self.run_path) / FOLDER)
    meta_file = property(lambda self: self.path / "prior.yaml")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    summary_file = property(lambda self: self.path / "summary.json")

    def meta(self) -> dict | None:
        """prior.yaml's mapping, or None where the run has no prior yet."""
        try:
            return yaml.safe_load(self.meta_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, yaml.YAMLError) as e:
            raise RunError(f"{self.meta_file} cannot be read ({e}); delete {self.path} and run vae train-prior "
                           "again") from None

    def write_meta(self, meta: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        files.write_text(self.meta_file, yaml.safe_dump(meta, sort_keys=False))

    def records(self) -> list[dict]:
        try:
            return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def write_records(self, records: list[dict]) -> None:
        files.write_text(self.metrics_file, "".join(json.dumps(r) + "\n" for r in records))


def prior_config(run_config, meta: dict):
    """The run's config with the code_prior section the prior trained with (validated)."""
    return config.replace(run_config, code_prior=dict(meta["code_prior"]))


@dataclass
class LoadedPrior:
    fn: object  # the prior's Functional
    params: dict
    step: int  # of the prior's own checkpoints
    meta: dict


def load(run, step=None) -> LoadedPrior | None:
    """The run's trained prior at its checkpoint `step` (None: the latest), or None when the
    run has no prior (no prior.yaml, or no checkpoint saved yet)."""
    folder = PriorFolder(run.path)
    meta = folder.meta()
    if meta is None or not folder.checkpoint_dir.is_dir():
        return None
    cfg = prior_config(run.config, meta)
    with Checkpoints(folder.checkpoint_dir, read_only=True) as ckpts:
        if not ckpts.steps():
            return None
        chosen = resolve_step(ckpts, step)
        fn, _, like = code_prior.template_state(cfg.code_prior, meta["codebook_size"], meta["codes"], run.config.seed)
        state, _ = ckpts.restore(chosen, like)
    return LoadedPrior(fn, state["params"], chosen, meta)
