"""Experiment trackers: W&B (`log.wandb.project`) and MLflow (`log.mlflow.tracking_uri`).

Optional mirrors of what a run writes into its folder, driven by the run recorder (only the
process that writes the folder tracks): the resolved config as parameters, the same
scalars as TensorBoard under the same names (`train/loss`, `validation/elbo`, ...) at the
same steps, the picture grids of each evaluation, the final summary, and the results of
`vae eval-elbo` on the run. Each tracker's run id goes into meta.json (`trackers`), so
`--resume` and `eval-elbo` continue the same tracker run; a resumed run sends only the
steps after the last one it had logged (no duplicate steps).

The packages are extras (`pip install "vaecli[wandb]"`, `"vaecli[mlflow]"`) and are
imported only when a tracker is configured. A tracker that fails at run time (no network,
bad credentials, a missing package) costs one warning line and is dropped; training goes on.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from vaecli.errors import ConfigError

log = logging.getLogger("vaecli")

INSTALL = {"wandb": ("wandb", 'pip install "vaecli[wandb]"'), "mlflow": ("mlflow", 'pip install "vaecli[mlflow]"')}
LABEL = {"wandb": "W&B", "mlflow": "MLflow"}
_NOT_SCALARS = {"step", "epoch", "split"}  # as in metrics.MetricsLog: the rest are TensorBoard scalars
_MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def enabled(cfg) -> list[str]:
    """The trackers `cfg` asks for, in a fixed order."""
    return ([name for name, on in (("wandb", cfg.log.wandb.project is not None),
                                   ("mlflow", cfg.log.mlflow.tracking_uri is not None)) if on])


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ValueError, ImportError):  # e.g. sys.modules[module] is None
        return False


def check(cfg) -> None:
    """At config time (before any run folder is written): ConfigError (exit 2) when a
    configured tracker's extra is not installed or the MLflow tracking URI cannot be reached."""
    for name in enabled(cfg):
        module, command = INSTALL[name]
        if not _installed(module):
            key = "log.wandb.project" if name == "wandb" else "log.mlflow.tracking_uri"
            raise ConfigError(f"{key}: {LABEL[name]} logging needs the '{module}' package, which is not installed; "
                              f"run: {command} (or set {key}=null)")
    if cfg.log.mlflow.tracking_uri is not None:
        _check_mlflow_uri(cfg.log.mlflow.tracking_uri)


def _check_mlflow_uri(uri: str) -> None:
    key, parsed = "log.mlflow.tracking_uri", urlparse(uri)
    if parsed.scheme in ("http", "https"):
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "", port), timeout=5).close()
        except OSError as e:
            raise ConfigError(f"{key}: cannot reach {parsed.hostname}:{port} ({e.strerror or type(e).__name__}); "
                              f"start the tracking server, fix the URI, or set {key}=null") from None
    elif parsed.scheme == "sqlite":
        db = Path(uri.split(":///", 1)[-1]) if ":///" in uri else None
        if db is not None and not db.parent.is_dir():
            raise ConfigError(f"{key}: the folder of the database {db} does not exist; create it or choose "
                              f"another path (e.g. sqlite:///{Path.cwd() / 'mlflow.db'})")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def _warn(name: str, what: str, e: BaseException) -> None:
    why = f"not installed: {INSTALL[name][1]}" if isinstance(e, ImportError) else _one_line(e)
    log.warning(f"{LABEL[name]} {what} failed, going on without it ({why})")


def _flatten(tree: dict, prefix: str = "", sep: str = ".") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}{sep}", sep))
        else:
            out[f"{prefix}{k}"] = v
    return out


def scalars(record: dict) -> dict:
    """A log point's TensorBoard scalars: `<split>/<name>` -> value."""
    split = record.get("split", "train")
    return {f"{split}/{k}": float(v) for k, v in record.items()
            if k not in _NOT_SCALARS and isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v)}


# ---------------------------------------------------------------- W&B


class _Wandb:
    name = "wandb"

    def __init__(self, run, cfg, previous: dict | None):
        import wandb

        from vaecli import config as config_lib

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
        self.run.summary.update({k: v for k, v in _flatten(summary, sep="/").items()
                                 if isinstance(v, (int, float, str, bool))})
        self.run.finish(exit_code=0 if summary.get("status") == "completed" else 1)

    @staticmethod
    def log_eval(run, ids: dict, report: dict) -> None:
        import wandb

        r = _wandb_init(wandb, run.path, run.config, ids)
        r.summary.update(_eval_metrics(run, report))
        r.finish()


def _wandb_init(wandb, path: Path, cfg, previous: dict | None, config: dict | None = None):
    logging.getLogger("wandb").setLevel(logging.CRITICAL)  # a failure is our one warning line, not its traceback
    w = cfg.log.wandb
    return wandb.init(project=w.project, entity=w.entity, mode=w.mode, tags=list(w.tags) or None,
                      name=path.name, dir=str(path), config=config, id=previous["id"] if previous else None,
                      resume="allow" if previous else None, reinit="create_new",
                      # no stdout capture (the progress bar is ours); a dead network fails in 30 s, not 90
                      settings=wandb.Settings(console="off", silent=True, init_timeout=30))


# ---------------------------------------------------------------- MLflow


