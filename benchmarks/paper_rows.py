"""Paper rows measured by vaecli: train paper configs to the end of their protocol, evaluate
log p(x) with K=5000 importance samples on the test split at the latest and at the
best-validation checkpoint, write one JSON record per (config, seed).

    python benchmarks/paper_rows.py configs/paper/iwae_vae_k1.yaml [configs/paper/vampprior.yaml ...]
        [--seeds 0-1] [--time-limit 9m] [--set data.cache_dir=DIR ...] [--runs-dir runs/paper]
        [--results benchmarks/results] [--samples 5000]
    python benchmarks/paper_rows.py --table [--write-readme]
    python benchmarks/paper_rows.py --check-record FILE [--samples 5000]

Each config trains in a folder of its own, `<runs-dir>/<config stem>[-seeds<S>]/`. Called
again, the script resumes the runs it finds there (the replicas of a `--seeds` program as
one program again, so they keep the bits of an uninterrupted program): long protocols run
as a series of calls, each ended by `--time-limit` (counted from the start of the process;
training of each config gets what is left minus `--eval-reserve`); a config it pauses ends
the call. Completed runs are evaluated once per checkpoint (the eval files of
`vae eval-elbo` in the run folder are reused) and recorded in `<results>/<stem>-seed<S>.json`.
An evaluation is bounded by `--time-limit` too: one whose pace says it would end past the
limit stops (nothing of it written) and the call exits 3; the next call does it.

A record is a paper row (`paper_row: true`) only when the run's resolved config is the
config file's own, up to NEUTRAL keys; `--table` prints the README's paper table with its
"measured" column filled from paper rows only (rows with none say what they need),
`--write-readme` writes it into README.md.

Refused, with one line and nothing touched: a config outside configs/paper/ (exit 2), a
results folder that cannot be written (exit 2), a run folder in `<runs-dir>` trained with
another protocol than this call's (exit 2) or by a vaecli whose run format this one cannot
read (exit 1), a record of another run folder where this one's would go (exit 2).

Needs jax/flax/optax/orbax/pyyaml and the prepared data cache (`vae` fills it where TFDS
is installed): TensorFlow is never imported.

Exit: 0 every row recorded; 3 a protocol is unfinished (paused by --time-limit: call again);
1/2 as `vae`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from vaecli import clock, config as config_lib, files  # noqa: E402  (no JAX at import)
from vaecli.errors import AlreadyDone, OutOfTime, Paused, UsageError, VaeError  # noqa: E402
from vaecli.rundir import layout  # noqa: E402
from vaecli.training import stops  # noqa: E402

from paper_table import README, TABLE_BEGIN, TABLE_END, read_records, render_table  # noqa: E402,F401

PAPER_CONFIGS = ROOT / "configs" / "paper"
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "paper"
# Keys whose value does not change the protocol a record measures: where files are, what is
# logged, the seed, how a call is bounded, how many devices share a batch.
NEUTRAL = ("seed", "data.data_dir", "data.manual_dir", "data.cache_dir", "train.time_limit", "train.devices", "log.")



def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _neutral(key: str) -> bool:
    return any(key == n or (n.endswith(".") and key.startswith(n)) for n in NEUTRAL)


def protocol(cfg) -> dict:
    """The keys of a resolved config that make its protocol (NEUTRAL keys left out), flat."""
    return {k: v for k, v in _flat(config_lib.to_dict(cfg)).items() if not _neutral(k)}


def protocol_changes(run_cfg, reference) -> list[str]:
    """Keys where a run's config (a Config, or a flat protocol as a record keeps it) departs
    from `reference` (a Config, or a config file), NEUTRAL keys aside. Keys the run does not
    have (a record older than the key) are not compared."""
    ref = config_lib.load(reference) if isinstance(reference, (str, Path)) else reference
    a = run_cfg if isinstance(run_cfg, dict) else protocol(run_cfg)
    b = protocol(ref)
    return sorted(k for k in a if a[k] != b.get(k))


def check_record(path: Path, samples: int) -> dict:
    """A record made elsewhere, held to the rules this runner writes paper rows by: a paper
    config of this repository, its config the file's own, K=`samples`, trained to the end of
    the protocol, figures at both checkpoints. Returns the record; refuses in one line."""
    rec = layout.read_json(Path(path))
    if not isinstance(rec, dict):
        raise UsageError(f"{path}: not a paper-row record (a JSON object written by paper_rows.py)")
    config_file = check_paper_config(ROOT / str(rec.get("config", "")))
    cfg = config_lib.load(config_file)
    why = []
    if rec.get("config_name") != config_file.stem:
        why.append(f"config_name {rec.get('config_name')!r} is not {config_file.stem!r}")
    if not rec.get("paper_row") or rec.get("protocol_changes"):
        why.append(f"its protocol departs from {config_file.name} ({', '.join(rec.get('protocol_changes') or ['paper_row false'])})")
    if "protocol" in rec and protocol_changes(rec["protocol"], cfg):
        why.append(f"its config differs from {config_file.name} ({', '.join(protocol_changes(rec['protocol'], cfg)[:4])})")
    if rec.get("samples") != samples:
        why.append(f"K={rec.get('samples')}, not K={samples}")
    if rec.get("status") != "completed" or rec.get("epochs_planned") != cfg.train.epochs:
        why.append(f"status {rec.get('status')!r} after {rec.get('epochs_planned')} planned epochs, not a completed "
                   f"{cfg.train.epochs}-epoch protocol")
    elif rec.get("epochs") != cfg.train.epochs and not rec.get("stopped_early"):
        why.append(f"{rec.get('epochs')} of {cfg.train.epochs} epochs without early stopping")
    points = rec.get("checkpoints") or {}
    if any(not isinstance(points.get(name), dict) or points[name].get("nll") is None for name in ("latest", "best")):
        why.append("figures missing at the latest or the best checkpoint")
    if why:
        raise UsageError(f"{path}: not a paper row by this runner's rules: {'; '.join(why)}")
    return rec


def _runs_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if layout.Folder(p).config_file.is_file()) if folder.is_dir() else []


def check_paper_config(path: Path) -> Path:
    path = Path(path).resolve()
    if path.parent != PAPER_CONFIGS.resolve() or path.suffix != ".yaml" or not path.is_file():
        raise UsageError(f"{path}: not a paper config (one of {PAPER_CONFIGS}/*.yaml); paper_rows.py measures the "
                         f"published protocols only; train other configs with vae train")
    return path


def check_results(results: Path) -> None:
    """Before any training: the folder where records go can be written (or made)."""
    here = Path(results).absolute()
    while not here.exists():
        here = here.parent
    if not here.is_dir() or not os.access(here, os.W_OK):
        raise UsageError(f"--results {results}: {here} is not a writable folder; choose another --results")


def check_existing(folder: Path, config_file: Path, overrides: list[str]) -> list[Path]:
    """The run folders a call would resume, refused unless they are this call's protocol."""
    existing = _runs_in(folder)
    wanted = config_lib.load(config_file, overrides)
    for path in existing:
        run = layout.open_run(path)  # a run format this vaecli cannot read: RunError, exit 1
        changed = protocol_changes(run.config, wanted)
        if changed:
            raise UsageError(f"{path} was trained with another protocol than this call's ({', '.join(changed[:4])} "
                             f"differ); nothing was changed: move it away or give another --runs-dir")
    return existing


