"""The epoch as the user sees it, next to the compiled epoch alone and a bare fused loop, in one run.

    python benchmarks/user_epoch.py --cache-dir DIR [--config configs/bmnist_mlp.yaml] [--epochs 6] [--rounds 3]

Each round, alternating:
  trainer   `vaecli.training.start.train` of the config for `--epochs` epochs, validation and
            checkpoints only at the end (eval/checkpoint every 1000 epochs); its summary.json
            `epoch_s_median` (epochs 2..E), and the host's time between two epochs: the
            `elapsed_s` of consecutive training records minus the later one's `epoch_s`, i.e.
            the log point's bookkeeping, during which no epoch runs;
  compiled  the trainer's compiled epoch (the same program, from the process's kept programs)
            called back to back, E epochs, median;
  bare      benchmarks/bare_loop.py's epoch of the same network, E epochs, median.
Prints one JSON line per round and a summary line: medians and the ratios trainer/bare,
compiled/bare, trainer/compiled; the host time per epoch in ms. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bare_loop import make_bare_epoch  # noqa: E402
from vaecli import config as config_lib, data  # noqa: E402
from vaecli.compiled import state as state_lib  # noqa: E402
from vaecli.compiled.epoch import make_epoch_fn  # noqa: E402
from vaecli.rundir import layout, metrics  # noqa: E402
from vaecli.training.start import train  # noqa: E402


def epochs_of(call, state, images, n: int) -> tuple[list[float], object]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        state, out = call(state, images)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t)
    return times, state


def trainer_round(cfg, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        path = train(cfg, d, "user", argv=["bench"], progress="none")
        summary = json.loads(layout.Folder(path).summary_file.read_text())
        recs = [r for r in metrics.read(path) if r["split"] == "train"]
    host = [b["elapsed_s"] - a["elapsed_s"] - b["epoch_s"] for a, b in zip(recs, recs[1:])]
    return {"epoch_s": summary["epoch_s_median"], "host_ms": 1000 * statistics.median(host)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", required=True, help="vaecli data cache holding the config's dataset")
    ap.add_argument("--config", default="configs/bmnist_mlp.yaml")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cfg = config_lib.load(ROOT / args.config, [f"data.cache_dir={args.cache_dir}", f"train.epochs={args.epochs}",
                                               "eval.every_epochs=1000", "checkpoint.every_epochs=1000",
                                               "log.progress=none"])
    split = data.load_split(cfg.data, "train")
    images = jax.device_put(split.flat)
    fn, tx, state = state_lib.init_state(cfg, split.image_shape, train=split)
    compiled = make_epoch_fn(fn, tx, cfg, len(split), split.scale).lower(state, images).compile()
    bare, bare_state = make_bare_epoch(cfg, split)
    bare = bare.lower(bare_state, images).compile()
    _, state = epochs_of(compiled, state, images, 1)
    _, bare_state = epochs_of(bare, bare_state, images, 1)
    trainer_round(cfg, args.epochs)  # compiles and keeps the trainer's programs
    rounds = []
    for r in range(args.rounds):
        row = {"round": r, **trainer_round(cfg, args.epochs)}
        times, state = epochs_of(compiled, state, images, args.epochs - 1)
        row["compiled_s"] = statistics.median(times)
        times, bare_state = epochs_of(bare, bare_state, images, args.epochs - 1)
        row["bare_s"] = statistics.median(times)
        rounds.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in ("epoch_s", "compiled_s", "bare_s", "host_ms")}
    paired = lambda a, b: round(statistics.median(r[a] / r[b] for r in rounds), 3)
    print(json.dumps({"config": args.config, "epochs": args.epochs, "rounds": args.rounds,
                      "trainer_epoch_s": round(med["epoch_s"], 4), "compiled_epoch_s": round(med["compiled_s"], 4),
                      "bare_epoch_s": round(med["bare_s"], 4), "host_ms_per_epoch": round(med["host_ms"], 2),
                      "trainer_over_bare": paired("epoch_s", "bare_s"),
                      "compiled_over_bare": paired("compiled_s", "bare_s"),
                      "trainer_over_compiled": paired("epoch_s", "compiled_s")}))


if __name__ == "__main__":
    main()