class _Mlflow:
    name = "mlflow"

    def __init__(self, run, cfg, previous: dict | None):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        from vaecli import config as config_lib

        m = cfg.log.mlflow
        _quiet_mlflow()
        self.client = client = MlflowClient(tracking_uri=m.tracking_uri)
        params = {k: str(v) for k, v in _flatten(config_lib.to_dict(cfg)).items()}
        if previous:
            self.run_id = previous["run_id"]
            client.update_run(self.run_id, status="RUNNING")
            # parameters are immutable in MLflow: keys a resume changed are recorded as tags
            old = client.get_run(self.run_id).data.params
            for k, v in params.items():
                if k in old and old[k] != v:
                    client.set_tag(self.run_id, f"resumed.{k}", v)
            params = {k: v for k, v in params.items() if k not in old}
        else:
            exp = client.get_experiment_by_name(m.experiment)
            exp_id = exp.experiment_id if exp else client.create_experiment(m.experiment)
            self.run_id = client.create_run(exp_id, run_name=run.path.name,
                                            tags={"vaecli.run_folder": str(run.path)}).info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters per batch
            client.log_batch(self.run_id, params=items[i:i + 100])
        self.ids = {"run_id": self.run_id, "experiment": m.experiment, "tracking_uri": m.tracking_uri}

    def _metrics(self, values: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def log(self, record: dict) -> None:
        self._metrics(scalars(record), int(record["step"]))

    def pictures(self, paths: list[Path], step: int) -> None:
        for p in paths:
            self.client.log_artifact(self.run_id, str(p), artifact_path="samples")

    def end(self, summary: dict) -> None:
        self.client.log_dict(self.run_id, summary, "summary.json")
        flat = {f"summary/{k}": float(v) for k, v in _flatten(summary, sep="/").items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        self._metrics(flat, int(summary.get("step") or 0))
        self.client.set_tag(self.run_id, "status", summary.get("status"))
        self.client.set_terminated(self.run_id, _MLFLOW_STATUS.get(summary.get("status"), "FAILED"))

    @staticmethod
    def log_eval(run, ids: dict, report: dict) -> None:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        _quiet_mlflow()
        client = MlflowClient(tracking_uri=run.config.log.mlflow.tracking_uri)
        now = int(time.time() * 1000)
        client.log_batch(ids["run_id"], metrics=[Metric(k, v, now, report["checkpoint_step"])
                                                 for k, v in _eval_metrics(run, report).items()])
        for doc in report["results"]:
            if "written_to" in doc:
                client.log_artifact(ids["run_id"], doc["written_to"], artifact_path="eval")


def _quiet_mlflow() -> None:
    # MLflow prints its INFO notes (e.g. creating a SQLite store's tables) on its own handler
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _eval_metrics(run, report: dict) -> dict:
    """eval-elbo's figures as `eval/<split>/k<K>/<name>` (`k<K>-raw`: the raw parameters of a run with EMA)."""
    raw = "-raw" if report.get("params") == "raw" and run.config.train.ema_decay > 0 else ""
    out = {}
    for doc in report["results"]:
        for name in ("log_likelihood", "log_likelihood_stderr", "nll", "bits_per_dim", "elbo", "recon", "kl",
                     "active_units"):
            v = doc.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[f"eval/{report['split']}/k{doc['samples']}{raw}/{name}"] = float(v)
    return out


_KINDS = {"wandb": _Wandb, "mlflow": _Mlflow}


# ---------------------------------------------------------------- what the recorder holds


class Trackers:
    """The trackers of one run folder. Every call goes to each live tracker; one that raises
    is dropped after one warning line. `previous`: meta.json's `trackers` (their run ids);
    `logged_to`: on resume, the last step already sent to them (only later ones are sent
    again; a tracker the run did not have before gets everything from the resume on)."""

    def __init__(self, run, previous: dict | None = None, logged_to: int | None = None):
        self.live, self.skip_to = [], {}
        for name in enabled(run.config):
            before = (previous or {}).get(name)
            try:
                self.live.append(_KINDS[name](run, run.config, before))
            except Exception as e:
                _warn(name, "start", e)
            else:
                self.skip_to[name] = logged_to if before and logged_to is not None else -1

    @property
    def ids(self) -> dict:
        return {t.name: t.ids for t in self.live}

    def _each(self, method: str, *args, step: int | None = None) -> None:
        for t in list(self.live):
            if step is not None and step <= self.skip_to[t.name]:
                continue
            try:
                getattr(t, method)(*args)
            except Exception as e:
                _warn(t.name, "logging", e)
                self.live.remove(t)

    def log(self, record: dict) -> None:
        self._each("log", record, step=int(record.get("step", 0)))

    def pictures(self, paths: list[Path], step: int) -> None:
        self._each("pictures", paths, step, step=step)

    def end(self, summary: dict) -> None:
        self._each("end", summary)
        self.live = []


class NoTrackers(Trackers):
    """What a process that writes no run folder, or a run without trackers, tracks: nothing."""

    def __init__(self):
        self.live, self.skip_to = [], {}


def log_eval(run, report: dict) -> None:
    """Send `vae eval-elbo`'s results to the tracker runs of `run` (those meta.json names)."""
    ids = run.meta.get("trackers") or {}
    for name in enabled(run.config):
        if name in ids:
            try:
                _KINDS[name].log_eval(run, ids[name], report)
            except Exception as e:
                _warn(name, "logging of the evaluation", e)