def train_row(config_file: Path, folder: Path, seeds: str | None, overrides: list[str], limit_s: float | None,
              clock_start: float, log) -> str:
    """Train (or resume) the runs of one config in `folder`: 'done' or 'paused'."""
    from vaecli.training import launch, resume as resume_lib

    limit = None if limit_s is None else f"{max(0.0, limit_s):.3f}s"
    existing = check_existing(folder, config_file, overrides)
    if existing:
        keep = [o for o in overrides if config_lib.resumable(o.partition("=")[0].strip())]
        log(f"{config_file.stem}: resuming {len(existing)} run(s) in {folder}")
        try:
            resume_lib.resume_replicas(existing, [*keep, f"train.time_limit={json.dumps(limit) if limit else 'null'}"],
                                       argv=sys.argv, clock_start=clock_start)
        except AlreadyDone:
            pass
        except Paused as e:
            log(f"{config_file.stem}: paused: {e}")
            return "paused"
        return "done"
    log(f"{config_file.stem}: new run(s) in {folder}")
    result = launch.train_command(config=config_file, overrides=overrides, name=config_file.stem, runs_dir=folder,
                                  seeds=seeds, argv=sys.argv, time_limit=limit, clock_start=clock_start)
    if result.exit_code == stops.EXIT_PAUSED:
        log(f"{config_file.stem}: {result.notice}")
        return "paused"
    return "done"


