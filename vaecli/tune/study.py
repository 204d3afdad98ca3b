"""`vae tune`: a hyperparameter search whose trials train side by side as the replicas of
one compiled program.

Optuna proposes trials through its ask/tell interface (its default sampler, TPE, seeded
from the config's seed and the trial's number); the study lives in its storage (Optuna's
journal file in the study folder, or a database: vaecli.tune.storage), so `--resume`
continues it and never repeats a finished trial, and several workers may share it. Up to `--replicas` trials train at once as slots of one
vmapped program (vaecli.training.loop.session). Slot policy, at each epoch boundary:
- a trial that validated this epoch reports its validation ELBO (step = its own epoch);
  if Optuna's pruner stops it, its run folder ends with status `pruned` (ELBO objective only:
  a sample objective has no pruner, vaecli.tune.trial_value);
- a trial that reached `train.epochs` is told COMPLETE with its value: its final validation
  ELBO, or the FID/KID of its final checkpoint (vaecli.tune.trial_value); a non-finite one
  is told FAIL;
- a freed slot takes the next trial at once: its slice of the state is re-initialised in
  place (parameters from the trial's seed, a fresh optimizer state with its lr and weight
  decay, its β/warm-up/free bits, step 0, so it draws the numbers of a fresh single run),
  and the program is not recompiled. When no trial is left the slot idles.
Trials still running when a study stops are continued from their checkpoints on resume.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from pathlib import Path

from vaecli import clock, config as config_lib, files
from vaecli.config import dotted
from vaecli.compiled import devices
from vaecli.rundir import layout, recorder as recorder_lib
from vaecli.training import loop, resume as resume_lib, start as start_lib
from vaecli.training.slots import Slots
from vaecli.tune import space as search_space, storage as storage_lib, trial_value
from vaecli.errors import AlreadyDone, RunError, UsageError

SETTINGS, SUMMARY, PICTURE = "study.json", "summary.json", "search.png"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UsageError("vae tune needs Optuna: pip install 'vaecli[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_pruner(name: str):
    optuna = _optuna()
    return {"median": lambda: optuna.pruners.MedianPruner(),
            "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
            "none": lambda: optuna.pruners.NopPruner()}[name]()


def create(raw: dict, spaces: list[str], trials: int, replicas: int, pruner: str, runs_dir, name: str,
           argv: list[str], storage: str | None = None, objective: str = "elbo", features=None,
           objective_n: int | None = None) -> Path:
    """A new study folder holding its settings (the base config, the space, the budget, the
    storage: "journal" or a database URL, the objective: vaecli.tune.trial_value)."""
    search_space.parse_all(spaces, raw)
    search_space.check_args(trials, replicas, pruner)
    raw = with_classes(raw)  # data without labels refused before the folder is made
    trial_value.check_args(objective, features, objective_n, pruner)
    storage = storage_lib.check(storage)
    if storage != "journal":  # a missing driver or an unreachable database: refused before the folder is made
        storage_lib.open_storage(_optuna(), None, storage)
    judged_by = trial_value.settings(objective, features, objective_n, config_lib.from_dict(raw).data)
    path = layout.create(runs_dir, name)
    files.write_json(path / SETTINGS, {"config": raw, "space": list(spaces), "trials": trials, "replicas": replicas,
                                      "pruner": pruner, "storage": storage, "objective": judged_by,
                                      "argv": list(argv), "created": clock.utc_now().isoformat()})
    return path


def with_classes(raw: dict) -> dict:
    """`raw` with model.num_classes from the data's labels where the model is conditional and
    leaves it null (vaecli.training.start.with_classes), so every trial's model is built for
    the same classes and its config.yaml holds their number."""
    cfg = config_lib.from_dict(raw)
    filled = start_lib.with_classes(cfg).model.num_classes
    if filled == cfg.model.num_classes:
        return raw
    out = copy.deepcopy(raw)
    dotted.put(out, "model.num_classes", filled)
    return out


def settings(study_dir: Path) -> dict:
    found = layout.read_json(Path(study_dir) / SETTINGS)
    if found is None:
        raise UsageError(f"--resume {study_dir}: not a study folder (no {SETTINGS} written by vae tune)")
    return found


def run(study_dir: Path, argv: list[str], trials: int | None = None, progress: str | None = None, pruner=None) -> dict:
    """Run (or continue) the study in `study_dir` until it holds `trials` finished trials;
    return its summary. `pruner`: an Optuna pruner replacing the one the settings name."""
    optuna = _optuna()
    t_start = time.perf_counter()
    study_dir = Path(study_dir)
    conf = settings(study_dir)
    if trials is not None:
        search_space.check_args(trials, conf["replicas"], conf["pruner"])
        conf["trials"] = trials
        files.write_json(study_dir / SETTINGS, conf)
    raw = with_classes(conf["config"])  # a no-op for a study created here, which holds the number
    dims = search_space.parse_all(conf["space"], raw)
    base = config_lib.from_dict(raw)
    storage = storage_lib.open_storage(optuna, study_dir, conf.get("storage", "journal"))
    with storage_lib.study_lock(study_dir):  # two workers starting at once: one creates the study
        study = optuna.create_study(study_name="vaecli", storage=storage, load_if_exists=True,
                                    direction=objective_of(conf)["direction"],
                                    pruner=pruner or make_pruner(conf["pruner"]))
    train_split, val_split = start_lib.load_data(base)
    with contextlib.ExitStack() as locks:
        driver = _Study(study, dims, raw, study_dir, conf, argv, train_split, val_split, locks)
        firsts = driver.restarts()
        width = min(conf["replicas"], len(firsts) + driver.left())
        while len(firsts) < width and (first := driver.new_trial(len(firsts))) is not None:
            firsts.append(first)
        driver.slots = [n for n, *_ in firsts]
        driver.served = [[n] for n in driver.slots]
        try:
            if firsts:
                model = next(m for _, _, m, _ in firsts)
                loop.session([r for _, r, _, _ in firsts], model, train_split, val_split,
                                  [s for *_, s in firsts], t_start, progress, slots=driver)
        finally:
            with storage_lib.study_lock(study_dir):  # workers ending together each add their session
                summary = write_summary(study_dir, study, conf, dims, driver.served, time.perf_counter() - t_start)
    return summary


class _Study(Slots):
    """The slots of one program, each holding an Optuna trial (see the module's policy)."""

    failures_are_results = True

    def __init__(self, study, dims, raw, study_dir, conf, argv, train_split, val_split, locks):
        self.study, self.dims, self.raw, self.dir, self.conf = study, dims, raw, study_dir, conf
        self.argv, self.train_split, self.val_split, self.locks = argv, train_split, val_split, locks
        self.slots, self.served, self.handles = [], [], {}  # handles: trial number -> optuna Trial
        epochs, self.seed = config_lib.from_dict(raw).train.epochs, config_lib.from_dict(raw).seed
        self.objective = objective_of(conf)
        self.total_epochs = math.ceil(conf["trials"] / conf["replicas"]) * epochs

    def _trials(self, *states):
        return self.study.get_trials(deepcopy=False, states=states or None)

    def left(self) -> int:
        return max(0, self.conf["trials"] - len(self._trials()))

    def restarts(self) -> list:
        """Trials left RUNNING by a worker that stopped or died (their run folders unlocked):
        continued from their latest checkpoints. Those of live workers are left alone."""
        optuna = _optuna()
        out = []
        with storage_lib.study_lock(self.dir):
            for frozen in self._trials(optuna.trial.TrialState.RUNNING):
                path = frozen.user_attrs.get("run")
                if path is None or not Path(path).is_dir():  # its worker died between asking and locking
                    self._tell(frozen.number, state=optuna.trial.TrialState.FAIL)
                    continue
                try:
                    self.locks.enter_context(recorder_lib.lock(path))
                except RunError:  # a live worker trains it
                    continue
                try:
                    run = layout.open_run(path)
                    run, model, start = resume_lib.restart(run, run.config, [], self.argv, self.train_split)
                except AlreadyDone:  # finished, but the study was not told before it stopped
                    self._tell_value(frozen.number, self.final_value(Path(path)))
                    continue
                except RunError:
                    self._tell(frozen.number, state=optuna.trial.TrialState.FAIL)
                    continue
                self.handles[frozen.number] = optuna.trial.Trial(self.study, frozen._trial_id)
                out.append((frozen.number, run, model, start))
        return out

    def new_trial(self, slot: int):
        """The next trial of the study in a new run folder, or None when the budget is spent
        (by this worker or others). Asked and locked under the study lock; the sampler is
        seeded from the config's seed and the trial's number, so that workers starting
        together draw different points and a resumed study draws new ones."""
        with storage_lib.study_lock(self.dir):
            if not self.left():
                return None
            self.study.sampler = _optuna().samplers.TPESampler(seed=self.seed + len(self._trials()))
            trial = self.study.ask()
            self.handles[trial.number] = trial
            values = {d.key: d.suggest(trial) for d in self.dims}
            path = layout.create(self.dir / "trials", f"trial{trial.number:04d}")
            self.locks.enter_context(recorder_lib.lock(path))
            trial.set_user_attr("run", str(path))
        cfg = search_space.with_values(self.raw, values)
        extra = {"trial": {"study": str(self.dir), "number": trial.number, "params": values, "slot": slot}}
        run, model, start = start_lib.new_run(path, cfg, self.argv, self.train_split, self.val_split, extra)
        return trial.number, run, model, start

    def _tell(self, number: int, *args, **kwargs) -> None:
        """Tell a trial's end. A trial another process already ended (an older vaecli, or a
        user's own Optuna call) is not this worker's to fail: it is skipped."""
        try:
            self.study.tell(number, *args, **kwargs)
        except ValueError:
            pass

    def _tell_value(self, number: int, value: float | None) -> None:
        State = _optuna().trial.TrialState
        self._tell(number, value, state=State.COMPLETE if value is not None else State.FAIL)

    def final_value(self, run_dir: Path, val: dict | None = None) -> float | None:
        """A completed trial's value (`val`: its last validation record, when at hand)."""
        if self.objective["name"] != "elbo":
            return trial_value.sample_value(self.objective, run_dir)
        return val["elbo"] if val else _final_elbo(run_dir)

    def after_epoch(self, recs, epoch):
        optuna = _optuna()
        State = optuna.trial.TrialState
        new = {}
        for r, rec in enumerate(recs):
            number = self.slots[r]
            if number is None:
                continue
            status = rec.summary["status"]
            val = rec.val_record
            if status == "completed":
                self._tell_value(number, self.final_value(Path(rec.path), val))
            elif status == "failed":
                self._tell(number, state=State.FAIL)
            elif self.objective["name"] == "elbo" and rec.active and val is not None and \
                    val["step"] == rec.train_record["step"]:
                trial = self.handles[number]
                trial.report(val["elbo"], step=val["epoch"])
                if not trial.should_prune():
                    continue
                rec.finish_saves()
                rec.end("pruned", f"pruned by Optuna's {self.conf['pruner']} pruner after epoch {val['epoch']} "
                                  f"(validation ELBO {val['elbo']:.2f})")
                self._tell(number, state=State.PRUNED)
            else:
                continue
            self.slots[r] = None
            if (got := self.new_trial(r)) is not None:
                n, run, _, start = got
                self.slots[r] = n
                self.served[r].append(n)
                new[r] = (run, start)
        return new


def objective_of(conf: dict) -> dict:
    """The study's objective (study.json's; a study made before it was recorded: the ELBO)."""
    return conf.get("objective") or trial_value.ELBO


def _final_elbo(run_dir: Path):
    final = (layout.Folder(run_dir).summary() or {}).get("final_validation") or {}
    return final.get("elbo")


def write_summary(study_dir: Path, study, conf: dict, dims, served: list[list[int]], wall_s: float) -> dict:
    """summary.json (best trial, counts, what the slots served) and the picture of the search."""
    trials = study.get_trials(deepcopy=False)
    states = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    old = layout.read_json(study_dir / SUMMARY) or {}
    objective = objective_of(conf)
    summary = {"study": str(study_dir), "trials": conf["trials"], "states": states, "replicas": conf["replicas"],
               "space": [d.describe() for d in dims], "pruner": conf["pruner"], "objective": objective,
               "sessions": [*old.get("sessions", []), {"wall_s": round(wall_s, 3), "slots": served,
                                                       "trials_served": sum(map(len, served))}],
               "best": None}
    if done:
        best = (max if objective["direction"] == "maximize" else min)(done, key=lambda t: t.value)
        summary["best"] = {"trial": best.number, "params": best.params,
                           trial_value.SUMMARY_KEYS[objective["name"]]: best.value, "run": best.user_attrs.get("run")}
    if devices.is_primary():
        files.write_json(study_dir / SUMMARY, summary)
        if trials:
            from vaecli.tune.plot import plot_search

            summary["picture"] = str(plot_search(trials, dims, study_dir / PICTURE,
                                                 trial_value.LABELS[objective["name"]],
                                                 objective["direction"] == "maximize"))
            files.write_json(study_dir / SUMMARY, summary)
    return summary
