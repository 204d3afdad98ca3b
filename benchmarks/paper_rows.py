"""Paper rows measured by vaecli: train paper configs to the end of their protocol, evaluate
log p(x) with K=5000 importance samples on the test split, write one JSON record per
(config, seed) under benchmarks/results/.

    python benchmarks/paper_rows.py configs/paper/iwae_vae_k1.yaml [configs/paper/iwae_k50.yaml ...]
        [--seeds 0-3] [--time-limit 9m] [--set data.cache_dir=DIR ...] [--runs-dir runs/paper]
        [--results benchmarks/results] [--samples 5000]
    python benchmarks/paper_rows.py --table [--write-readme]

Each config trains in a folder of its own, `<runs-dir>/<config stem>[-seeds<S>]/`. Called
again, the script resumes the runs it finds there (the replicas of a `--seeds` program as one
program again, so they keep the bits of an uninterrupted program), so two calls inside one
GPU lease finish a protocol that one call cannot. `--time-limit` bounds the whole call
(counted from the start of the process): training of each config gets what is left, minus
`--eval-reserve` for the evaluation; a config it pauses ends the call (later configs wait for
the next call). Completed runs are evaluated once per checkpoint (on a run that stopped early:
its best checkpoint, as `vae eval-elbo` does by default) and recorded.

A record is a paper row (`paper_row: true`) only when the run's resolved config is the
config file's own, up to data paths, logging, the seed and the time limit; `--table` prints
the README's paper table with its "measured by vaecli" column filled from paper rows only,
`--write-readme` writes it into README.md.

Needs jax/flax/optax/orbax/pyyaml and the prepared data cache (`vae` fills it where TFDS
is installed; copy `data.cache_dir` to the GPU machine): TensorFlow is never imported.

Exit: 0 every row recorded; 3 a protocol is unfinished (paused by --time-limit: call again);
1/2 as `vae`.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vaecli import clock, config as config_lib, files  # noqa: E402  (no JAX at import)
from vaecli.rundir import layout as runs  # noqa: E402
from vaecli.training import stops  # noqa: E402
from vaecli.errors import AlreadyDone, Paused, VaeError  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "paper"
README = ROOT / "README.md"
TABLE_BEGIN, TABLE_END = "<!-- paper-rows:begin -->", "<!-- paper-rows:end -->"
NOT_MEASURED = "not yet measured"
# Keys whose value does not change the protocol a record measures.
NEUTRAL = ("seed", "data.data_dir", "data.manual_dir", "data.cache_dir", "train.time_limit", "train.devices", "log.")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def protocol_changes(run_cfg, config_file: Path) -> list[str]:
    """Keys where a run's config departs from the paper config file (neutral keys aside)."""
    a, b = _flat(config_lib.to_dict(run_cfg)), _flat(config_lib.to_dict(config_lib.load(config_file)))
    neutral = lambda k: any(k == n or (n.endswith(".") and k.startswith(n)) for n in NEUTRAL)
    return sorted(k for k in a if not neutral(k) and a[k] != b.get(k))


def _runs_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if (p / "config.yaml").is_file()) if folder.is_dir() else []


def train_row(config_file: Path, folder: Path, seeds: str | None, overrides: list[str], limit_s: float | None,
              clock_start: float, log) -> str:
    """Train (or resume) the runs of one config in `folder`: 'done' or 'paused'."""
    from vaecli.training import launch, resume as resume_lib

    limit = None if limit_s is None else f"{max(0.0, limit_s):.3f}s"
    existing = _runs_in(folder)
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


def record_row(run_path: Path, config_file: Path, samples: int, results: Path, log) -> dict | None:
    """Evaluate a completed run on the test split and write its record (once per checkpoint)."""
    import jax

    import vaecli
    from vaecli.evaluation.elbo import evaluate
    from vaecli.rundir import restore

    summary = runs.read_json(run_path / "summary.json") or {}
    if summary.get("status") != "completed":
        return None
    run = runs.open_run(run_path)
    out = results / f"{config_file.stem}-seed{run.config.seed}.json"
    previous = runs.read_json(out) if out.exists() else None
    step_name = restore.default_step(run_path)
    if previous and previous.get("run") == str(run_path) and previous.get("samples") == samples:
        return previous  # this run's checkpoint is measured already
    t = time.perf_counter()
    res = evaluate(run_path, split="test", samples=str(samples), step=None, kl_mc_samples=0)["results"][0]
    changes = protocol_changes(run.config, config_file)
    rec = {
        "config": str(config_file.relative_to(ROOT) if config_file.is_relative_to(ROOT) else config_file),
        "config_name": config_file.stem, "seed": run.config.seed, "paper_row": not changes,
        "protocol_changes": changes, "run": str(run_path), "status": summary["status"],
        "stopped_early": summary.get("stopped_early", False), "epochs": summary.get("epochs_done"),
        "epochs_planned": run.config.train.epochs, "best_epoch": summary.get("best_epoch"),
        "checkpoint": step_name, "checkpoint_step": res["protocol"]["checkpoint_step"],
        "train_wall_s": summary.get("wall_s"), "train_minutes": round((summary.get("wall_s") or 0) / 60, 2),
        "sessions": 1 + len(run.meta.get("resumes", [])), "epoch_s_median": summary.get("epoch_s_median"),
        "eval_s": res["timing"]["eval_s"], "eval_total_s": time.perf_counter() - t,
        "device": jax.devices()[0].device_kind, "platform": jax.default_backend(),
        "device_count": jax.device_count(), "jax_version": jax.__version__, "vaecli_version": vaecli.__version__,
        "date": clock.utc_now().date().isoformat(), "split": "test", "samples": samples,
        "nll": res["nll"], "nll_stderr": res["log_likelihood_stderr"], "log_likelihood": res["log_likelihood"],
        "elbo": res["elbo"], "active_units": res["active_units"], "latent_dim": res["latent_dim"],
    }
    results.mkdir(parents=True, exist_ok=True)
    files.write_json(out, rec)
    log(f"{config_file.stem} seed {rec['seed']}: NLL {rec['nll']:.2f} ± {rec['nll_stderr']:.2f} (K={samples}), "
        f"{rec['active_units']} active units, {rec['epochs']} epochs in {rec['train_minutes']} min on "
        f"{rec['device']} -> {out}")
    return rec