def _evaluated(run_path: Path, step_name: str, samples: int, deadline: float | None) -> dict:
    """eval-elbo's K=`samples` test document at the checkpoint `step_name`, computed once
    (OutOfTime when it would end past `deadline`)."""
    from vaecli.evaluation.elbo import evaluate
    from vaecli.rundir import restore
    from vaecli.rundir.checkpoints import Checkpoints

    folder = layout.Folder(run_path)
    with Checkpoints(folder.checkpoint_dir, read_only=True) as ckpts:
        step = restore.resolve_step(ckpts, step_name)
    doc = layout.read_json(folder.output(layout.Output("elbo", step, split="test", k=samples)))
    if doc is None or doc.get("protocol", {}).get("seed") != 0:
        doc = evaluate(run_path, split="test", samples=str(samples), step=step, kl_mc_samples=0,
                       deadline=deadline)["results"][0]
    return doc


def _checkpoint_figures(doc: dict, steps_per_epoch: int) -> dict:
    step = doc["protocol"]["checkpoint_step"]
    return {"step": step, "epoch": step // steps_per_epoch, "nll": doc["nll"], "nll_stderr": doc["log_likelihood_stderr"],
            "log_likelihood": doc["log_likelihood"], "elbo": doc["elbo"], "active_units": doc["active_units"],
            "latent_dim": doc["latent_dim"], "eval_s": doc["timing"]["eval_s"]}


def _machine(jax) -> str:
    """What trained the row, in words: the accelerator's kind, or the CPU's model and cores."""
    if jax.default_backend() != "cpu":
        return f"{jax.device_count()} × {jax.devices()[0].device_kind}"
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
             if line.startswith("model name")]
    return f"{names[0] if names else 'CPU'}, {os.cpu_count()} cores"


