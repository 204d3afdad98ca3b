"""Epoch time of `bmnist_mlp` next to ../shared/bench/reference_epoch.py, in one invocation.

    python benchmarks/epoch_time.py --data ../shared/data/binarized_mnist [--epochs 5] [--rounds 2]

Runs the reference (one jitted step per batch, batches copied from the host) and vaecli's
trainer (one compiled call per epoch) alternately, `--rounds` times each, on this machine,
and prints one JSON line: the median steady-state epoch time of each (compilation
excluded for both) and their ratio. Figures only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "bench" / "reference_epoch.py"


def reference_epoch(data: str, epochs: int, reference: Path = REFERENCE) -> dict:
    out = subprocess.run([sys.executable, str(reference), "--data", data, "--epochs", str(epochs)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def vaecli_epoch(data: str, epochs: int, cache_dir: str, overrides: tuple[str, ...] = ()) -> dict:
    """A bmnist_mlp run in a fresh process: its summary.json, plus `loop_s`, the wall time
    between consecutive epochs' log points (so evaluation and checkpointing are included)."""
    sets = [f"data.manual_dir={data}", f"data.cache_dir={cache_dir}", f"train.epochs={epochs}",
            f"eval.every_epochs={epochs}", f"checkpoint.every_epochs={epochs}", "log.progress=none",
            "log.tensorboard=false", *overrides]
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from vaecli import config
from vaecli.rundir import layout, metrics
from vaecli.training import start as train
cfg = config.load({str(ROOT / 'configs' / 'bmnist_mlp.yaml')!r}, {sets!r})
import tempfile
with tempfile.TemporaryDirectory() as d:
    path = train.train(cfg, d, "bench", argv=sys.argv, progress="none")
    summary = json.loads(layout.Folder(path).summary_file.read_text())
    t = [r["elapsed_s"] for r in metrics.read(path) if r["split"] == "train"]
    summary["loop_s"] = [b - a for a, b in zip(t, t[1:])]
    print(json.dumps(summary))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "binarized_mnist"))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cache-dir", default=None, help="vaecli data cache (default: a temporary folder)")
    ap.add_argument("--reference", default=str(REFERENCE), help="path of reference_epoch.py")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or tmp
        vaecli_epoch(args.data, 1, cache)  # fill the data cache outside the timed rounds
        refs, ours = [], []
        for _ in range(args.rounds):
            r = reference_epoch(args.data, args.epochs, Path(args.reference))
            refs.append(r["reference_epoch_s"])
            s = vaecli_epoch(args.data, args.epochs, cache)
            ours.append(s["epoch_s_median"])
    ref, mine = statistics.median(refs), statistics.median(ours)
    print(json.dumps({"device": r["device"], "epochs_per_round": args.epochs, "rounds": args.rounds,
                      "reference_epoch_s": round(ref, 4), "vaecli_epoch_s": round(mine, 4),
                      "ratio_vaecli_over_reference": round(mine / ref, 3),
                      "reference_rounds": refs, "vaecli_rounds": [round(x, 4) for x in ours],
                      "vaecli_compile_s": round(s["compile_s"], 3), "epoch_gflop": r["epoch_gflop"]}))


if __name__ == "__main__":
    main()
