"""One `vae tune` study worked by one process vs by several at once.

    python benchmarks/tune_workers.py --cache-dir .cache/data [--workers 3] [--trials 6]
        [--replicas 1] [--epochs 1] [--rounds 1] [--storage journal|sqlite]

Per round, alternating: a study of `--trials` trials of bmnist_mlp run by one `vae tune`
process, then the same study (a new folder, same settings) run by `--workers` processes
started together (`vae tune --resume STUDY` each). Prints one JSON line per study: its wall
time, its trial states, and whether any trial number or point was run twice. Nothing is
asserted.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "bmnist_mlp.yaml"


def vae(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vaecli.cli", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def study(a, root: Path, name: str, workers: int) -> dict:
    from vaecli import config
    from vaecli.tune import study as tune

    raw = config.to_dict(config.load(CONFIG, [f"data.cache_dir={a.cache_dir}", f"train.epochs={a.epochs}",
                                              "log.progress=none"]))
    url = "journal" if a.storage == "journal" else f"sqlite:///{root / (name + '.db')}"
    study_dir = tune.create(raw, ["optim.lr=log:1e-4:1e-2", "objective.beta=0.5:4"], a.trials, a.replicas,
                            "none", root, name, ["benchmark"], url)
    t = time.perf_counter()
    procs = [vae("tune", "--resume", study_dir, "--json") for _ in range(workers)]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t
    summary = json.loads((study_dir / "summary.json").read_text())
    served = [n for s in summary["sessions"] for slot in s["slots"] for n in slot]
    points = [json.loads((p / "meta.json").read_text())["trial"]["params"] for p in (study_dir / "trials").iterdir()]
    return {"workers": workers, "wall_s": round(wall, 1), "exit_codes": codes, "states": summary["states"],
            "trials_served": len(served), "numbers_repeated": len(served) - len(set(served)),
            "points_repeated": len(points) - len({json.dumps(p, sort_keys=True) for p in points}),
            "per_worker": [len([n for slot in s["slots"] for n in slot]) for s in summary["sessions"]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--storage", choices=("journal", "sqlite"), default="journal")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for workers in (1, a.workers):
                print(json.dumps({"round": r, **study(a, Path(tmp), f"w{workers}-r{r}", workers)}), flush=True)


if __name__ == "__main__":
    main()
