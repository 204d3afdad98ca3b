"""The cost of checkpointing: bmnist_mlp with a checkpoint every epoch vs only at the end.

    python benchmarks/checkpoint_overhead.py --cache-dir .cache/data [--epochs 6] [--rounds 3]

Three settings run alternately, `--rounds` times each, each in a fresh process:
  end       one checkpoint, after the last epoch (the baseline)
  every     a checkpoint every epoch, checkpoint.keep_best=false
  every+best  a checkpoint every epoch with keep_best (the default), which ranks only the
            checkpoints of evaluation epochs, so it should cost the same as `every`
The figure is the wall time from one epoch's log point to the next (so the host copy,
the checksum, the asynchronous Orbax write and the validation pass all count), median
over the E-1 periods of each run and over rounds. Prints one JSON line; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile

from epoch_time import ROOT, vaecli_epoch

SETTINGS = {
    "end": (),
    "every": ("checkpoint.every_epochs=1", "checkpoint.keep_best=false"),
    "every+best": ("checkpoint.every_epochs=1", "checkpoint.keep_best=true"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "binarized_mnist"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache-dir", default=None, help="vaecli data cache (default: a temporary folder)")
    args = ap.parse_args()
    periods = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache_dir or tmp
        vaecli_epoch(args.data, 1, cache)  # fill the data cache outside the timed rounds
        for _ in range(args.rounds):
            for name, overrides in SETTINGS.items():
                loop = vaecli_epoch(args.data, args.epochs, cache, overrides)["loop_s"]
                periods[name].extend(loop)
    med = {name: statistics.median(v) for name, v in periods.items()}
    print(json.dumps({
        "epochs_per_round": args.epochs, "rounds": args.rounds,
        "epoch_period_s": {k: round(v, 4) for k, v in med.items()},
        "overhead_every": round(med["every"] / med["end"] - 1, 4),
        "overhead_every_keep_best": round(med["every+best"] / med["end"] - 1, 4),
        "periods_s": {k: [round(x, 4) for x in v] for k, v in periods.items()},
    }))


if __name__ == "__main__":
    main()