def _commit() -> str | None:
    """The repository's commit, for the record (None outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def record_row(run_path: Path, config_file: Path, samples: int, results: Path, log,
               deadline: float | None = None) -> dict | None:
    """Evaluate a completed run on the test split at its latest and best checkpoints; write its record."""
    import jax

    import vaecli

    summary = layout.Folder(run_path).summary() or {}
    if summary.get("status") != "completed":
        return None
    run = layout.open_run(run_path)
    out = results / f"{config_file.stem}-seed{run.config.seed}.json"
    previous = layout.read_json(out) if out.exists() else None
    if previous and previous.get("run") != str(run_path):
        raise UsageError(f"{out} records another run ({previous.get('run')}); nothing was overwritten: move it "
                         f"away or give another --results to record {run_path}")
    steps_per_epoch = run.meta["data"]["num_train"] // run.config.train.batch_size
    latest = _checkpoint_figures(_evaluated(run_path, "latest", samples, deadline), steps_per_epoch)
    best = _checkpoint_figures(_evaluated(run_path, "best", samples, deadline), steps_per_epoch)
    changes = protocol_changes(run.config, config_file)
    rec = {
        "protocol": protocol(run.config),
        "config": str(config_file.relative_to(ROOT) if config_file.is_relative_to(ROOT) else config_file),
        "config_name": config_file.stem, "seed": run.config.seed, "paper_row": not changes,
        "protocol_changes": changes, "run": str(run_path), "status": summary["status"],
        "stopped_early": summary.get("stopped_early", False), "epochs": summary.get("epochs_done"),
        "epochs_planned": run.config.train.epochs, "best_epoch": summary.get("best_epoch"),
        "train_wall_s": summary.get("wall_s"), "train_hours": round((summary.get("wall_s") or 0) / 3600, 2),
        "train_minutes": round((summary.get("wall_s") or 0) / 60, 2),
        "sessions": 1 + len(run.meta.get("resumes", [])), "epoch_s_median": summary.get("epoch_s_median"),
        "device": jax.devices()[0].device_kind, "platform": jax.default_backend(),
        "device_count": jax.device_count(), "jax_version": jax.__version__, "vaecli_version": vaecli.__version__,
        "machine": _machine(jax), "date": clock.utc_now().date().isoformat(), "commit": _commit(), "split": "test", "samples": samples,
        **{k: latest[k] for k in ("nll", "nll_stderr", "log_likelihood", "elbo", "active_units", "latent_dim")},
        "checkpoints": {"latest": latest, "best": best},
    }
    results.mkdir(parents=True, exist_ok=True)
    files.write_json(out, rec)
    log(f"{config_file.stem} seed {rec['seed']}: NLL {latest['nll']:.2f} ± {latest['nll_stderr']:.2f} latest, "
        f"{best['nll']:.2f} ± {best['nll_stderr']:.2f} best (epoch {best['epoch']}), K={samples}, "
        f"{latest['active_units']} active units, {rec['epochs']} epochs in {rec['train_hours']} h on "
        f"{rec['device']} -> {out}")
    return rec


# ------------------------------------------------------------------ the command


def _compile_cache() -> None:
    """JAX's persistent compilation cache, where `vae` keeps it: the next call loads the
    programs this one compiled."""
    from vaecli.compiled import cache

    setting = os.environ.get("VAECLI_COMPILE_CACHE")
    if setting and setting.strip().lower() == "off":
        return
    cache.enable(setting or files.cache_home() / "jax")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("configs", nargs="*", type=Path, help="paper configs (configs/paper/*.yaml)")
    p.add_argument("--seeds", help="seeds trained as replicas of one program, e.g. 0-1 (default: the config's)")
    p.add_argument("--time-limit", help="bound for the whole call, e.g. 9m30s (default: none)")
    p.add_argument("--eval-reserve", default="45s", help="time kept for evaluation out of --time-limit (45s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override (repeatable)")
    p.add_argument("--runs-dir", type=Path, default=RUNS, help=f"where each config's folder goes ({RUNS})")
    p.add_argument("--results", type=Path, default=RESULTS, help=f"where records go ({RESULTS})")
    p.add_argument("--samples", type=int, default=5000, help="K of the test log-likelihood (5000)")
    p.add_argument("--check-record", type=Path, metavar="FILE",
                   help="check a record made elsewhere by this runner's paper-row rules (exit 0 or 2)")
    p.add_argument("--table", action="store_true", help="print the README's paper table from the records")
    p.add_argument("--write-readme", action="store_true", help="with --table: write it into README.md")
    return p


def main(argv: list[str] | None = None) -> int:
    clock_start = clock.now() - clock.process_age()
    p = _parser()
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    if args.table:
        text = render_table(README.read_text(), read_records(args.results))
        if args.write_readme:
            files.write_text(README, text)
        else:
            print(text[text.index(TABLE_BEGIN):text.index(TABLE_END)])
        return 0
    if args.check_record:
        try:
            rec = check_record(args.check_record, args.samples)
        except VaeError as e:
            log(f"error: {e}")
            return e.exit_code
        best = rec["checkpoints"]["best"]
        print(f"{args.check_record}: a paper row of {rec['config']}: NLL {rec['nll']:.2f} ± {rec['nll_stderr']:.2f} "
              f"latest, {best['nll']:.2f} ± {best['nll_stderr']:.2f} best (epoch {best['epoch']}), K={rec['samples']}, "
              f"{rec['epochs']} epochs")
        return 0
    if not args.configs:
        p.error("give one or more paper configs, --check-record FILE or --table")
    try:
        limit_s = None if args.time_limit is None else clock.parse_duration(args.time_limit)
        reserve_s = clock.parse_duration(args.eval_reserve)
    except ValueError as e:
        p.error(f"{e}: write a duration like 9m30s, 2h or 90s")
    try:
        config_files = [check_paper_config(c) for c in args.configs]
        check_results(args.results)
        _compile_cache()
        for config_file in config_files:
            folder = args.runs_dir / (config_file.stem + (f"-seeds{args.seeds}" if args.seeds else ""))
            left = None if limit_s is None else limit_s - reserve_s
            state = train_row(config_file, folder, args.seeds, args.overrides, left, clock_start, log)
            if state == "paused":
                log(f"unfinished: {config_file.stem}; call again to continue (exit {stops.EXIT_PAUSED})")
                return stops.EXIT_PAUSED
            try:
                for run_path in _runs_in(folder):
                    record_row(run_path, config_file, args.samples, args.results, log,
                               None if limit_s is None else clock_start + limit_s)
            except OutOfTime as e:
                log(f"{config_file.stem}: {e}")
                log(f"unfinished: {config_file.stem}'s evaluation; call again to do it (exit {stops.EXIT_PAUSED})")
                return stops.EXIT_PAUSED
    except VaeError as e:
        log(f"error: {e}")
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
