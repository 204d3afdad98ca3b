"""MLflow (`log.mlflow.tracking_uri`): the run's parameters, scalars, pictures, summary and evaluations."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from vaecli import config as config_lib
from vaecli import finite
from vaecli.config import dotted
from vaecli.rundir.names import EVAL, SAMPLES, SUMMARY
from vaecli.rundir.trackers.common import eval_metrics, scalars

# A paused run is continued later (the resume reopens the same tracker run); a pruned trial
# ended as its study decided: neither is a failure.
_STATUS = {"completed": "FINISHED", "pruned": "FINISHED", "failed": "FAILED", "interrupted": "KILLED",
           "paused": "KILLED"}


class Mlflow:
    name = "mlflow"

    def __init__(self, run, cfg, previous: dict | None):
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        m = cfg.log.mlflow
        _quiet_mlflow()
        self.client = client = MlflowClient(tracking_uri=m.tracking_uri)
        params = {k: str(v) for k, v in dotted.flatten(config_lib.to_dict(cfg)).items()}
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
            self.client.log_artifact(self.run_id, str(p), artifact_path=SAMPLES)

    def end(self, summary: dict) -> None:
        self.client.log_dict(self.run_id, summary, SUMMARY)
        flat = {f"summary/{k}": finite.number(v) for k, v in dotted.flatten(summary, sep="/").items()
                if finite.number(v) is not None}
        self._metrics(flat, int(summary.get("step") or 0))
        self.client.set_tag(self.run_id, "status", summary.get("status"))
        self.client.set_terminated(self.run_id, _STATUS.get(summary.get("status"), "FAILED"))

    @staticmethod
    def log_eval(run, ids: dict, report: dict) -> None:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        _quiet_mlflow()
        client = MlflowClient(tracking_uri=run.config.log.mlflow.tracking_uri)
        now = int(time.time() * 1000)
        client.log_batch(ids["run_id"], metrics=[Metric(k, v, now, report["checkpoint_step"])
                                                 for k, v in eval_metrics(run, report).items()])
        for doc in report["results"]:
            if "written_to" in doc:
                client.log_artifact(ids["run_id"], doc["written_to"], artifact_path=EVAL)


def _quiet_mlflow() -> None:
    # MLflow prints its INFO notes (e.g. creating a SQLite store's tables) on its own handler
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
