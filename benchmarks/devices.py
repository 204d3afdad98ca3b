"""Epoch time of bmnist_mlp on 1 vs N devices of the data-parallel mesh.

    python benchmarks/devices.py --cache-dir .cache/data [--devices 4] [--epochs 4] [--rounds 2]

On a CPU the N devices are forced (XLA_FLAGS=--xla_force_host_platform_device_count=N) and
share the same cores, so this shows the overhead of sharding, not a speed-up. Both settings
run in processes with the same flag, alternately. Prints one JSON line; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

from epoch_time import ROOT, vaecli_epoch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "binarized_mnist"))
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--devices", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if "cpu" in os.environ.get("JAX_PLATFORMS", "cpu"):
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    times = {1: [], args.devices: []}
    for _ in range(args.rounds):
        for n in times:
            times[n].append(vaecli_epoch(args.data, args.epochs, args.cache_dir, (f"train.devices={n}",))["epoch_s_median"])
    med = {n: statistics.median(v) for n, v in times.items()}
    print(json.dumps({"epoch_s": {str(n): round(v, 4) for n, v in med.items()},
                      "ratio": round(med[args.devices] / med[1], 3), "rounds": {str(n): v for n, v in times.items()}}))


if __name__ == "__main__":
    main()