# ------------------------------------------------------------------ the README's table


def read_records(results: Path = RESULTS) -> list[dict]:
    out = []
    for f in sorted(results.glob("*.json")) if results.is_dir() else []:
        rec = runs.read_json(f)
        if isinstance(rec, dict) and rec.get("paper_row") and rec.get("nll") is not None:
            out.append(rec)
    return out


def measured_cell(config_names: list[str], records: list[dict]) -> str:
    cells = []
    for name in config_names:
        rows = [r for r in records if r["config_name"] == name]
        if not rows:
            cells.append(NOT_MEASURED)
            continue
        nll = [r["nll"] for r in rows]
        devs = ", ".join(sorted({r["device"] for r in rows}))
        when = max(r["date"] for r in rows)
        minutes = max(r["train_minutes"] for r in rows)
        if len(rows) == 1:
            cells.append(f"{nll[0]:.2f} ± {rows[0]['nll_stderr']:.2f} (seed {rows[0]['seed']}; {devs}, {when}, "
                         f"{minutes:.1f} min)")
        else:
            cells.append(f"{statistics.mean(nll):.2f} ± {statistics.stdev(nll):.2f} over {len(rows)} seeds "
                         f"({devs}, {when}, {minutes:.1f} min)")
    return " / ".join(cells)


def render_table(readme: str, records: list[dict]) -> str:
    """The README with the last cell of each row of its paper table filled from `records`."""
    begin, end = readme.index(TABLE_BEGIN), readme.index(TABLE_END)
    lines = readme[begin:end].splitlines()
    for i, line in enumerate(lines):
        cells = line.split(" | ")
        names = re.findall(r"`([\w.-]+)\.yaml`", cells[0])
        if line.startswith("| ") and names and len(cells) > 2:
            lines[i] = " | ".join(cells[:-1] + [measured_cell(names, records) + " |"])
    return readme[:begin] + "\n".join(lines) + "\n" + readme[end:]


# ------------------------------------------------------------------ the command


def _compile_cache() -> None:
    """JAX's persistent compilation cache, where `vae` keeps it: the second call of a lease
    loads the programs the first one compiled."""
    import os

    from vaecli.compiled import cache as compile_cache

    setting = os.environ.get("VAECLI_COMPILE_CACHE")
    if setting and setting.strip().lower() == "off":
        return
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaecli" / "jax"
    compile_cache.enable(setting or default)


def main(argv: list[str] | None = None) -> int:
    clock_start = clock.now() - clock.process_age()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("configs", nargs="*", type=Path, help="paper configs (configs/paper/*.yaml)")
    p.add_argument("--seeds", help="seeds trained as replicas of one program, e.g. 0-3 (default: the config's)")
    p.add_argument("--time-limit", help="bound for the whole call, e.g. 9m30s (default: none)")
    p.add_argument("--eval-reserve", default="45s", help="time kept for evaluation out of --time-limit (45s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override (repeatable)")
    p.add_argument("--runs-dir", type=Path, default=RUNS, help=f"where each config's folder goes ({RUNS})")
    p.add_argument("--results", type=Path, default=RESULTS, help=f"where records go ({RESULTS})")
    p.add_argument("--samples", type=int, default=5000, help="K of the test log-likelihood (5000)")
    p.add_argument("--table", action="store_true", help="print the README's paper table from the records")
    p.add_argument("--write-readme", action="store_true", help="with --table: write it into README.md")
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)

    if args.table:
        text = render_table(README.read_text(), read_records(args.results))
        if args.write_readme:
            files.write_text(README, text)
        else:
            print(text[text.index(TABLE_BEGIN):text.index(TABLE_END)])
        return 0
    if not args.configs:
        p.error("give one or more paper configs, or --table")
    _compile_cache()
    try:
        limit_s = None if args.time_limit is None else clock.parse_duration(args.time_limit)
        reserve_s = clock.parse_duration(args.eval_reserve)
    except ValueError as e:
        p.error(f"{e}: write a duration like 9m30s, 2h or 90s")
    try:
        for config_file in args.configs:
            config_file = config_file.resolve()
            folder = args.runs_dir / (config_file.stem + (f"-seeds{args.seeds}" if args.seeds else ""))
            left = None if limit_s is None else limit_s - reserve_s
            state = train_row(config_file, folder, args.seeds, args.overrides, left, clock_start, log)
            if state == "paused":
                log(f"unfinished: {config_file.stem}; call again to continue (exit {stops.EXIT_PAUSED})")
                return stops.EXIT_PAUSED
            for run_path in _runs_in(folder):
                record_row(run_path, config_file, args.samples, args.results, log)
    except VaeError as e:
        log(f"error: {e}")
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
