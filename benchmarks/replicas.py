"""Replicas in one compiled program vs one run after another.

    python benchmarks/replicas.py --cache-dir .cache/data [--seeds 8] [--epochs 2]
    python benchmarks/replicas.py --cache-dir .cache/data --throughput 1,8,64 [--epochs 3] [--config FILE]
        [--rounds N]

Default: `--seeds` runs of bmnist_mlp for `--epochs` epochs, first as a shell loop would
start them (one `vae train` process per seed, one after another), then as one
`vae train --seeds 0-N` process; prints the wall time of each whole and their ratio.

`--layout --seeds 2,4 [--configs A.yaml,B.yaml] [--rounds N]`: alternating in one invocation,
per config and seed count: the seeds as sequential `vae train` processes, as one
`vae train --seeds` program laid out over the CPU's cores (vae's default for replica
programs), and as one program on one CPU device (XLA_FLAGS forcing one host device, as
before the replicas were spread); wall times of each whole, ratios to sequential, and
`uptime`'s load. One JSON line per (round, config, seeds).

`--layout --threads`: instead of the one-device program, the same two ways with every device
single-threaded (XLA_FLAGS=--xla_cpu_multi_thread_eigen=false, to which `vae` adds the
device count): sequential single-threaded processes and one program of single-threaded
devices, each against the defaults, alternating.

`--throughput R1,R2,...`: in one process, the steady epoch time of a program of R replicas
(compile excluded, median over epochs 2..E), its ratio to one replica's, and seed-epochs
per second; with `--rounds N` the replica counts alternate N times (R1, R2, ..., R1, R2,
...), so that each ratio compares times measured side by side. One JSON line each; nothing
is asserted.
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


def vae_train(args: list[str], config_file: Path = CONFIG, env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vaecli.cli", "train", "--config", str(config_file), *args], check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def _cases(cache: str, data: str, configs: list[Path], seed_counts: list[int], epochs: int, rounds: int):
    """(round, config file, seed count, `vae train` arguments with a fresh runs folder), in the
    order the rounds alternate."""
    for r in range(rounds):
        for config_file in configs:
            sets = [a for o in (f"data.cache_dir={cache}", f"data.manual_dir={data}", f"train.epochs={epochs}",
                                "log.progress=none", "log.tensorboard=false") for a in ("--set", o)]
            for n in seed_counts:
                with tempfile.TemporaryDirectory() as runs_dir:
                    yield r, config_file, n, [*sets, "--runs-dir", runs_dir]


def layouts(cache: str, data: str, configs: list[Path], seed_counts: list[int], epochs: int, rounds: int,
            threads: bool = False) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    # the other way to run the program: on one device, or over the cores with single-threaded devices
    other = {**env, "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false" if threads
             else "--xla_force_host_platform_device_count=1"}
    for r, config_file, n, args in _cases(cache, data, configs, seed_counts, epochs, rounds):
        seq = sum(vae_train([*args, "--set", f"seed={s}"], config_file, env) for s in range(n))
        spread = vae_train([*args, "--seeds", f"0-{n - 1}"], config_file, env)
        alt = vae_train([*args, "--seeds", f"0-{n - 1}"], config_file, other)
        row = {"round": r, "config": config_file.stem, "seeds": n, "epochs": epochs, "sequential_s": round(seq, 1),
               "program_over_cores_s": round(spread, 1), "over_cores_vs_sequential": round(spread / seq, 3)}
        if threads:
            seq_st = sum(vae_train([*args, "--set", f"seed={s}"], config_file, other) for s in range(n))
            row.update(program_single_threaded_devices_s=round(alt, 1), sequential_single_threaded_s=round(seq_st, 1),
                       single_threaded_vs_sequential=round(alt / seq, 3))
        else:
            row.update(program_one_device_s=round(alt, 1), one_device_vs_sequential=round(alt / seq, 3))
        print(json.dumps({**row, "load": os.getloadavg()}), flush=True)


def sequential_vs_program(cache: str, data: str, seeds: int, epochs: int) -> dict:
    sets = [a for o in (f"data.cache_dir={cache}", f"data.manual_dir={data}", f"train.epochs={epochs}",
                        "log.progress=none") for a in ("--set", o)]
    with tempfile.TemporaryDirectory() as runs_dir:
        vae_train([*sets, "--set", "train.epochs=1", "--runs-dir", runs_dir])  # fill the data cache, warm the disk
        each = [vae_train([*sets, "--set", f"seed={s}", "--runs-dir", runs_dir]) for s in range(seeds)]
        one = vae_train([*sets, "--seeds", f"0-{seeds - 1}", "--runs-dir", runs_dir])
    return {"seeds": seeds, "epochs": epochs, "sequential_s": round(sum(each), 2),
            "sequential_each_s": [round(x, 2) for x in each], "one_program_s": round(one, 2),
            "ratio_program_over_sequential": round(one / sum(each), 3)}


def throughput(cache: str, data: str, replicas: list[int], epochs: int, config_file: Path = CONFIG,
               rounds: int = 1) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    import statistics

    from vaecli import config
    from vaecli.rundir import layout, metrics
    from vaecli.training import start as train

    out, single = [], None
    for n in replicas * rounds:
        cfg = config.load(config_file, [f"data.cache_dir={cache}", f"data.manual_dir={data}", f"train.epochs={epochs}",
                                   f"eval.every_epochs={epochs}", f"checkpoint.every_epochs={epochs}",
                                   "log.progress=none", "log.tensorboard=false"])
        cfgs = [config.replace(cfg, seed=s) for s in range(n)]
        with tempfile.TemporaryDirectory() as d:
            paths = train.train_replicas(cfgs, d, [f"r{s}" for s in range(n)], argv=["bench"])
            recs = [r for r in metrics.read(paths[0]) if r["split"] == "train"]
            epoch_s = statistics.median(r["epoch_s"] for r in recs[1:])
            compile_s = json.loads(layout.Folder(paths[0]).summary_file.read_text())["compile_s"]
        single = epoch_s if n == 1 else single
        out.append({"config": config_file.stem, "replicas": n, "epoch_s": round(epoch_s, 4),
                    "over_one_replica": round(epoch_s / single, 3) if single else None,
                    "per_seed_epoch_s": round(epoch_s / n, 5),
                    "seed_epochs_per_s": round(n / epoch_s, 2), "compile_s": round(compile_s, 2)})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "binarized_mnist"))
    ap.add_argument("--cache-dir", required=True, help="vaecli data cache")
    ap.add_argument("--seeds", default="8", help="a count; with --layout, counts: 2,4")
    ap.add_argument("--layout", action="store_true", help="sequential vs one program over the cores vs on one device")
    ap.add_argument("--threads", action="store_true", help="--layout: single-threaded devices instead of one device")
    ap.add_argument("--configs", default=None, help="--layout: configs, comma-separated (default bmnist_mlp)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--throughput", default=None, help="replica counts, e.g. 1,8,64")
    ap.add_argument("--config", type=Path, default=CONFIG, help="config of --throughput (default bmnist_mlp)")
    ap.add_argument("--rounds", type=int, default=1, help="--throughput: alternate the replica counts N times")
    args = ap.parse_args()
    if args.layout:
        configs = [Path(c).resolve() for c in args.configs.split(",")] if args.configs else [CONFIG]
        layouts(args.cache_dir, args.data, configs, [int(x) for x in args.seeds.split(",")], args.epochs,
                args.rounds, args.threads)
    elif args.throughput:
        throughput(args.cache_dir, args.data, [int(x) for x in args.throughput.split(",")], max(args.epochs, 3),
                   args.config.resolve(), args.rounds)
    else:
        print(json.dumps(sequential_vs_program(args.cache_dir, args.data, int(args.seeds), args.epochs)))


if __name__ == "__main__":
    main()
