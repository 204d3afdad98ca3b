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

A tracker is an entry of `KINDS` and a client module (wandb_client, mlflow_client) whose
class takes (run, config, previous ids) and has `ids`, `log`, `pictures`, `end` and a
static `log_eval`; its settings are a section of `log.*` (vaecli.config.schema).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from vaecli.config import dotted
from vaecli.errors import ConfigError

log = logging.getLogger("vaecli")


@dataclass(frozen=True)
class Kind:
    """One tracker: its client class ("module:Class", imported when a run uses it), the package
    it needs and how to install it, its name in messages, and the key that turns it on."""
    impl: str
    package: str
    install: str
    label: str
    switch: str  # the config key whose non-null value turns the tracker on

    def load(self):
        module, _, attr = self.impl.partition(":")
        return getattr(importlib.import_module(module), attr)


KINDS: dict[str, Kind] = {
    "wandb": Kind("vaecli.rundir.trackers.wandb_client:Wandb", "wandb", 'pip install "vaecli[wandb]"', "W&B",
                  "log.wandb.project"),
    "mlflow": Kind("vaecli.rundir.trackers.mlflow_client:Mlflow", "mlflow", 'pip install "vaecli[mlflow]"', "MLflow",
                   "log.mlflow.tracking_uri"),
}


def enabled(cfg) -> list[str]:
    """The trackers `cfg` asks for, in a fixed order."""
    return [name for name, kind in KINDS.items() if dotted.get(cfg, kind.switch) is not None]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ValueError, ImportError):  # e.g. sys.modules[module] is None
        return False


def check(cfg) -> None:
    """At config time (before any run folder is written): ConfigError (exit 2) when a
    configured tracker's extra is not installed or the MLflow tracking URI cannot be reached."""
    for name in enabled(cfg):
        kind = KINDS[name]
        if not _installed(kind.package):
            raise ConfigError(f"{kind.switch}: {kind.label} logging needs the '{kind.package}' package, which is not "
                              f"installed; run: {kind.install} (or set {kind.switch}=null)")
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
    kind = KINDS[name]
    why = f"not installed: {kind.install}" if isinstance(e, ImportError) else _one_line(e)
    log.warning(f"{kind.label} {what} failed, going on without it ({why})")


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
                self.live.append(KINDS[name].load()(run, run.config, before))
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
                KINDS[name].load().log_eval(run, ids[name], report)
            except Exception as e:
                _warn(name, "logging of the evaluation", e)
